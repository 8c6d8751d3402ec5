"""Resource limits and flag validation of ``attribute`` and ``visualize`` (issue 18).

- One table of bad command lines: each exits with code 2 and prints exactly one line (at most 300
  characters) on stderr naming the flag and what is valid, and leaves an earlier run's output
  directory byte for byte as it was. The cases that used to crash or flood stderr (a 688 KB
  ``--frames`` line, a ``KeyError`` for ``grad-cam:conv99``, a traceback for ``--lr nan``) also
  run as real processes, where tracebacks and warnings would reach stderr.
- Long audio: ``--frames all`` on two minutes of noise completes with a peak memory growth under
  half the relevance it writes (the frames stream in blocks into ``relevance.npz``), and the
  streamed rows equal :func:`attribute`'s; with a small ``--max-output-gib`` the same command is
  refused before computing, with the estimate and a ``--frames`` range that fits.
- The block engine (:func:`iter_crops`) equals the whole-utterance attribution for every method.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from planted import planted_model

from asr_introspect.attribution import FEATURE_METHODS, attribute, conv_stack
from asr_introspect.attribution.frames import iter_crops, select_frames
from asr_introspect.cli import main
from asr_introspect.errors import InputError
from asr_introspect.models import build_model, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
MAX_LINE = 300
RATE = 16000
LAYERS = [f"conv{i}" for i in range(1, 12)]

A = ["attribute", "{audio}", "--model", "{ckpt}", "--out", "{attr_out}", "--quiet"]
V = ["visualize", "--model", "{ckpt}", "--out", "{vis_out}", "--quiet"]
# (id, argv, fragments the one stderr line must contain); the 2 s clip has 126 output frames (0..125)
CASES = [
    # -- attribute: the frame selection ------------------------------------------------------------------------
    ("frames-negative", [*A, "--frames", "-1"], ["--frames", "'-1'", "negative"]),
    ("frames-negative-range", [*A, "--frames", "3:-1"], ["--frames", "negative"]),
    ("frames-empty-item", [*A, "--frames", "1,,2"], ["--frames", "'1,,2'", "empty item"]),
    ("frames-trailing-comma", [*A, "--frames", "4,"], ["--frames", "empty item"]),
    ("frames-empty", [*A, "--frames", ""], ["--frames", "empty"]),
    ("frames-word", [*A, "--frames", "1,x"], ["--frames", "'x'", "A:B"]),
    ("frames-float", [*A, "--frames", "1.5"], ["--frames", "'1.5'"]),
    ("frames-empty-range", [*A, "--frames", "5:5"], ["--frames", "5:5", "empty"]),
    ("frames-reversed-range", [*A, "--frames", "9:3"], ["--frames", "9:3", "empty"]),
    ("frames-repeated", [*A, "--frames", "0:4,2"], ["--frames", "frame 2", "twice"]),
    ("frames-repeated-ranges", [*A, "--frames", ",".join(["0:120"] * 500)], ["--frames", "more than once"]),
    ("frames-beyond-audio", [*A, "--frames", "0:99999"], ["--frames", "'0:99999'", "126 output frames", "0..125"]),
    ("frames-one-beyond", [*A, "--frames", "126"], ["--frames", "126", "0..125"]),
    ("frames-huge-range", [*A, "--frames", "0:999999999999"], ["--frames", "0..125"]),
    ("frames-too-many-digits", [*A, "--frames", "9" * 40], ["--frames", "digits"]),
    # -- attribute: numbers (argparse) ----------------------------------------------------------------------------
    ("chunk-size-0", [*A, "--chunk-size", "0"], ["--chunk-size", "[1, 4096]", "got 0"]),
    ("chunk-size-negative", [*A, "--chunk-size", "-8"], ["--chunk-size", "[1, 4096]"]),
    ("chunk-size-huge", [*A, "--chunk-size", "100000"], ["--chunk-size", "[1, 4096]"]),
    ("chunk-size-word", [*A, "--chunk-size", "many"], ["--chunk-size", "'many'"]),
    ("figures-negative", [*A, "--figures", "-1"], ["--figures", "[0, 500]"]),
    ("figures-huge", [*A, "--figures", "100000"], ["--figures", "[0, 500]"]),
    ("max-output-nan", [*A, "--max-output-gib", "nan"], ["--max-output-gib", "'nan'", "finite"]),
    ("max-output-inf", [*A, "--max-output-gib", "inf"], ["--max-output-gib", "finite"]),
    ("max-output-0", [*A, "--max-output-gib", "0"], ["--max-output-gib", "> 0"]),
    # -- attribute: the output would exceed the limit ---------------------------------------------------------
    (
        "output-over-limit",
        [*A, "--max-output-gib", "0.001"],
        ["--frames 'all'", "126 output frames", "GiB", "--max-output-gib 0.001", "--frames 0:21"],
    ),
    ("output-over-limit-one-frame", [*A, "--max-output-gib", "1e-6"], ["--max-output-gib", "not one frame fits"]),
    # -- attribute: methods and layers ------------------------------------------------------------------------------
    ("method-unknown", [*A, "--method", "lrp-magic"], ["--method", "'lrp-magic'", "lrp-{epsilon", "grad-cam:LAYER"]),
    ("method-grad-cam-conv99", [*A, "--method", "grad-cam:conv99"], ["--method", "'conv99'", *LAYERS]),
    ("method-guided-grad-cam-conv99", [*A, "--method", "guided-grad-cam:conv99"], ["--method", "conv99", *LAYERS]),
    ("method-grad-cam-literal-layer", [*A, "--method", "grad-cam:LAYER"], ["--method", "'LAYER'", "conv11"]),
    ("compare-grad-cam-conv99", [*A, "--compare", "grad-cam:conv99"], ["--compare", "conv99", *LAYERS]),
    ("compare-unknown", [*A, "--compare", "gradients"], ["--compare", "'gradients'"]),
    ("target-forced-without-transcript", [*A, "--target", "forced"], ["--target forced", "--transcript"]),
    ("audio-missing", ["attribute", "{tmp}/missing.wav", *A[2:]], ["missing.wav"]),
    # -- visualize: numbers ---------------------------------------------------------------------------------------
    ("lr-nan", [*V, "--objective", "conv5:3", "--lr", "nan"], ["--lr", "'nan'", "finite"]),
    ("lr-inf", [*V, "--objective", "conv5:3", "--lr", "inf"], ["--lr", "finite"]),
    ("lr-0", [*V, "--objective", "conv5:3", "--lr", "0"], ["--lr", "> 0"]),
    ("lr-negative", [*V, "--objective", "conv5:3", "--lr", "-0.1"], ["--lr", "> 0"]),
    ("lr-diverges", [*V, "--objective", "conv5:3", "--lr", "1e30", "--steps", "5"], ["--lr", "diverged"]),
    ("steps-0", [*V, "--objective", "conv5:3", "--steps", "0"], ["--steps", "[1, 20000]"]),
    ("steps-huge", [*V, "--objective", "conv5:3", "--steps", "10000000"], ["--steps", "[1, 20000]"]),
    ("seed-negative", [*V, "--objective", "conv5:3", "--seed", "-1"], ["--seed", "[0, 4294967295]"]),
    ("seed-huge", [*V, "--objective", "conv5:3", "--seed", str(2**40)], ["--seed", "[0, 4294967295]"]),
    ("width-huge", [*V, "--objective", "conv5:3", "--width", "100000"], ["--width", "[1, 4096]"]),
    ("width-0", [*V, "--objective", "conv5:3", "--width", "0"], ["--width", "[1, 4096]"]),
    ("max-windows-1", [*V, "--objective", "conv5:3", "--max-windows", "1"], ["--max-windows", "[2, 20000]"]),
    # -- visualize: objectives and the window cap --------------------------------------------------------------
    ("objective-frame-beyond-cap", [*V, "--objective", "conv5:3@99999"], ["--objective", "99999", "4096", "0.."]),
    (
        "objective-letter-beyond-cap",
        [*V, "--objective", "conv11:letter=a@5000"],
        ["--objective", "frame 5000", "over the cap of 4096", "0..1998"],
    ),
    (
        "objective-frame-outside-width",
        [*V, "--objective", "conv5:3@40", "--width", "50"],
        ["--objective", "--width 50", "earlier frame"],
    ),
    ("objective-unknown-layer", [*V, "--objective", "conv99:1"], ["--objective", "'conv99'", "conv1", "conv11"]),
    ("objective-channel", [*V, "--objective", "conv5:99"], ["--objective", "16 channels", "0..15"]),
    ("objective-unparsable", [*V, "--objective", "conv5"], ["--objective", "valid forms", "conv5:17@40"]),
    ("objective-scale-inf", [*V, "--objective", "1e999*conv5:3"], ["--objective", "finite"]),
    ("objective-diversity", [*V, "--objective", "diversity:conv3"], ["--objective", "diversity", "batch"]),
    ("objective-missing", V, ["--objective", "--grid"]),
    (
        "prior-memory",
        [*V, "--objective", "conv5:3", "--regularization", "strong", "--max-windows", "20000", "--data", "{corpus}"],
        ["--max-windows 20000", "GiB", "or fewer"],
    ),
]
#: the cases that crashed or flooded stderr before: also run as real processes
IN_A_PROCESS = ("frames-beyond-audio", "method-grad-cam-conv99", "lr-nan", "objective-frame-beyond-cap", "lr-diverges")


def tree_digest(root: Path) -> dict[str, str]:
    """{relative path: sha256} of every file under ``root`` (names of folders included via their files)."""
    return {
        str(path.relative_to(root)): hashlib.sha256(path.read_bytes()).hexdigest()
        for path in sorted(root.rglob("*"))
        if path.is_file()
    }


def noise(path: Path, seconds: float, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    sf.write(path, (0.1 * rng.standard_normal(int(seconds * RATE))).astype(np.float32), RATE)
    return path


@pytest.fixture(scope="module")
def places(tmp_path_factory, tiny_corpus):
    """A tiny checkpoint, a 2 s clip, and an earlier successful run of each command to be left alone."""
    root = tmp_path_factory.mktemp("limits")
    torch.manual_seed(0)
    ckpt = save_checkpoint(root / "tiny.safetensors", build_model("tiny").eval())
    audio = noise(root / "clip.wav", 2.0)
    attr_out, vis_out = root / "attr_run", root / "vis_run"
    common = ["--model", str(ckpt), "--quiet"]
    assert main(["attribute", str(audio), "--out", str(attr_out), "--frames", "0,3", "--figures", "1", *common]) == 0
    assert main(["visualize", "--objective", "conv5:3", "--steps", "2", "--out", str(vis_out), *common]) == 0
    return {
        "ckpt": ckpt,
        "audio": audio,
        "attr_out": attr_out,
        "vis_out": vis_out,
        "corpus": tiny_corpus.root,
        "tmp": root,
    }


def _argv(argv: list[str], places: dict) -> list[str]:
    return [a.format(**places) for a in argv]


def _check_line(stderr: str, fragments: list[str]) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1, stderr[-3000:]
    line = lines[0]
    assert len(line) <= MAX_LINE, line
    assert "Traceback" not in line and "internal error" not in line, line
    for fragment in fragments:
        assert fragment in line, (fragment, line)
    return line


@pytest.mark.parametrize("case_id, argv, fragments", CASES, ids=[c[0] for c in CASES])
def test_bad_input_exits_2_with_one_line_and_leaves_out_unchanged(case_id, argv, fragments, places, one_thread, capsys):
    argv = _argv(argv, places)
    out = places["vis_out"] if argv[0] == "visualize" else places["attr_out"]
    before = tree_digest(out)
    assert before  # an earlier run's files are there
    capsys.readouterr()
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse rejected a flag (one line, exit 2)
        code = exc.code
    assert code == 2
    _check_line(capsys.readouterr().err, fragments)
    assert tree_digest(out) == before


@pytest.mark.parametrize("case_id", IN_A_PROCESS)
def test_bad_input_in_a_real_process(case_id, places, tmp_path):
    """No traceback, warning or progress bar reaches stderr: exactly the one line."""
    _, argv, fragments = next(c for c in CASES if c[0] == case_id)
    argv = _argv(argv, places)
    out = places["vis_out"] if argv[0] == "visualize" else places["attr_out"]
    before = tree_digest(out)
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "asr_introspect.cli", *argv], capture_output=True, text=True, cwd=REPO, env=env
    )
    assert proc.returncode == 2, proc.stderr[-3000:]
    _check_line(proc.stderr, fragments)
    assert tree_digest(out) == before


def test_cli_limits_equal_the_workflow_limits():
    """The CLI keeps copies of limits that live in torch-importing modules (for --help); they must not drift."""
    from asr_introspect.attribution.crops import MAX_CHUNK_SIZE
    from asr_introspect.cli import attribute as cli_attribute
    from asr_introspect.cli import visualize as cli_visualize
    from asr_introspect.workflows import attribute as wf_attribute
    from asr_introspect.workflows import visualize as wf_visualize

    assert cli_attribute.DEFAULT_MAX_OUTPUT_GIB == wf_attribute.DEFAULT_MAX_OUTPUT_GIB
    assert cli_attribute.MAX_FIGURES == wf_attribute.MAX_FIGURES
    assert cli_attribute.MAX_CHUNK_SIZE == MAX_CHUNK_SIZE
    assert cli_visualize.MAX_WIDTH == wf_visualize.MAX_WIDTH
    assert cli_visualize.MAX_STEPS == wf_visualize.MAX_STEPS
    assert cli_visualize.MAX_WINDOWS == wf_visualize.MAX_WINDOWS


def test_help_states_defaults_and_limits():
    code = textwrap.dedent("""
        import contextlib, io, sys
        from asr_introspect.cli import build_parser
        parser = build_parser()
        for name in ("attribute", "visualize"):
            with contextlib.redirect_stdout(io.StringIO()) as out:
                try:
                    parser.parse_args([name, "--help"])
                except SystemExit:
                    pass
            print(" ".join(out.getvalue().split()))
        assert "torch" not in sys.modules
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert proc.returncode == 0, proc.stderr[-2000:]
    attribute_help, visualize_help = proc.stdout.splitlines()
    for fragment in ("(default: lrp-epsilon-plus)", "(default: all)", "(default: 2.0)", "1..4096", "(default: 12)"):
        assert fragment in attribute_help, fragment
    for fragment in ("(default: 256)", "(default: 0.05)", "(default: fourier)", "4096", "(default: 1000)"):
        assert fragment in visualize_help, fragment


