"""Non-negative matrix factorization fitted from streamed sufficient statistics.

Frames ``X: (n, C) >= 0`` (a layer's activations after a ReLU, or magnitude
spectra) are explained by ``K`` non-negative atoms ``D: (K, C)`` of unit norm
and non-negative codes ``H: (n, K)``::

    min_{D >= 0, H >= 0}  1/2 ||X - H D||_F^2 + alpha ||H||_1

Fitting alternates over *passes* of the data, in the style of online NMF
(Mairal et al., 2010, "Online learning for matrix factorization and sparse
coding"), with the dictionary held fixed during a pass:

1. during a pass, each chunk's codes are solved with ``D`` fixed
   (:func:`nmf_codes`: HALS, ``code_iterations`` sweeps over the K
   coordinates) and the sufficient statistics ``A = sum H^T H`` (K, K) and
   ``B = sum H^T X`` (K, C) are summed;
2. at the end of the pass (:meth:`StreamedNMF.end_pass`), ``D`` minimizes
   ``1/2 tr(D A D^T) - tr(D B^T)``, which is the data term up to a constant,
   by ``dictionary_iterations`` HALS sweeps over its rows, and each row is
   rescaled to unit norm. An atom that no frame used in the pass is replaced
   by the frame the pass reconstructed worst.

Each frame's code is solved on its own (the objective separates over rows),
and ``A``, ``B`` are sums, so a pass gives the same statistics however the
frames are chunked, ordered, sharded or merged (up to float rounding):
``partial_fit`` over any batching followed by ``end_pass`` equals ``fit``, and
shards reduce exactly with ``torch.distributed.all_reduce``.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterable, Iterator, Sequence

import numpy as np
from threadpoolctl import ThreadpoolController

from asr_introspect.aggregate import all_reduce_arrays, torch_distributed
from asr_introspect.errors import InputError

__all__ = ["StreamedNMF", "nmf_codes", "random_atoms", "serial_blas"]

_EPS = 1e-12


@functools.cache
def _controller() -> ThreadpoolController:
    return ThreadpoolController()


@contextlib.contextmanager
def serial_blas() -> Iterator[None]:
    """Run NumPy's BLAS on one thread within the block. The products here are small (K x n x C with K
    in the tens): a BLAS thread pool gains little on them and loses up to 10x on cores other processes
    keep busy (measured on 2 shared cores)."""
    with _controller().limit(limits=1, user_api="blas"):
        yield


def random_atoms(n_components: int, n_features: int, seed: int = 0, density: float = 0.25) -> np.ndarray:
    """Seeded random non-negative atoms ``(K, C)`` of unit norm, each non-zero on about ``density`` of the
    features (sparse supports keep the initial atoms far apart)."""
    rng = np.random.default_rng(seed)
    atoms = rng.random((n_components, n_features)) * (rng.random((n_components, n_features)) < density)
    empty = ~atoms.any(axis=1)
    atoms[empty, rng.integers(0, n_features, size=int(empty.sum()))] = 1.0
    return atoms / np.linalg.norm(atoms, axis=1, keepdims=True)


def nmf_codes(frames: np.ndarray, components: np.ndarray, alpha: float = 0.0, iterations: int = 20) -> np.ndarray:
    """Non-negative codes of ``frames: (n, C)`` on ``components: (K, C)``: ``(n, K)`` float32.

    Minimizes ``1/2 ||x - h D||^2 + alpha ||h||_1`` over ``h >= 0`` for every frame by ``iterations``
    HALS sweeps (exact coordinate minimization, one coordinate at a time), started from the
    non-negative projection scaled to the best single factor. Each row is solved independently, so a
    frame's code does not depend on the other frames of the call.
    """
    with serial_blas():
        return _solve_codes(np.asarray(frames, dtype=np.float32), components, alpha, iterations)[0].T.copy()


def _solve_codes(
    x: np.ndarray, components: np.ndarray, alpha: float, iterations: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(codes (K, n), x D^T as (K, n), D D^T (K, K)), float32; codes kept atom-major so that each
    coordinate update reads and writes one contiguous row."""
    d = np.asarray(components, dtype=np.float32)
    gram = d @ d.T  # (K, K)
    projection = d @ x.T  # (K, n)
    target = projection - np.float32(alpha) if alpha else projection
    diag = np.maximum(np.diag(gram), _EPS).astype(np.float32)
    codes = np.maximum(target, 0.0) / diag[:, None]
    num = (codes * target).sum(axis=0)
    den = ((gram @ codes) * codes).sum(axis=0)
    codes *= np.where(den > _EPS, num / np.maximum(den, _EPS), 0.0).astype(np.float32)
    for _ in range(int(iterations)):
        for k in range(d.shape[0]):
            step = (target[k] - gram[k] @ codes) / diag[k]
            np.maximum(codes[k] + step, 0.0, out=codes[k])
    return codes, projection, gram


