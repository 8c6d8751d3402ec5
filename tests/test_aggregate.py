"""Numba group-by kernels and accumulators vs slow NumPy references."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from asr_introspect.aggregate import (
    GroupStats,
    WindowStats,
    group_stats,
    kernels,
    specificity,
    variance_decomposition,
    windowed_sums,
)
from asr_introspect.io import load_npz, save_npz

SETTINGS = settings(max_examples=50, deadline=None)
CLOSE = dict(rtol=1e-12, atol=1e-9)
PATHS = ("serial", "parallel")


@contextlib.contextmanager
def kernel_path(path):
    """Force the serial or the multi-threaded kernels whatever the input size."""
    before = kernels._PARALLEL_MIN_WORK
    kernels._PARALLEL_MIN_WORK = 0 if path == "parallel" else 1 << 62
    try:
        yield
    finally:
        kernels._PARALLEL_MIN_WORK = before


# --------------------------------------------------------------------------- references


def ref_group_stats(values, labels, n_groups, weights=None):
    values = np.asarray(values, dtype=np.float64)
    n_feat = values.shape[1]
    sums = np.zeros((n_groups, n_feat))
    sums_sq = np.zeros((n_groups, n_feat))
    counts = np.zeros(n_groups, dtype=np.int64)
    weight_sums = np.zeros(n_groups)
    for t, g in enumerate(labels):
        if g < 0:
            continue
        w = 1.0 if weights is None else float(weights[t])
        sums[g] += w * values[t]
        sums_sq[g] += w * values[t] ** 2
        counts[g] += 1
        weight_sums[g] += w
    return sums, sums_sq, counts, weight_sums


def ref_windowed(features, centers, labels, n_groups, window, border):
    features = np.asarray(features, dtype=np.float64)
    n_feat, n_frames = features.shape
    sums = np.zeros((n_groups, n_feat, window))
    counts = np.zeros(n_groups, dtype=np.int64)
    position_counts = np.zeros((n_groups, window), dtype=np.int64)
    for c, g in zip(centers, labels):
        if g < 0:
            continue
        cols = np.arange(c - window // 2, c - window // 2 + window)
        valid = (cols >= 0) & (cols < n_frames)
        if border == "skip" and not valid.all():
            continue
        counts[g] += 1
        position_counts[g] += valid
        sums[g][:, valid] += features[:, cols[valid]]
    return sums, counts, position_counts


# --------------------------------------------------------------------------- strategies

finite32 = st.floats(-1e3, 1e3, width=32, allow_nan=False)


@st.composite
def frames(draw, weighted=False):
    n_frames = draw(st.integers(0, 60))
    n_feat = draw(st.integers(0, 7))
    n_groups = draw(st.integers(1, 6))
    values = draw(hnp.arrays(np.float32, (n_frames, n_feat), elements=finite32))
    labels = draw(hnp.arrays(np.int64, (n_frames,), elements=st.integers(-1, n_groups - 1)))
    weights = None
    if weighted:
        weights = draw(hnp.arrays(np.float32, (n_frames,), elements=st.floats(0, 10, width=32)))
    return values, labels, n_groups, weights


@st.composite
def windows(draw):
    n_frames = draw(st.integers(1, 40))
    n_feat = draw(st.integers(0, 5))
    n_groups = draw(st.integers(1, 5))
    window = draw(st.integers(1, 12))
    n_centers = draw(st.integers(0, 25))
    features = draw(hnp.arrays(np.float32, (n_feat, n_frames), elements=finite32))
    centers = draw(hnp.arrays(np.int64, (n_centers,), elements=st.integers(0, n_frames - 1)))
    labels = draw(hnp.arrays(np.int64, (n_centers,), elements=st.integers(-1, n_groups - 1)))
    return features, centers, labels, n_groups, window


def staging_tolerance(values, labels, n_groups, weights=None):
    """Allowed |error| of (sums, sums_sq) from group_stats for float32 input: each group's
    frames are summed in float32 in runs of at most _STAGE_FRAMES, so an error of up to
    (K + 2) * 2**-24 of the absolute values added (x, then w x and w x**2 rounded once more)."""
    if np.asarray(values).dtype == np.float64:
        return None
    eps = (kernels._STAGE_FRAMES + 2) * 2.0**-24
    w = None if weights is None else np.abs(weights)
    abs_sums, abs_sq = ref_group_stats(np.abs(values), labels, n_groups, w)[:2]
    return eps * abs_sums, eps * abs_sq


def assert_stats_equal(got, want, tolerance=None):
    """Equal counts; float arrays equal to float64 rounding, or within ``tolerance``
    (a pair of arrays for the first two float entries, from :func:`staging_tolerance`)."""
    assert len(got) == len(want)
    for i, (g, w) in enumerate(zip(got, want)):
        assert g.shape == w.shape
        if np.issubdtype(w.dtype, np.integer):
            assert g.dtype == np.int64
            np.testing.assert_array_equal(g, w)
        else:
            assert g.dtype == np.float64
            if tolerance is not None and i < 2:
                excess = np.abs(g - w) - (tolerance[i] + CLOSE["atol"])
                assert (excess <= 0).all(), f"entry {i}: error above the staging bound by {excess.max()}"
            else:
                np.testing.assert_allclose(g, w, **CLOSE)


# --------------------------------------------------------------------------- group_stats


@SETTINGS
@given(frames())
def test_group_stats_matches_reference(case):
    values, labels, n_groups, _ = case
    want = ref_group_stats(values, labels, n_groups)[:3]
    tol = staging_tolerance(values, labels, n_groups)
    for path in PATHS:
        with kernel_path(path):
            assert_stats_equal(group_stats(values, labels, n_groups), want, tol)
            assert_stats_equal(group_stats(values.astype(np.float64), labels, n_groups), want)


@SETTINGS
@given(frames(weighted=True))
def test_group_stats_weighted_matches_reference(case):
    values, labels, n_groups, weights = case
    want = ref_group_stats(values, labels, n_groups, weights)
    tol = staging_tolerance(values, labels, n_groups, weights)
    for path in PATHS:
        with kernel_path(path):
            assert_stats_equal(group_stats(values, labels, n_groups, weights=weights), want, tol)


def test_group_stats_edge_cases():
    # T = 0: zeros of the right shapes
    s, q, c = group_stats(np.zeros((0, 3), np.float32), np.zeros(0, np.int64), 4)
    assert s.shape == q.shape == (4, 3) and c.shape == (4,)
    assert not s.any() and not q.any() and not c.any()
    # all labels ignored
    values = np.random.default_rng(0).standard_normal((20, 3)).astype(np.float32)
    s, q, c = group_stats(values, np.full(20, -1), 2)
    assert not s.any() and not q.any() and not c.any()
    # single frame; empty groups stay zero
    s, q, c = group_stats(values[:1], [1], 3)
    np.testing.assert_array_equal(c, [0, 1, 0])
    np.testing.assert_allclose(s[1], values[0])
    np.testing.assert_allclose(q[1], values[0].astype(np.float64) ** 2)
    assert not s[[0, 2]].any()
    # n_groups = 0 with every frame ignored
    s, q, c = group_stats(values, np.full(20, -1), 0)
    assert s.shape == (0, 3) and c.shape == (0,)


def test_parallel_scratch_is_cleared_between_calls_and_shapes():
    # the per-thread parts are reused between calls (no fresh pages per update):
    # stale partial sums from an earlier call, of this or another shape, must not leak in
    rng = np.random.default_rng(7)
    with kernel_path("parallel"):
        for n_groups, n_feat, weighted in [(5, 8, False), (3, 4, True), (5, 8, True), (5, 8, False), (3, 4, False)]:
            values = rng.standard_normal((50, n_feat)).astype(np.float64)
            labels = rng.integers(-1, n_groups, 50)
            weights = rng.random(50) if weighted else None
            acc = GroupStats(n_groups, n_feat).update(values, labels, weights)
            want = ref_group_stats(values, labels, n_groups, weights)
            np.testing.assert_allclose(acc.sums, want[0], rtol=1e-12, atol=1e-12)
            np.testing.assert_allclose(acc.sums_sq, want[1], rtol=1e-12, atol=1e-12)
            np.testing.assert_array_equal(acc.counts, want[2])


def test_group_stats_partials_are_float32_and_totals_float64():
    K = kernels._STAGE_FRAMES
    # 2**24 + 1 is not representable in float32: the float64 totals keep every unit
    values = np.ones((2**12 + 3, 1), np.float32) * np.float32(2**12)
    s, _, _ = group_stats(values, np.zeros(len(values), np.int64), 1)
    assert s[0, 0] == float(2**12) * (2**12 + 3)
    # 1e8, then K - 1 zeros (first partial: 1e8), then three ones (second partial: 3).
    # In float32 1e8 + 1 == 1e8; partials of at most K frames added in float64 keep them.
    values = np.array([[1e8]] + [[0.0]] * (K - 1) + [[1.0]] * 3, np.float32)
    for path in PATHS:
        with kernel_path(path):
            s, _, c = group_stats(values, np.zeros(len(values), np.int64), 1)
            assert c[0] == K + 3 and s[0, 0] == 1e8 + 3  # (two chunks split the zeros: same sums)
    # within a partial float32 rounding applies; float64 input is exact throughout
    values = np.array([[1e8], [1.0], [1.0], [1.0]], np.float32)
    s, _, _ = group_stats(values, [0, 0, 0, 0], 1)
    assert abs(s[0, 0] - (1e8 + 3)) <= 8
    s, _, _ = group_stats(values.astype(np.float64), [0, 0, 0, 0], 1)
    assert s[0, 0] == 1e8 + 3


def test_group_stats_non_contiguous_torch_and_dtypes():
    rng = np.random.default_rng(1)
    base = rng.standard_normal((9, 40)).astype(np.float32)
    values = base.T[::2]  # (20, 9), not C-contiguous
    assert not values.flags.c_contiguous
    labels = rng.integers(-1, 3, len(values)).astype(np.int32)
    want = ref_group_stats(values, labels, 3)[:3]
    tol = staging_tolerance(values, labels, 3)
    assert_stats_equal(group_stats(values, labels, 3), want, tol)
    assert_stats_equal(
        group_stats(torch.from_numpy(np.ascontiguousarray(values)), torch.from_numpy(labels), 3), want, tol
    )
    assert_stats_equal(group_stats(values.astype(np.float64), labels, 3), want)


def test_kernels_independent_of_thread_count_and_path():
    rng = np.random.default_rng(2)
    values = rng.standard_normal((3001, 50)).astype(np.float32)  # above the parallel threshold
    labels = rng.integers(-1, 4, 3001)
    weights = rng.random(3001).astype(np.float32)
    features = np.ascontiguousarray(values.T)
    centers = rng.integers(0, 3001, 400)
    before = numba.get_num_threads()
    try:
        numba.set_num_threads(1)
        one = (
            group_stats(values, labels, 4),
            group_stats(values, labels, 4, weights),
            windowed_sums(features, centers, labels[:400], 4, 9, border="pad"),
        )
    finally:
        numba.set_num_threads(before)
    # different chunks put different frames in the same float32 partial: within the bound
    tol = staging_tolerance(values, labels, 4)
    tol_w = staging_tolerance(values, labels, 4, weights)
    for path in PATHS:
        with kernel_path(path):
            assert_stats_equal(group_stats(values, labels, 4), one[0], tol)
            assert_stats_equal(group_stats(values, labels, 4, weights), one[1], tol_w)
            assert_stats_equal(windowed_sums(features, centers, labels[:400], 4, 9, border="pad"), one[2])
    assert_stats_equal(one[0], ref_group_stats(values, labels, 4)[:3], tol)
    assert_stats_equal(one[1], ref_group_stats(values, labels, 4, weights), tol_w)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_group_stats_runs_longer_than_a_partial(dtype):
    # labels in runs of 1-40 frames: partials fill, flush and restart within and across runs
    rng = np.random.default_rng(8)
    labels = np.repeat(rng.integers(-1, 6, 300), rng.integers(1, 40, 300))[:4000]
    values = (rng.standard_normal((len(labels), 5)) + 2.0).astype(dtype)
    want = ref_group_stats(values, labels, 6)[:3]
    for path in PATHS:
        with kernel_path(path):
            assert_stats_equal(group_stats(values, labels, 6), want, staging_tolerance(values, labels, 6))


@pytest.mark.parametrize(
    "labels, n_groups, match",
    [
        ([0, 3, 1], 3, "found 3 at index 1"),
        ([0, -2, 1], 3, "found -2 at index 1"),
        ([0, 1], 3, "labels has 2 entries, expected 3"),
        ([0.0, 1.0, 2.0], 3, "integer dtype"),
        ([0, 1, 2], -1, "n_groups"),
    ],
)
def test_group_stats_rejects_bad_labels(labels, n_groups, match):
    with pytest.raises(ValueError, match=match):
        group_stats(np.zeros((3, 2), np.float32), np.asarray(labels), n_groups)


def test_group_stats_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        group_stats(np.zeros(3, np.float32), [0, 0, 0], 1)
    with pytest.raises(ValueError, match="weights"):
        group_stats(np.zeros((3, 2), np.float32), [0, 0, 0], 1, weights=np.ones(2))


# --------------------------------------------------------------------------- windowed_sums


@SETTINGS
@given(windows(), st.sampled_from(["skip", "pad"]))
def test_windowed_sums_matches_reference(case, border):
    features, centers, labels, n_groups, window = case
    sums, counts, position_counts = ref_windowed(features, centers, labels, n_groups, window, border)
    want = (sums, counts) if border == "skip" else (sums, counts, position_counts)
    for path in PATHS:
        with kernel_path(path):
            assert_stats_equal(windowed_sums(features, centers, labels, n_groups, window, border=border), want)


def test_windowed_sums_window_definition():
    features = np.arange(20, dtype=np.float32)[None, :]  # feature value = frame index
    # even W = 4 around c = 10: columns [8, 12)
    sums, counts = windowed_sums(features, [10], [0], 1, 4, border="skip")
    np.testing.assert_array_equal(sums[0, 0], [8, 9, 10, 11])
    np.testing.assert_array_equal(counts, [1])
    # odd W = 5 around c = 10: columns [8, 13), centre in the middle
    sums, _ = windowed_sums(features, [10], [0], 1, 5, border="skip")
    np.testing.assert_array_equal(sums[0, 0], [8, 9, 10, 11, 12])
    # a border window: skipped with "skip", partly counted with "pad"
    sums, counts = windowed_sums(features, [1, 10], [0, 0], 1, 5, border="skip")
    np.testing.assert_array_equal(counts, [1])
    sums, counts, pos = windowed_sums(features, [1, 10], [0, 0], 1, 5, border="pad")
    np.testing.assert_array_equal(counts, [2])
    np.testing.assert_array_equal(pos[0], [1, 2, 2, 2, 2])
    np.testing.assert_array_equal(sums[0, 0], [8, 9 + 0, 10 + 1, 11 + 2, 12 + 3])


def test_windowed_sums_edge_cases():
    features = np.ones((3, 5), np.float32)
    sums, counts = windowed_sums(features, np.zeros(0, np.int64), np.zeros(0, np.int64), 2, 3, border="skip")
    assert sums.shape == (2, 3, 3) and not sums.any() and not counts.any()
    sums, counts, pos = windowed_sums(features, [0, 2, 4], [-1, -1, -1], 2, 3, border="pad")
    assert not sums.any() and not counts.any() and not pos.any()
    # window longer than the utterance: "skip" drops it, "pad" keeps the valid part
    sums, counts = windowed_sums(features, [2], [1], 2, 9, border="skip")
    assert not counts.any()
    sums, counts, pos = windowed_sums(features, [2], [1], 2, 9, border="pad")
    np.testing.assert_array_equal(pos[1], [0, 0, 1, 1, 1, 1, 1, 0, 0])
    assert sums[1].sum() == 3 * 5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(centers=[5], labels=[0]), "centers must be frames in"),
        (dict(centers=[-1], labels=[0]), "centers must be frames in"),
        (dict(centers=[1], labels=[2]), "found 2"),
        (dict(centers=[1], labels=[0], window=0), "window"),
        (dict(centers=[1], labels=[0], border="zero"), "border"),
        (dict(centers=[1, 2], labels=[0]), "labels has 1 entries"),
    ],
)
def test_windowed_sums_rejects_bad_input(kwargs, match):
    args = dict(features=np.ones((2, 5), np.float32), n_groups=2, window=3) | kwargs
    with pytest.raises(ValueError, match=match):
        windowed_sums(**args)


# --------------------------------------------------------------------------- GroupStats


@SETTINGS
@given(frames(weighted=True), st.lists(st.integers(0, 60), max_size=4), st.booleans())
def test_group_stats_accumulator_chunks_equal_one_shot(case, cuts, use_weights):
    values, labels, n_groups, weights = case
    weights = weights if use_weights else None
    n_feat = values.shape[1]
    one = GroupStats(n_groups, n_feat).update(values, labels, weights)
    chunked = GroupStats(n_groups, n_feat)
    bounds = [0, *sorted(min(c, len(values)) for c in cuts), len(values)]
    for a, b in zip(bounds[:-1], bounds[1:]):
        chunked.update(values[a:b], labels[a:b], None if weights is None else weights[a:b])
    # any split gives the reference within the float32 staging bound
    want = ref_group_stats(values, labels, n_groups, weights)
    tol = staging_tolerance(values, labels, n_groups, weights)
    assert_stats_equal(one.to_dict().values(), want, tol)
    assert_stats_equal(chunked.to_dict().values(), want, tol)
    # merge(a, b) == one pass over both
    half = len(values) // 2
    a = GroupStats(n_groups, n_feat).update(values[:half], labels[:half], None if weights is None else weights[:half])
    b = GroupStats(n_groups, n_feat).update(values[half:], labels[half:], None if weights is None else weights[half:])
    assert_stats_equal(a.merge(b).to_dict().values(), want, tol)


def test_group_stats_result_means_variance():
    rng = np.random.default_rng(3)
    values = rng.standard_normal((200, 4)) * 3 + 1  # float64: checks the formulas, not the staging
    labels = rng.integers(-1, 3, 200)
    labels[labels == 1] = 2  # group 1 empty
    res = GroupStats(4, 4).update(values, labels).result()
    assert np.isnan(res.means[[1, 3]]).all() and np.isnan(res.variance[[1, 3]]).all()
    for g in (0, 2):
        x = values[labels == g].astype(np.float64)
        np.testing.assert_allclose(res.means[g], x.mean(0), rtol=1e-10)
        np.testing.assert_allclose(res.variance[g], x.var(0), rtol=1e-9)
        np.testing.assert_allclose(res.std[g], x.std(0), rtol=1e-9)
    np.testing.assert_array_equal(res.counts, np.bincount(labels[labels >= 0], minlength=4))
    np.testing.assert_array_equal(res.weight_sums, res.counts)
    sample = GroupStats(4, 4).update(values, labels).result(ddof=1)
    np.testing.assert_allclose(sample.variance[0], values[labels == 0].astype(np.float64).var(0, ddof=1), rtol=1e-9)


def test_group_stats_weighted_result_equals_repeated_frames():
    rng = np.random.default_rng(4)
    values = rng.standard_normal((50, 3))  # float64: checks the weighting, not the staging
    labels = rng.integers(-1, 3, 50)
    reps = rng.integers(0, 4, 50)
    weighted = GroupStats(3, 3).update(values, labels, reps.astype(np.float32))
    repeated = GroupStats(3, 3).update(np.repeat(values, reps, axis=0), np.repeat(labels, reps))
    np.testing.assert_allclose(weighted.sums, repeated.sums, **CLOSE)
    np.testing.assert_allclose(weighted.sums_sq, repeated.sums_sq, **CLOSE)
    np.testing.assert_allclose(weighted.weight_sums, repeated.counts)
    ok = repeated.counts > 0
    np.testing.assert_allclose(weighted.means[ok], repeated.means[ok], rtol=1e-10)
    np.testing.assert_allclose(weighted.variance()[ok], repeated.variance()[ok], rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(weighted.specificity(), repeated.specificity(), rtol=1e-8)


def test_group_stats_npz_roundtrip_and_errors(tmp_path):
    rng = np.random.default_rng(5)
    stats = GroupStats(3, 2).update(rng.standard_normal((30, 2)).astype(np.float32), rng.integers(-1, 3, 30))
    save_npz(tmp_path / "s.npz", **stats.to_dict(prefix="conv9/"))
    back = GroupStats.from_dict(load_npz(tmp_path / "s.npz"), prefix="conv9/")
    assert_stats_equal(back.to_dict().values(), stats.to_dict().values())
    assert back.counts.dtype == np.int64
    with pytest.raises(ValueError, match="shapes differ"):
        stats.merge(GroupStats(3, 3))
    with pytest.raises(ValueError, match=r"shape \(T, 2\)"):
        stats.update(np.zeros((4, 3), np.float32), [0, 0, 0, 0])
    # a rejected update leaves the state untouched
    before = stats.to_dict()
    with pytest.raises(ValueError, match="found 7"):
        stats.update(np.ones((3, 2), np.float32), [0, 7, 1])
    assert_stats_equal(stats.to_dict().values(), before.values())
    # all_reduce without a process group is a no-op
    before = stats.to_dict()
    assert stats.all_reduce() is stats
    assert_stats_equal(stats.to_dict().values(), before.values())


# --------------------------------------------------------------------------- variance decomposition


def test_variance_decomposition_sums_to_total_and_finds_planted_neuron():
    rng = np.random.default_rng(6)
    labels = rng.integers(-1, 5, 3000)
    values = rng.standard_normal((3000, 3))
    values[:, 0] += 4.0 * np.where(labels >= 0, labels, 0)  # neuron 0 encodes the group
    labels[labels == 3] = -1  # an empty group is left out
    stats = GroupStats(5, 3).update(values, labels)
    between, within = stats.variance_decomposition()
    kept = values[labels >= 0].astype(np.float64)
    np.testing.assert_allclose(between + within, kept.var(0), rtol=1e-9)
    spec = stats.specificity()
    assert spec[0] > 20 and (spec[1:] < 0.05).all()
    np.testing.assert_allclose(spec, specificity(stats.sums, stats.sums_sq, stats.counts))
    # all groups empty -> NaN
    b, w = variance_decomposition(np.zeros((2, 3)), np.zeros((2, 3)), np.zeros(2))
    assert np.isnan(b).all() and np.isnan(w).all()
    # no within-group variance -> inf
    spec = specificity([[1.0], [4.0]], [[1.0], [16.0]], [1, 1])
    assert np.isinf(spec).all()


# --------------------------------------------------------------------------- WindowStats


@SETTINGS
@given(windows(), st.sampled_from(["skip", "pad"]), st.integers(0, 25))
def test_window_stats_chunks_and_merge(case, border, cut):
    features, centers, labels, n_groups, window = case
    n_feat = features.shape[0]
    one = WindowStats(n_groups, n_feat, window, border).update(features, centers, labels)
    a = WindowStats(n_groups, n_feat, window, border).update(features, centers[:cut], labels[:cut])
    b = WindowStats(n_groups, n_feat, window, border).update(features, centers[cut:], labels[cut:])
    chunked = a.copy().update(features, centers[cut:], labels[cut:])
    merged = a.merge(b)
    for other in (chunked, merged):
        for key, want in one.to_dict().items():
            got = other.to_dict()[key]
            if key == "border":
                assert str(got) == border
            else:
                np.testing.assert_allclose(got, want, **CLOSE)
    res = one.result()
    sums, counts, pos = ref_windowed(features, centers, labels, n_groups, window, border)
    np.testing.assert_array_equal(res.counts, counts)
    with np.errstate(invalid="ignore", divide="ignore"):
        want = sums / pos[:, None, :]
    np.testing.assert_allclose(res.means, want, **CLOSE)  # NaN where nothing was seen
    if border == "skip":
        np.testing.assert_array_equal(res.position_counts, np.repeat(counts[:, None], window, 1))


def test_window_stats_streaming_utterances_roundtrip(tmp_path):
    rng = np.random.default_rng(7)
    stats = WindowStats(3, 4, 6, border="pad")
    all_feats, all_centers, all_labels = [], [], []
    for n_frames in (7, 30, 12):
        feats = rng.standard_normal((4, n_frames)).astype(np.float32)
        centers = rng.integers(0, n_frames, 5)
        labels = rng.integers(-1, 3, 5)
        stats.update(feats, centers, labels)
        all_feats.append(feats)
        all_centers.append(centers)
        all_labels.append(labels)
    # reference: each utterance separately (windows never cross utterances)
    want = sum(np.asarray(ref_windowed(f, c, l, 3, 6, "pad")[0]) for f, c, l in zip(all_feats, all_centers, all_labels))
    np.testing.assert_allclose(stats.sums, want, **CLOSE)
    save_npz(tmp_path / "w.npz", **stats.to_dict())
    back = WindowStats.from_dict(load_npz(tmp_path / "w.npz"))
    assert back.border == "pad" and back.window == 6
    np.testing.assert_array_equal(back.position_counts, stats.position_counts)
    np.testing.assert_allclose(back.sums, stats.sums)
    with pytest.raises(ValueError, match="settings differ"):
        stats.merge(WindowStats(3, 4, 6, border="skip"))
    with pytest.raises(ValueError, match=r"shape \(4, T\)"):
        stats.update(np.zeros((3, 10), np.float32), [1], [0])
    assert stats.all_reduce() is stats


def test_starting_numba_threads_leaves_torch_threads_alone():
    """NUMBA_NUM_THREADS=1 starts Numba's OpenMP layer with one thread; torch shares the OpenMP
    runtime and used to drop to one thread with it after the first aggregation call."""
    script = (
        "import numpy as np, torch\n"
        "torch.set_num_threads(2)\n"
        "from asr_introspect.aggregate import group_stats\n"
        "group_stats(np.ones((4, 3), np.float32), np.zeros(4, np.int64), 1)\n"
        "print(torch.get_num_threads())\n"
    )
    env = {**os.environ, "NUMBA_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["2"], out.stderr