# ---------------------------------------------------------------------------------------------------------------
# long audio

_RSS_SCRIPT = textwrap.dedent("""
    import json, resource, sys
    from asr_introspect.cli import main

    ckpt, short, long_audio, out = sys.argv[1:5]
    flags = ["--model", ckpt, "--quiet", "--figures", "1", "--compare", "none", "--chunk-size", "64", "--json"]

    def peak():
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024

    # warm up: imports, the model, matplotlib and the block buffers reach their peak on a short clip
    assert main(["attribute", short, "--out", out + "_warm", *flags]) == 0
    before = peak()
    code = main(["attribute", long_audio, "--out", out, *flags])
    print(json.dumps({"code": code, "growth": peak() - before}))
""")


def _relevance_rows(npz: Path, rows: list[int]) -> tuple[tuple, np.ndarray]:
    """(shape, the given rows) of the ``relevance`` member, read sequentially (never the whole array)."""
    with zipfile.ZipFile(npz) as archive, archive.open("relevance.npy") as member:
        assert np.lib.format.read_magic(member) == (1, 0)
        shape, fortran, dtype = np.lib.format.read_array_header_1_0(member)
        assert not fortran
        per_row = int(np.prod(shape[1:])) * dtype.itemsize
        out, position = [], 0
        for row in sorted(rows):
            for _ in range(row - position):  # skip, a row at a time
                member.read(per_row)
            out.append(np.frombuffer(member.read(per_row), dtype=dtype).reshape(shape[1:]))
            position = row + 1
    return shape, np.stack(out)


