"""Linear probes from a layer's frames to phonetic categories, with a control task (Hewitt & Liang 2019).

The probe is a ridge-regression classifier (one-vs-rest least squares on
one-hot targets, closed form): frames are z-scored per channel with the
statistics of all sampled frames (label-free), an intercept is added, and the
weights solve ``(X'X + lam I) W = X'Y`` with ``lam = ridge * trace(X'X) / d``
(the intercept unpenalized). The class with the largest score wins. It is
cross-validated with folds of whole utterances (no utterance has frames on
both sides), and every task of a layer shares the fold Gram matrices, so a
layer costs one ``X'X`` whatever the number of tasks.

Accuracy is *balanced* accuracy (mean recall over classes present), so a
probe that always answers "consonant" scores 1/K, not the consonant share.

Control task: each group type (phone, letter) is mapped to a random category
with the category sizes kept (the categories of the group types are permuted,
seeded); the same probe is trained on that labelling. A probe that only
memorizes group identity scores as well on the control as on the real
categories; selectivity = accuracy - control accuracy is what the layer's
geometry adds for the real categories.

Wide layers: frames are gathered with at most ``max_dims`` channels; wider
layers are multiplied by a fixed Gaussian random projection
(:func:`random_projection`, seeded, entries N(0, 1/k)), which keeps distances
and linear separability approximately (Johnson-Lindenstrauss).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = [
    "balanced_accuracy",
    "bootstrap_balanced_accuracy",
    "control_categories",
    "probe_predictions",
    "random_projection",
    "utterance_folds",
]


def random_projection(n_in: int, n_out: int, seed: int = 0) -> np.ndarray:
    """(n_in, n_out) float32 Gaussian projection with entries N(0, 1/n_out)."""
    rng = np.random.default_rng(seed)
    return (rng.standard_normal((n_in, n_out)) / np.sqrt(n_out)).astype(np.float32)


def utterance_folds(utterance: np.ndarray, n_folds: int = 5, seed: int = 0) -> np.ndarray:
    """(n,) fold of each frame: utterances are dealt to ``n_folds`` folds in a seeded random order."""
    uniq, inverse = np.unique(np.asarray(utterance), return_inverse=True)
    order = np.random.default_rng(seed).permutation(uniq.size)
    fold_of = np.empty(uniq.size, dtype=np.int64)
    fold_of[order] = np.arange(uniq.size) % max(1, min(n_folds, uniq.size))
    return fold_of[inverse]


def control_categories(categories: Sequence[str | None], seed: int = 0) -> list[str | None]:
    """The control labelling of group types: the categories of the categorized groups, permuted
    (seeded), so each category keeps its number of group types; None stays None."""
    idx = [i for i, c in enumerate(categories) if c is not None]
    perm = np.random.default_rng(seed).permutation(len(idx))
    out = list(categories)
    for i, j in zip(idx, perm):
        out[i] = categories[idx[j]]
    return out


def probe_predictions(
    X: np.ndarray, targets: dict[str, np.ndarray], folds: np.ndarray, ridge: float = 1e-2
) -> dict[str, np.ndarray]:
    """Out-of-fold predictions of the ridge probe for several tasks on the same frames.

    X: (n, d) frames; targets[task]: (n,) int class indices (-1: frame not used by that task);
    folds: (n,) fold of each frame. Returns {task: (n,) predicted class, -1 where not predicted}.
    Tasks that use the same frames share one fold Gram and one solve (their one-hot targets side by side).
    """
    X = np.asarray(X, dtype=np.float64)
    mean, std = X.mean(0), X.std(0)
    Z = np.concatenate([(X - mean) / np.where(std > 1e-12, std, 1.0), np.ones((len(X), 1))], axis=1)
    d = Z.shape[1]
    penalty = np.diag(np.r_[np.ones(d - 1), 0.0])
    out: dict[str, np.ndarray] = {}
    by_frames: dict[bytes, list[str]] = {}
    for task, y in targets.items():
        y = np.asarray(y)
        out[task] = np.full(len(y), -1, dtype=np.int64)
        if (y >= 0).any() and int(y.max()) >= 1:
            by_frames.setdefault((y >= 0).tobytes(), []).append(task)
    for key, tasks in by_frames.items():
        used = np.frombuffer(key, dtype=bool)
        blocks = [np.asarray(targets[t])[used] for t in tasks]
        widths = [int(b.max()) + 1 for b in blocks]
        Y = np.zeros((int(used.sum()), sum(widths)))
        offset = 0
        for b, w in zip(blocks, widths):
            Y[np.arange(len(b)), offset + b] = 1.0
            offset += w
        Zu, fu = Z[used], folds[used]
        fold_ids = np.unique(fu)
        parts = {f: (Zu[fu == f].T @ Zu[fu == f], Zu[fu == f].T @ Y[fu == f]) for f in fold_ids}
        gram, cross = sum(g for g, _ in parts.values()), sum(c for _, c in parts.values())
        preds = np.full((len(tasks), len(Zu)), -1, dtype=np.int64)
        for f in fold_ids:
            test = fu == f
            if test.all():
                continue
            A = gram - parts[f][0]
            lam = ridge * np.trace(A[:-1, :-1]) / max(d - 1, 1)
            W = np.linalg.solve(A + lam * penalty + 1e-9 * np.eye(d), cross - parts[f][1])
            scores = Zu[test] @ W
            offset = 0
            for i, w in enumerate(widths):
                preds[i, test] = scores[:, offset : offset + w].argmax(1)
                offset += w
        for i, t in enumerate(tasks):
            out[t][used] = preds[i]
    return out


def balanced_accuracy(y: np.ndarray, pred: np.ndarray) -> float:
    """Mean over the classes present in ``y`` (frames with y >= 0 and pred >= 0) of the recall."""
    return float(bootstrap_balanced_accuracy(y, pred, np.zeros(len(y), dtype=np.int64), None)[0])


def bootstrap_balanced_accuracy(
    y: np.ndarray, pred: np.ndarray, utterance: np.ndarray, multiplicities: np.ndarray | None
) -> np.ndarray:
    """Balanced accuracy of resampled corpora: (B,) for multiplicities (B, U) of the utterances
    (indices ``utterance`` (n,) into U), or (1,) for the corpus itself (None)."""
    y, pred, utterance = np.asarray(y), np.asarray(pred), np.asarray(utterance, dtype=np.int64)
    ok = (y >= 0) & (pred >= 0)
    y, pred, utterance = y[ok], pred[ok], utterance[ok]
    if y.size == 0:
        n_b = 1 if multiplicities is None else len(multiplicities)
        return np.full(n_b, np.nan)
    U = int(utterance.max()) + 1
    if multiplicities is None:
        multiplicities = np.ones((1, U))
    K = int(y.max()) + 1
    total = np.zeros((U, K))
    correct = np.zeros((U, K))
    np.add.at(total, (utterance, y), 1.0)
    np.add.at(correct, (utterance, y), (pred == y).astype(np.float64))
    m = np.asarray(multiplicities, dtype=np.float64)[:, :U]
    n, c = m @ total, m @ correct  # (B, K)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(n > 0, c / n, np.nan)
    present = (n > 0).sum(1)
    return np.where(present > 0, np.nansum(recall, 1) / np.maximum(present, 1), np.nan)