class StreamedNMF:
    """NMF ``X ≈ H D`` fitted pass by pass from summed statistics (module docstring).

    n_components: atoms K; alpha: L1 weight on the codes; code_iterations: HALS sweeps per chunk;
    dictionary_iterations: HALS sweeps over the atoms at the end of a pass; seed: of the random
    initial atoms (:func:`random_atoms`).

    Fitted attributes: ``components_`` (K, C) unit-norm atoms; ``n_passes_``; ``history_`` relative
    reconstruction error ``||X - H D|| / ||X||`` of each finished pass (with the dictionary the pass
    coded with); ``n_features_in_``. Pass state: ``stat_a_`` (K, K), ``stat_b_`` (K, C),
    ``n_frames_``, ``residual_`` and ``energy_`` (sums of squares), ``worst_`` (K, C) the frames with
    the largest residuals and ``worst_error_`` (K,) their squared residuals.
    """

    def __init__(
        self,
        n_components: int,
        *,
        alpha: float = 0.0,
        code_iterations: int = 5,
        dictionary_iterations: int = 50,
        seed: int = 0,
    ) -> None:
        for name, value, lowest in (
            ("n_components", n_components, 1),
            ("code_iterations", code_iterations, 1),
            ("dictionary_iterations", dictionary_iterations, 1),
        ):
            if isinstance(value, bool) or int(value) != value or value < lowest:
                raise InputError(f"{name} must be an integer >= {lowest}, got {value!r}")
        if not np.isfinite(alpha) or alpha < 0:
            raise InputError(f"alpha must be a finite number >= 0, got {alpha!r}")
        self.n_components = int(n_components)
        self.alpha = float(alpha)
        self.code_iterations = int(code_iterations)
        self.dictionary_iterations = int(dictionary_iterations)
        self.seed = int(seed)
        self.reset()

    def __repr__(self) -> str:
        return (
            f"StreamedNMF(n_components={self.n_components}, alpha={self.alpha}, "
            f"code_iterations={self.code_iterations}, seed={self.seed})"
        )

    def reset(self) -> StreamedNMF:
        """Forget the dictionary and every statistic."""
        self.components_: np.ndarray | None = None
        self.n_features_in_: int | None = None
        self.n_passes_ = 0
        self.history_: list[float] = []
        self._clear_pass()
        return self

    def _clear_pass(self) -> None:
        k, c = self.n_components, self.n_features_in_ or 0
        self.stat_a_ = np.zeros((k, k), dtype=np.float64)
        self.stat_b_ = np.zeros((k, c), dtype=np.float64)
        self.n_frames_ = 0
        self.residual_ = 0.0
        self.energy_ = 0.0
        self.worst_ = np.zeros((k, c), dtype=np.float64)
        self.worst_error_ = np.full(k, -1.0)

    def initialize(self, n_features: int) -> StreamedNMF:
        """Random initial atoms for ``n_features``-dimensional frames (no-op when already sized)."""
        if self.components_ is None:
            self.n_features_in_ = int(n_features)
            self.components_ = random_atoms(self.n_components, self.n_features_in_, self.seed)
            self._clear_pass()
        elif n_features != self.n_features_in_:
            raise InputError(f"frames have {n_features} features, the dictionary {self.n_features_in_}")
        return self

    # -- one pass -------------------------------------------------------------------------

    def _check(self, frames) -> np.ndarray:
        x = np.asarray(frames, dtype=np.float32)
        if x.ndim != 2:
            raise InputError(f"frames must be (n, C), got shape {x.shape}")
        self.initialize(x.shape[1])
        return x

    def partial_fit(self, frames) -> StreamedNMF:
        """Code ``frames: (n, C) >= 0`` with the current dictionary and add them to this pass's statistics."""
        x = self._check(frames)
        if x.size == 0:
            return self
        if not np.isfinite(x).all():
            raise InputError("frames contain NaN/inf values")
        if float(x.min()) < 0:
            raise InputError(f"NMF needs non-negative frames, got a minimum of {float(x.min()):.4g}")
        with serial_blas():
            codes, projection, gram = _solve_codes(x, self.components_, self.alpha, self.code_iterations)  # (K, n)
            self.stat_a_ += (codes @ codes.T).astype(np.float64)
            self.stat_b_ += (codes @ x).astype(np.float64)
        # ||x - h D||^2 = ||x||^2 - 2 h.(x D^T) + h G h^T, per frame, without forming the reconstruction
        energy = np.einsum("nc,nc->n", x, x, dtype=np.float64)
        errors = energy - 2 * np.einsum("kn,kn->n", codes, projection, dtype=np.float64)
        errors = np.maximum(errors + np.einsum("kn,kn->n", gram @ codes, codes, dtype=np.float64), 0.0)
        self.residual_ += float(errors.sum())
        self.energy_ += float(energy.sum())
        self.n_frames_ += len(x)
        self._keep_worst(errors, x)
        return self

    def _keep_worst(self, errors: np.ndarray, frames: np.ndarray) -> None:
        """Keep the K frames with the largest squared residual seen in this pass (ties: earlier kept)."""
        k = min(self.n_components, len(errors))
        top = np.argpartition(-errors, k - 1)[:k]
        pool_error = np.concatenate([self.worst_error_, errors[top]])
        pool = np.concatenate([self.worst_, frames[top]])
        keep = np.argsort(-pool_error, kind="stable")[: self.n_components]
        self.worst_error_, self.worst_ = pool_error[keep], pool[keep]

    def end_pass(self) -> StreamedNMF:
        """Update the dictionary from this pass's statistics, record the pass's error, start a new pass."""
        if self.components_ is None:
            raise InputError("the NMF has seen no frames (call partial_fit first)")
        if self.n_frames_ == 0:
            raise InputError("no frames in this pass: nothing to update the dictionary from")
        a, b = self.stat_a_, self.stat_b_
        d = self.components_.copy()
        used = np.diag(a) > _EPS
        with serial_blas():
            for _ in range(self.dictionary_iterations):
                for k in np.flatnonzero(used):
                    d[k] = np.maximum(d[k] + (b[k] - a[k] @ d) / a[k, k], 0.0)
        replacements = iter(np.argsort(-self.worst_error_, kind="stable"))
        for k in range(self.n_components):
            if used[k] and d[k].any():
                continue
            j = next(replacements, None)  # an unused atom takes the worst-reconstructed frame
            if j is not None and self.worst_error_[j] > 0 and self.worst_[j].any():
                d[k] = self.worst_[j]
            else:
                d[k] = random_atoms(1, d.shape[1], self.seed + 7919 * (self.n_passes_ + 1) + k)[0]
        self.components_ = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), _EPS)
        self.history_.append(float(np.sqrt(self.residual_ / max(self.energy_, _EPS))))
        self.n_passes_ += 1
        self._clear_pass()
        return self

    # -- combining --------------------------------------------------------------------------

    def merge(self, other: StreamedNMF) -> StreamedNMF:
        """Add ``other``'s pass statistics (same dictionary, same pass) into this one; returns self."""
        if other.components_ is None or other.n_frames_ == 0:
            return self
        if self.components_ is None:
            raise InputError("merge into an initialized NMF (call partial_fit or initialize first)")
        if other.n_passes_ != self.n_passes_ or not np.array_equal(other.components_, self.components_):
            raise InputError("cannot merge NMF statistics gathered with different dictionaries (pass or seed differ)")
        self.stat_a_ += other.stat_a_
        self.stat_b_ += other.stat_b_
        self.residual_ += other.residual_
        self.energy_ += other.energy_
        self.n_frames_ += other.n_frames_
        self._keep_worst(other.worst_error_, other.worst_)
        return self

    def all_reduce(self, group=None) -> StreamedNMF:
        """Sum this pass's statistics over all torch.distributed processes (no-op without a group).

        Every process must hold the same dictionary (same seed and passes), which the summed
        statistics then keep identical after :meth:`end_pass`."""
        dist = torch_distributed()
        if dist is None:
            return self
        scalars = np.array([self.residual_, self.energy_, float(self.n_frames_)])
        all_reduce_arrays([self.stat_a_, self.stat_b_, scalars], group)
        self.residual_, self.energy_, self.n_frames_ = float(scalars[0]), float(scalars[1]), int(scalars[2])
        gathered: list = [None] * dist.get_world_size(group)
        dist.all_gather_object(gathered, (self.worst_error_, self.worst_), group=group)
        self.worst_error_ = np.full(self.n_components, -1.0)
        self.worst_ = np.zeros_like(self.worst_)
        for errors, frames in gathered:
            self._keep_worst(errors, frames)
        return self

    # -- whole data -------------------------------------------------------------------------

    def fit(self, frames: np.ndarray | Sequence[np.ndarray], passes: int = 20, chunk_size: int = 4096) -> StreamedNMF:
        """Reset, then ``passes`` passes over ``frames``: one array ``(n, C)`` (chunked by ``chunk_size``)
        or a sequence of chunks ``(n_i, C)``; returns self."""
        if isinstance(passes, bool) or int(passes) != passes or passes < 1:
            raise InputError(f"passes must be an integer >= 1, got {passes!r}")
        chunks = _chunks(frames, chunk_size)
        self.reset()
        for _ in range(int(passes)):
            for chunk in chunks:
                self.partial_fit(chunk)
            self.end_pass()
        return self

    def _fitted(self) -> np.ndarray:
        if self.components_ is None:
            raise InputError("the NMF is not fitted yet (call fit, or partial_fit and end_pass)")
        return self.components_

    def transform(self, frames) -> np.ndarray:
        """Codes ``(n, K)`` of ``frames: (n, C)`` on the current dictionary."""
        return nmf_codes(self._check(frames), self._fitted(), self.alpha, self.code_iterations)

    def inverse_transform(self, codes) -> np.ndarray:
        """Frames ``(n, C)`` of ``codes: (n, K)``."""
        return np.asarray(codes, dtype=np.float64) @ self._fitted()


def _chunks(frames, chunk_size: int) -> list[np.ndarray]:
    if isinstance(frames, np.ndarray):
        if frames.ndim != 2:
            raise InputError(f"frames must be (n, C), got shape {frames.shape}")
        n = len(frames)
        return [frames[i : i + chunk_size] for i in range(0, max(n, 1), chunk_size)]
    if isinstance(frames, Iterable):
        return [np.asarray(c) for c in frames]
    raise InputError(f"frames must be an array (n, C) or a sequence of arrays, got {type(frames).__name__}")