def test_frames_all_on_long_audio_streams_in_bounded_memory(places, tmp_path):
    """Two minutes of noise, every output frame: the run completes, its peak memory grows by less than
    half of the relevance it writes (the old code held all of it, then a dense copy of 29 GB for the
    overview), and the streamed rows are the attribution of those frames."""
    audio = noise(tmp_path / "long.wav", 120.0, seed=1)
    out = tmp_path / "long_run"
    # single-threaded, and large allocations returned to the system when freed: the peak then measures
    # what the program holds, not what the allocator keeps in reserve
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MALLOC_MMAP_THRESHOLD_": str(1 << 20)}
    script = [sys.executable, "-c", _RSS_SCRIPT, str(places["ckpt"]), str(places["audio"]), str(audio), str(out)]
    proc = subprocess.run(script, capture_output=True, text=True, cwd=REPO, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.strip().splitlines()
    measured = json.loads(lines[-1])
    summary = json.loads(lines[-2])
    assert measured["code"] == 0
    n_frames = summary["n_output_frames"]
    assert summary["frames"] == n_frames == 7501
    relevance_bytes = n_frames * 64 * 194 * 4
    assert summary["relevance_bytes"] == relevance_bytes and summary["blocks"] > 1
    assert measured["growth"] < relevance_bytes / 2, (measured["growth"] / 2**20, relevance_bytes / 2**20)

    npz = out / "relevance.npz"
    with np.load(npz) as arrays:  # a normal npz: small members load without the relevance
        assert arrays["frames"].tolist() == list(range(n_frames))
        targets, features = arrays["targets"], torch.as_tensor(arrays["features"])
    rows = [0, 1, 2, 1800, 1801, n_frames - 2, n_frames - 1]
    shape, relevance = _relevance_rows(npz, rows)
    assert shape == (n_frames, 64, 194)
    from asr_introspect.loading import load_model

    model, _ = load_model(places["ckpt"])
    expected = attribute(model, features, "lrp-epsilon-plus", frames=rows, target=targets[rows], crop=True)
    np.testing.assert_allclose(relevance, expected.relevance, rtol=1e-4, atol=1e-5 * np.abs(expected.relevance).max())
    assert (out / "overview.png").is_file() and summary["overview_frames"] == 400


def test_frames_all_over_the_output_limit_is_refused_before_computing(places, tmp_path, capsys, one_thread):
    audio = noise(tmp_path / "long.wav", 120.0, seed=1)
    out = places["attr_out"]
    before = tree_digest(out)
    argv = ["attribute", str(audio), "--model", str(places["ckpt"]), "--out", str(out), "--quiet"]
    assert main([*argv, "--max-output-gib", "0.05"]) == 2
    line = _check_line(capsys.readouterr().err, ["--frames 'all'", "7501 output frames", "0.35 GiB", "--frames 0:"])
    fits = int(line.split("--frames 0:")[1].split(")")[0])
    assert fits == int(0.05 * 2**30 // (64 * 194 * 4))
    assert tree_digest(out) == before


# ---------------------------------------------------------------------------------------------------------------
# the block engine


@pytest.mark.parametrize("method", [m for m in FEATURE_METHODS if ":" not in m] + ["grad-cam:conv7", "guided-grad-cam"])
def test_blocks_equal_the_whole_utterance(method, one_thread):
    """Frames in any order, split into blocks that each run on their own input span (borders included),
    give the whole utterance's maps; SmoothGrad draws the same noise, gamma-box takes the same bounds."""
    model = planted_model(0, bn_bias_std=0.3, conv_bias_std=0.2, dtype=torch.float64)
    x = torch.randn(64, 600, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    options = {"smoothgrad": {"n_samples": 2}, "integrated-gradients": {"steps": 3}}.get(method, {})
    whole = attribute(model, x, method, crop=True, **options)
    n = len(whole.frames)
    order = np.r_[np.arange(n - 1, n - 31, -1), np.arange(100, 180), np.arange(0, 20), [7, n - 3, 150, 2]]
    target_of = dict(zip(whole.frames.tolist(), whole.targets.tolist()))
    targets = np.array([target_of[int(f)] for f in order])
    pieces = list(iter_crops(conv_stack(model), x, order, targets, method, block_frames=13, **options))
    assert len(pieces) > 5 and pieces[0][0] == 0 and pieces[-1][1] == len(order)
    assert all(a[1] == b[0] for a, b in zip(pieces, pieces[1:]))
    streamed = np.concatenate([crops for _, _, crops in pieces])
    scale = np.abs(whole.relevance).max()
    np.testing.assert_allclose(streamed, whole.relevance[order], rtol=1e-9, atol=1e-12 * scale)


def test_library_rejects_bad_chunk_size_and_layer_in_one_line():
    model = planted_model(0)
    x = torch.randn(64, 120, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    with pytest.raises(InputError, match=r"chunk_size must be in 1\.\.4096"):
        attribute(model, x, "sensitivity", frames=[0], chunk_size=0)
    with pytest.raises(InputError) as info:
        attribute(model, x, "grad-cam:conv99", frames=[0])
    assert "conv99" in str(info.value) and all(layer in str(info.value) for layer in LAYERS)
    with pytest.raises(InputError) as info:
        select_frames(np.arange(10**6), 10)
    message = str(info.value)
    assert len(message) < 200 and "999999" in message and "0..9" in message
