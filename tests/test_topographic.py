"""Topographic maps: layouts put identical neurons together, keep planted families apart and are
deterministic; images against a slow reference; figures; ``naps --align saliency-peak --topographic``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from asr_introspect.errors import InputError
from asr_introspect.io import load_npz
from asr_introspect.naps import NAPs, available_layouts, topographic_images, topographic_layout
from asr_introspect.plotting.topographic import topographic_maps

METHODS = ["pca", "mds"]


def _families(n_groups=10, per_family=12, n_families=3, noise=0.05, seed=0):
    """(G, N) profiles: each neuron's column is its family's random pattern (scaled, shifted) plus noise."""
    rng = np.random.default_rng(seed)
    patterns = rng.standard_normal((n_families, n_groups))
    family = np.repeat(np.arange(n_families), per_family)
    scale = rng.uniform(0.5, 3.0, len(family))
    shift = rng.normal(0.0, 2.0, len(family))
    columns = patterns[family] * scale[:, None] + shift[:, None]
    columns += noise * rng.standard_normal(columns.shape) * scale[:, None]
    return columns.T, family


@pytest.mark.parametrize("method", METHODS)
def test_identical_profiles_share_a_place_and_the_layout_is_deterministic(method):
    profiles, _ = _families()
    profiles = np.concatenate([profiles, profiles[:, [3, 3, 17]], 5.0 * profiles[:, [20]] - 1.0], axis=1)
    layout = topographic_layout(profiles, method, seed=0)
    n = profiles.shape[1]
    assert layout.shape == (n, 2) and np.isfinite(layout).all()
    assert layout.min() >= 0.0 and layout.max() <= 1.0
    np.testing.assert_array_equal(layout[n - 4], layout[3])
    np.testing.assert_array_equal(layout[n - 3], layout[3])
    np.testing.assert_array_equal(layout[n - 2], layout[17])
    np.testing.assert_allclose(layout[n - 1], layout[20], atol=1e-9)  # a scaled, shifted copy: same pattern
    np.testing.assert_array_equal(topographic_layout(profiles, method, seed=0), layout)
    # the layout does not depend on the order of the neurons
    perm = np.random.default_rng(1).permutation(n)
    np.testing.assert_allclose(topographic_layout(profiles[:, perm], method, seed=0), layout[perm], atol=1e-9)


@pytest.mark.parametrize("method", METHODS)
def test_planted_families_are_kept_apart(method):
    profiles, family = _families()
    layout = topographic_layout(profiles, method)
    d = np.linalg.norm(layout[:, None] - layout[None], axis=-1)
    same = family[:, None] == family[None]
    np.fill_diagonal(same, False)
    different = family[:, None] != family[None]
    assert d[same].max() < d[different].min()


def test_degenerate_profiles():
    one_group = np.arange(5.0)[None]  # every column constant over the groups: one place
    np.testing.assert_array_equal(topographic_layout(one_group), np.full((5, 2), 0.5))
    two = np.array([[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]])  # two distinct patterns
    layout = topographic_layout(two, "mds")
    np.testing.assert_array_equal(layout[0], layout[2])
    assert np.linalg.norm(layout[0] - layout[1]) == pytest.approx(1.0)


def test_images_equal_a_slow_reference_and_constant_values_stay_constant():
    rng = np.random.default_rng(0)
    layout = rng.uniform(0.2, 0.8, (15, 2))
    values = rng.standard_normal((3, 15))
    h, R = 0.07, 12
    images = topographic_images(layout, values, resolution=R, bandwidth=h)
    assert images.shape == (3, R, R)
    for i in range(R):
        for j in range(R):
            p = np.array([(j + 0.5) / R, (i + 0.5) / R])
            d2 = ((layout - p) ** 2).sum(1)
            if d2.min() > (3 * h) ** 2:
                assert np.isnan(images[:, i, j]).all()
                continue
            w = np.exp(-d2 / (2 * h * h))
            np.testing.assert_allclose(images[:, i, j], values @ w / w.sum(), rtol=1e-9, atol=1e-12)
    assert np.isnan(images).any() and np.isfinite(images).any()
    flat = topographic_images(layout, np.full((2, 15), 1.25), resolution=R)
    np.testing.assert_allclose(flat[np.isfinite(flat)], 1.25)


def test_bad_input():
    with pytest.raises(InputError, match="NaN"):
        topographic_layout(np.array([[1.0, np.nan]]))
    with pytest.raises(InputError, match="layout method"):
        topographic_layout(np.ones((2, 3)), "tsne")
    if "umap" not in available_layouts():
        with pytest.raises(InputError, match="umap-learn"):
            topographic_layout(np.ones((2, 3)), "umap")
    with pytest.raises(InputError, match="values"):
        topographic_images(np.zeros((4, 2)), np.zeros((2, 5)))


@pytest.mark.parametrize("style", ["image", "scatter"])
def test_figure_has_one_titled_map_per_group(style):
    profiles, _ = _families(n_groups=7)
    layout = topographic_layout(profiles)
    groups = [f"g{i}" for i in range(7)]
    fig = topographic_maps(layout, profiles, groups, title="L", style=style)
    titled = [ax.get_title() for ax in fig.axes if ax.get_title()]
    assert titled == groups
    with pytest.raises(ValueError, match="group names"):
        topographic_maps(layout, profiles, groups[:3])


# ---------------------------------------------------------------------------
# command line


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, one_thread):
    from asr_introspect.models import build_model, save_checkpoint

    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("tiny") / "tiny.safetensors", build_model("tiny").eval())


def _main(args) -> int:
    from asr_introspect.cli import main

    try:
        return main(args)
    except SystemExit as exc:  # argparse rejects a flag
        return int(exc.code)


def test_cli_saliency_peak_and_topographic_maps(checkpoint, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "out"
    base = ["naps", "--model", str(checkpoint), "--data", str(tiny_corpus.root), "--layers", "conv3,conv11"]
    snap_run = ["--by", "both", "--align", "saliency-peak", "--topographic", "mds", "--no-figures"]
    assert _main([*base, *snap_run, "--out", str(out), "--json", "--quiet"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["align"] == "saliency-peak"
    assert set(summary["peak_offset"]) == {"letter", "phoneme"}
    assert summary["topographic"]["letter"]["method"] == "mds"
    assert set(summary["topographic"]["phoneme"]["layers"]) == {"conv3", "conv11"}
    assert all(Path(p).is_file() for p in summary["files"])
    names = {Path(p).name for p in summary["files"]}
    assert {"topographic_letter.npz", "topographic_phoneme.npz"} <= names
    snaps = NAPs.load(out / "naps_letter.npz")
    assert snaps.settings["align"] == "saliency-peak" and snaps.settings["occurrences"] > 0
    maps = load_npz(out / "topographic_letter.npz")
    profiles, groups = snaps.profiles("conv3")
    np.testing.assert_allclose(maps["profiles@conv3"], profiles)
    assert list(maps["groups@conv3"]) == groups
    np.testing.assert_allclose(maps["layout@conv3"], topographic_layout(profiles, "mds"))
    assert maps["images@conv3"].shape[0] == len(groups)

    # the default layout is pca, with one figure per layer; label alignment writes no peak offsets
    pca = ["--by", "phoneme", "--topographic", "--out", str(tmp_path / "pca"), "--json", "--quiet"]
    assert _main([*base, *pca]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["align"] == "label" and "peak_offset" not in summary
    assert summary["topographic"]["phoneme"]["method"] == "pca"
    names = {Path(p).name for p in summary["files"]}
    assert {"conv3_topographic.png", "conv11_topographic.png"} <= names

    for bad in (["--align", "peak"], ["--topographic", "tsne"]):
        assert _main([*base, *bad, "--out", str(tmp_path / "bad"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert bad[0] in err and len(err.strip().splitlines()) == 1
