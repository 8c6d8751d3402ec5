"""Numba group-by kernels and mergeable accumulators.

Two kernels aggregate frames by an integer label (``-1`` = ignore):

- :func:`group_stats`: per-group sums, sums of squares and counts of
  ``values: (T, N)`` (frames x neurons), optionally weighted per frame;
- :func:`windowed_sums`: per-group sums of the ``(F, W)`` input window centred
  on each labelled frame of ``features: (F, T)``.

Totals are float64. ``group_stats`` first sums each group's frames in the
input dtype in runs of at most 64 frames (for float32 input, an error of at
most 64 * 2**-24, about 4e-6, of those frames' absolute sum; float64 input
stays float64 throughout); ``windowed_sums`` adds in
float64. The kernels are ``numba.njit(parallel=True, cache=True)`` (fastmath
only to fuse multiply-adds): the first call in a
fresh environment compiles them (1-5 s per kernel and input dtype on 2 cores,
see benchmarks/README.md); later processes load the compiled code from the
on-disk cache (``__pycache__``, or ``NUMBA_CACHE_DIR``) in a fraction of a
second. Small inputs run serially in the calling thread; larger ones use
Numba's thread pool (``numba.set_num_threads`` controls it).

:class:`GroupStats` and :class:`WindowStats` hold the state (plain arrays) over
a whole corpus: ``update`` chunk by chunk, ``merge`` two accumulators, and
``all_reduce`` across processes with ``torch.distributed`` (launched by
``torchrun``; gloo on CPU). Because every statistic is a sum, any split of the
frames gives the same result up to the rounding of the float32 partials.

Modules: :mod:`.kernels` (the Numba kernels, their drivers and thread
handling), :mod:`.checks` (input checks), :mod:`.stats` (``group_stats``,
``windowed_sums``, variance decomposition), :mod:`.distributed`
(``torch.distributed`` helpers) and :mod:`.accumulators` (``GroupStats``,
``WindowStats``). The tuning knobs ``_PARALLEL_MIN_WORK`` and
``_STAGE_FRAMES`` live in :mod:`.kernels`; set them there.
"""

from asr_introspect.aggregate.accumulators import GroupStats, GroupSummary, WindowStats, WindowSummary
from asr_introspect.aggregate.distributed import all_reduce_arrays, torch_distributed
from asr_introspect.aggregate.kernels import group_stats_into, windowed_sums_into
from asr_introspect.aggregate.stats import group_stats, specificity, variance_decomposition, windowed_sums

__all__ = [
    "group_stats",
    "windowed_sums",
    "GroupStats",
    "GroupSummary",
    "WindowStats",
    "WindowSummary",
    "variance_decomposition",
    "specificity",
    "torch_distributed",
    "all_reduce_arrays",
    "group_stats_into",
    "windowed_sums_into",
]
