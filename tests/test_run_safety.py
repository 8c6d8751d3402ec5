"""Never lose a finished result: all-or-nothing run directories, their manifest, and train's run-directory safety.

Every failure case asserts what a user can check: the exit code, one error line
(at most ~300 characters) naming the file or flag, and the output directory
byte-identical (sha256 of every file) to what it was before the failed,
interrupted or killed run. SIGINT and SIGKILL are sent to real subprocesses
paused at a known point (inside an atomic write of a result file), so the
signal always lands mid-run.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

import asr_introspect.io as aio
from asr_introspect.cli import build_parser, main
from asr_introspect.errors import InputError
from asr_introspect.io import MANIFEST_NAME, RunDirectory, check_out_dir, check_out_file, file_sha256
from asr_introspect.models import build_model, load_checkpoint, save_checkpoint

REPO = Path(__file__).resolve().parents[1]
MAX_LINE = 300


# ---------------------------------------------------------------------------
# helpers


def snapshot(root: Path, skip_staging: bool = False) -> dict[str, str]:
    """relative path -> sha256 of every file below ``root`` (hidden ones too)."""
    if not root.exists():
        return {}
    files = {}
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if skip_staging and rel.parts[0].startswith(".staging-"):
            continue
        if path.is_file():
            files[rel.as_posix()] = file_sha256(path)
    return files


def staging_dirs(root: Path) -> list[Path]:
    return sorted(root.glob(".staging-*"))


def tmp_files(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*.tmp") if not p.relative_to(root).parts[0].startswith(".staging-"))


def one_line(err: str) -> str:
    """The single non-empty stderr line (asserted), at most MAX_LINE characters."""
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err[-3000:]
    assert len(lines[0]) <= MAX_LINE, len(lines[0])
    assert "Traceback" not in err
    return lines[0]


def manifest_files(out: Path) -> dict[str, dict]:
    return json.loads((out / MANIFEST_NAME).read_text())["files"]


def assert_manifest_matches(out: Path, ignore: tuple[str, ...] = ()) -> dict:
    """run.json is complete and lists exactly the files present (with their sizes and hashes)."""
    manifest = json.loads((out / MANIFEST_NAME).read_text())
    assert manifest["status"] == "complete"
    present = {rel: sha for rel, sha in snapshot(out).items() if rel != MANIFEST_NAME and rel not in ignore}
    assert set(manifest["files"]) == set(present)
    for rel, entry in manifest["files"].items():
        assert entry["sha256"] == present[rel], rel
        assert entry["bytes"] == (out / rel).stat().st_size, rel
    return manifest


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    return save_checkpoint(tmp_path_factory.mktemp("ckpt") / "tiny.safetensors", build_model("tiny").eval())


def command_argv(name: str, ckpt: Path, corpus: Path, out: Path) -> list[str]:
    """A quick, successful invocation of subcommand ``name`` on the tiny model and corpus."""
    audio = str(sorted(corpus.rglob("*.flac"))[0])
    common = ["--model", str(ckpt), "--out", str(out), "--quiet", "--json"]
    return {
        "align": ["align", "--data", str(corpus), *common],
        "patterns": ["patterns", "--data", str(corpus), "--by", "letter", "--no-audio", "--limit", "3", *common],
        "naps": ["naps", "--data", str(corpus), "--layers", "conv9,conv11", "--no-figures", *common],
        "attribute": ["attribute", audio, "--frames", "0,3", "--figures", "1", "--compare", "none", *common],
        "visualize": ["visualize", "--objective", "conv5:3", "--steps", "2", *common],
    }[name]


@pytest.fixture(scope="module")
def finished_runs(tmp_path_factory, ckpt, tiny_corpus) -> dict[str, Path]:
    """One successful run of each staged subcommand (tests copy them before changing anything)."""
    root = tmp_path_factory.mktemp("finished")
    runs = {}
    for name in ("align", "patterns", "naps", "attribute", "visualize"):
        out = root / name
        assert main(command_argv(name, ckpt, tiny_corpus.root, out)) == 0, name
        runs[name] = out
    return runs


# ---------------------------------------------------------------------------
# RunDirectory, the mechanism


def test_commit_moves_files_writes_the_manifest_last_and_keeps_user_files(tmp_path):
    out = tmp_path / "out"
    with RunDirectory(out, "demo", {"seed": 1, "path": Path("x")}, argv=["demo", "--seed", "1"]) as run:
        assert run.path.parent == out and run.path.name.startswith(".staging-")
        (run.path / "sub").mkdir()
        (run.path / "sub" / "a.npz").write_bytes(b"a" * 10)
        (run.path / "b.json").write_text(json.dumps({"file": str(run.path / "sub" / "a.npz")}))
        run.summary = run.final({"files": [str(run.path / "b.json")], "n": 3})
        assert not (out / "b.json").exists()  # nothing in place before the commit
    assert run.summary == {"files": [str(out / "b.json")], "n": 3}
    assert json.loads((out / "b.json").read_text()) == {"file": str(out / "sub" / "a.npz")}  # paths made final
    manifest = assert_manifest_matches(out)
    assert manifest["command"] == "demo" and manifest["argv"] == ["demo", "--seed", "1"]
    assert manifest["settings"] == {"seed": 1, "path": "x"}
    assert manifest["version"] and manifest["started"] <= manifest["finished"]
    assert set(manifest["files"]) == {"sub/a.npz", "b.json"} and manifest["files"]["sub/a.npz"]["bytes"] == 10
    assert staging_dirs(out) == []

    (out / "notes.txt").write_text("mine")
    with RunDirectory(out, "demo", {"seed": 2}) as run:
        (run.path / "c.png").write_bytes(b"c")
    assert sorted(snapshot(out)) == ["c.png", "notes.txt", MANIFEST_NAME]  # a.npz, b.json gone; the user's file kept
    assert not (out / "sub").exists()  # emptied by the removal: pruned
    assert_manifest_matches(out, ignore=("notes.txt",))


@pytest.mark.parametrize("exc", [RuntimeError("boom"), InputError("late bad input"), KeyboardInterrupt()])
def test_a_failing_body_leaves_out_as_it_was(tmp_path, exc):
    out = tmp_path / "out"
    with RunDirectory(out, "naps") as run:
        (run.path / "a.npz").write_bytes(b"old")
    (out / "notes.txt").write_text("mine")
    before = snapshot(out)
    with pytest.raises(type(exc)), RunDirectory(out, "naps") as run:
        (run.path / "a.npz").write_bytes(b"new")
        (run.path / "b.json").write_text("{}")
        raise exc
    assert snapshot(out) == before and staging_dirs(out) == []


def test_a_failed_run_into_a_new_directory_leaves_no_directory(tmp_path):
    out = tmp_path / "new" / "deeper"
    with pytest.raises(RuntimeError), RunDirectory(out, "naps") as run:
        (run.path / "a.npz").write_bytes(b"x")
        raise RuntimeError
    assert not (tmp_path / "new").exists()


def test_modes_in_place_and_discard(tmp_path):
    corpus = tmp_path / "corpus"
    with RunDirectory(corpus, "synth", mode="in-place") as run:
        assert run.path == corpus
        (corpus / "spk" / "0").mkdir(parents=True)
        (corpus / "spk" / "0" / "u.flac").write_bytes(b"f")
    assert set(assert_manifest_matches(corpus)["files"]) == {"spk/0/u.flac"}

    ranks = tmp_path / "ranks"
    with RunDirectory(ranks, "naps", mode="discard") as run:
        (run.path / "a.npz").write_bytes(b"x")
    assert snapshot(ranks) == {}  # a torchrun rank > 0: nothing lands


def test_another_commands_directory_is_refused(tmp_path):
    corpus = tmp_path / "corpus"
    with RunDirectory(corpus, "synth", mode="in-place"):
        (corpus / "u.flac").write_bytes(b"f")
    before = snapshot(corpus)
    with pytest.raises(InputError, match=r"holds the results of `synth`.*give `naps` its own --out"):
        RunDirectory(corpus, "naps")
    assert snapshot(corpus) == before


def test_an_interrupted_commit_is_finished_by_the_next_run_and_manifest_paths_stay_inside(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "outside.txt").write_text("not yours")
    for name in ("old.npz", "new.npz"):
        (out / name).write_bytes(name.encode())
    killed_commit = {
        "format": aio.MANIFEST_FORMAT,
        "status": "committing",
        "command": "naps",
        "files": {
            "old.npz": {},
            "new.npz": {},
            "../outside.txt": {},
            str(tmp_path / "outside.txt"): {},
            MANIFEST_NAME: {},
        },
    }
    (out / MANIFEST_NAME).write_text(json.dumps(killed_commit))
    with RunDirectory(out, "naps") as run:
        (run.path / "new.npz").write_bytes(b"newer")
    assert sorted(snapshot(out)) == ["new.npz", MANIFEST_NAME]
    assert (tmp_path / "outside.txt").read_text() == "not yours"


def test_a_user_file_where_a_folder_is_needed_is_refused_and_nothing_moves(tmp_path):
    out = tmp_path / "out"
    with RunDirectory(out, "demo") as run:
        (run.path / "a.json").write_text("1")
    (out / "figures").write_text("a user's file named like the results' folder")
    before = snapshot(out)
    with pytest.raises(InputError, match=r"figures is a file where the results need a folder"):
        with RunDirectory(out, "demo") as run:
            (run.path / "figures").mkdir()
            (run.path / "figures" / "f.png").write_bytes(b"p")
    assert snapshot(out) == before and staging_dirs(out) == []


def test_check_out_messages(tmp_path, monkeypatch):
    a_file = tmp_path / "f.txt"
    a_file.write_text("x")
    with pytest.raises(InputError, match=rf"--out {a_file} is a file"):
        check_out_dir(a_file)
    with pytest.raises(InputError, match=rf"{a_file} is a file, so the directory cannot be created"):
        check_out_dir(a_file / "sub")
    with pytest.raises(InputError, match=rf"--out {tmp_path} is a directory"):
        check_out_file(tmp_path)
    assert check_out_dir(tmp_path / "new" / "dir") == tmp_path / "new" / "dir"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    # an unwritable directory (simulated: root, who runs these tests here, ignores permissions)
    locked = tmp_path / "locked"
    locked.mkdir()
    monkeypatch.setattr(aio.os, "access", lambda path, mode: Path(path) != locked)
    with pytest.raises(InputError, match=rf"--out {locked}/out: the parent directory {locked} is not writable"):
        check_out_dir(locked / "out")
    with pytest.raises(InputError, match=rf"--out {locked}: the directory {locked} is not writable"):
        check_out_dir(locked)
    with pytest.raises(InputError, match=rf"--out {locked}/r.json: the directory {locked} is not writable"):
        check_out_file(locked / "r.json")


# ---------------------------------------------------------------------------
# The command line: --out checked first, all or nothing, manifest


def test_second_run_with_other_settings_leaves_no_file_of_the_first(ckpt, tiny_corpus, tmp_path):
    out = tmp_path / "out"
    first = ["naps", "--model", str(ckpt), "--data", str(tiny_corpus.root), "--out", str(out), "--quiet"]
    assert main([*first, "--by", "letter", "--layers", "conv9,conv11"]) == 0
    old = assert_manifest_matches(out)
    assert any(rel.startswith("figures/") for rel in old["files"]) and "naps_letter.npz" in old["files"]
    (out / "notes.md").write_text("my notes")
    assert main([*first, "--by", "phoneme", "--layers", "conv9", "--no-figures"]) == 0
    new = assert_manifest_matches(out, ignore=("notes.md",))
    assert set(new["files"]) == {"naps_phoneme.npz", "naps_phoneme.json"}
    assert not any((out / rel).exists() for rel in set(old["files"]) - set(new["files"]))
    assert not (out / "figures").exists() and (out / "notes.md").read_text() == "my notes"
    assert new["settings"]["by"] == "phoneme" and new["settings"]["no_figures"] is True


def _fail_after_first_staged_write(monkeypatch, exc: BaseException) -> None:
    """Make the first completed atomic write into a staging folder raise ``exc`` (a late failure)."""
    original = aio.atomic_path

    from contextlib import contextmanager

    @contextmanager
    def failing(path):
        with original(path) as tmp:
            yield tmp
        if any(part.startswith(".staging-") for part in Path(path).parts):
            raise exc

    monkeypatch.setattr(aio, "atomic_path", failing)


@pytest.mark.parametrize("command", ["align", "patterns", "naps", "attribute", "visualize"])
def test_a_run_failing_late_leaves_the_previous_result_byte_identical(
    command, finished_runs, ckpt, tiny_corpus, tmp_path, monkeypatch, capsys
):
    out = tmp_path / command
    shutil.copytree(finished_runs[command], out)
    before = snapshot(out)
    _fail_after_first_staged_write(monkeypatch, RuntimeError("disk on fire"))
    capsys.readouterr()
    assert main(command_argv(command, ckpt, tiny_corpus.root, out)) == 1
    line = one_line(capsys.readouterr().err)
    assert line == (
        f"asr-introspect {command}: internal error: RuntimeError: disk on fire (run with --debug for the traceback)"
    )
    assert snapshot(out) == before and staging_dirs(out) == []


@pytest.mark.parametrize(
    "exc, code, fragment",
    [
        (InputError("utt 19-198-0000: found late"), 2, "asr-introspect naps: error: utt 19-198-0000: found late"),
        (KeyboardInterrupt(), 130, "asr-introspect naps: interrupted"),
        (MemoryError(), 1, "internal error: MemoryError"),
    ],
)
def test_naps_failing_late_in_other_ways_leaves_the_previous_result(
    exc, code, fragment, finished_runs, ckpt, tiny_corpus, tmp_path, monkeypatch, capsys
):
    out = tmp_path / "naps"
    shutil.copytree(finished_runs["naps"], out)
    before = snapshot(out)
    _fail_after_first_staged_write(monkeypatch, exc)
    capsys.readouterr()
    assert main(command_argv("naps", ckpt, tiny_corpus.root, out)) == code
    assert fragment in one_line(capsys.readouterr().err)
    assert snapshot(out) == before and staging_dirs(out) == []


def test_a_bad_flag_found_after_loading_leaves_the_previous_result(finished_runs, ckpt, tiny_corpus, tmp_path, capsys):
    out = tmp_path / "naps"
    shutil.copytree(finished_runs["naps"], out)
    before = snapshot(out)
    argv = command_argv("naps", ckpt, tiny_corpus.root, out)
    argv[argv.index("conv9,conv11")] = "conv9,conv99"
    capsys.readouterr()
    assert main(argv) == 2
    assert "conv99" in one_line(capsys.readouterr().err)
    assert snapshot(out) == before and staging_dirs(out) == []


def test_every_summary_path_is_final_and_the_manifest_lists_exactly_the_files(finished_runs):
    for command, out in finished_runs.items():
        manifest = assert_manifest_matches(out)
        assert manifest["command"] == command and manifest["status"] == "complete"
        assert ".staging-" not in json.dumps(manifest["summary"]), command
        for rel in manifest["files"]:
            if rel.endswith((".json", ".html")):
                assert ".staging-" not in (out / rel).read_text(), rel


def test_leftovers_of_killed_runs_are_cleaned_by_the_next_run(finished_runs, ckpt, tiny_corpus, tmp_path):
    out = tmp_path / "align"
    shutil.copytree(finished_runs["align"], out)
    dead = out / f".staging-{dead_pid()}-0badc0de"
    (dead / "sub").mkdir(parents=True)
    (dead / "sub" / "labels.npz").write_bytes(b"half")
    alive = out / f".staging-{os.getppid()}-00c0ffee"  # a live process's folder: maybe running right now
    alive.mkdir()
    (out / ".labels.npz.k2j3h4.tmp").write_bytes(b"half")
    (out / "deep").mkdir()
    (out / "deep" / ".x.png.abc.tmp").write_bytes(b"half")
    (out / "notes.tmp").write_text("a user's file, not an atomic-write temporary")
    assert main(command_argv("align", ckpt, tiny_corpus.root, out)) == 0
    assert not dead.exists() and alive.is_dir()
    assert tmp_files(out) == [out / "notes.tmp"]
    assert_manifest_matches(out, ignore=("notes.tmp",))


def test_leftover_cleaning_spares_live_staging_nested_runs_and_user_files(tmp_path):
    out = tmp_path / "out"
    dead, alive = out / f".staging-{dead_pid()}-0abc", out / f".staging-{os.getpid()}-0def"
    nested = out / "train_run"  # a training run inside --out, maybe writing a checkpoint right now
    for folder in (dead, alive, nested, out / "figs"):
        folder.mkdir(parents=True)
    for path in (dead / ".a.npz.x1.tmp", alive / ".b.npz.x2.tmp", nested / ".state.pt.x3.tmp"):
        path.write_bytes(b"half")
    (nested / "run.json").write_text("{}")
    (out / "figs" / ".f.png.x4.tmp").write_bytes(b"half")
    (out / "keep.tmp").write_text("user")
    removed = aio.clean_leftovers(out)
    assert sorted(removed) == sorted([dead, out / "figs" / ".f.png.x4.tmp"])
    assert (alive / ".b.npz.x2.tmp").exists() and (nested / ".state.pt.x3.tmp").exists()
    assert (out / "keep.tmp").read_text() == "user"


def test_eval_out_file_leftover_temporaries_are_cleaned(ckpt, tiny_corpus, tmp_path):
    out = tmp_path / "eval.json"
    (tmp_path / ".eval.json.abc123.tmp").write_text("half")
    (tmp_path / ".other.json.abc123.tmp").write_text("someone else's")
    assert main(["eval", "--model", str(ckpt), "--data", str(tiny_corpus.root), "--out", str(out), "--quiet"]) == 0
    assert json.loads(out.read_text())["utterances"] == len(tiny_corpus.expected)
    assert sorted(p.name for p in tmp_path.glob("*.tmp")) == [".other.json.abc123.tmp"]


def test_demo_lands_with_relative_links_and_a_manifest(ckpt, tiny_corpus, tmp_path):
    import re

    out = tmp_path / "demo"
    argv = ["demo", "--model", str(ckpt), "--data", str(tiny_corpus.root), "--out", str(out), "--quiet"]
    assert main([*argv, "--fast", "--only", "c", "--examples", "1"]) == 0
    manifest = assert_manifest_matches(out)
    assert "index.html" in manifest["files"] and "summary.json" in manifest["files"]
    html = (out / "index.html").read_text()
    links = set(re.findall(r'(?:href|src)="([^"#:]+)"', html))
    assert links and all((out / link).is_file() for link in links), links
    assert ".staging-" not in html


# --out that is a file, or cannot be written: one line, exit 2, before any work.
# `--model`/`--data` point at missing files: were --out not checked first, the error would name them.
@pytest.mark.parametrize(
    "argv",
    [
        ["naps", "--model", "{missing}"],
        ["patterns", "--by", "letter", "--model", "{missing}"],
        ["align", "--model", "{missing}"],
        ["attribute", "{missing}.wav", "--model", "{missing}"],
        ["visualize", "--objective", "conv5:3", "--model", "{missing}"],
        ["demo", "--model", "{missing}"],
        ["synth", "--voices", "nonsense"],
        ["train", "--data", "{missing}", "--preset", "tiny"],
    ],
    ids=lambda argv: argv[0],
)
@pytest.mark.parametrize("where", ["file", "under-file", "read-only"])
def test_unusable_out_is_refused_before_any_work(argv, where, tmp_path, capsys):
    a_file = tmp_path / "result.bin"
    a_file.write_bytes(b"precious")
    if where == "file":
        out, fragment = a_file, f"--out {a_file} is a file"
    elif where == "under-file":
        out, fragment = a_file / "sub", f"--out {a_file / 'sub'}: {a_file} is a file"
    else:
        if os.geteuid() == 0:
            pytest.skip("root ignores directory permissions (the under-file case covers a path that cannot be made)")
        locked = tmp_path / "locked"
        locked.mkdir()
        locked.chmod(0o555)
        out, fragment = locked / "out", f"--out {locked / 'out'}: the parent directory {locked} is not writable"
    argv = [a.format(missing=tmp_path / "missing.safetensors") for a in argv]
    try:
        assert main([*argv, "--out", str(out), "--quiet"]) == 2
    finally:
        if where == "read-only":
            (tmp_path / "locked").chmod(0o755)
    line = one_line(capsys.readouterr().err)
    assert line.startswith(f"asr-introspect {argv[0]}: error: ") and fragment in line, line
    assert a_file.read_bytes() == b"precious"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["result.bin"] + (["locked"] if where == "read-only" else [])


def test_eval_out_that_is_a_directory_is_refused_before_loading(tmp_path, capsys):
    argv = ["eval", "--model", str(tmp_path / "missing.safetensors"), "--out", str(tmp_path), "--quiet"]
    assert main(argv) == 2
    assert f"--out {tmp_path} is a directory" in one_line(capsys.readouterr().err)


# ---------------------------------------------------------------------------
# Error lines: internal errors, --debug, long messages, usage errors


def test_internal_error_is_one_line_and_debug_prints_the_traceback(ckpt, tiny_corpus, tmp_path, monkeypatch, capsys):
    import asr_introspect.workflows.align as align_workflow

    def broken(*args, **kwargs):
        raise ValueError("bad " * 400)

    monkeypatch.setattr(align_workflow, "align", broken)
    argv = ["align", "--model", str(ckpt), "--data", str(tiny_corpus.root), "--out", str(tmp_path / "a"), "--quiet"]
    assert main(argv) == 1
    line = one_line(capsys.readouterr().err)
    assert line.startswith("asr-introspect align: internal error: ValueError: bad bad")
    assert line.endswith("bad bad (run with --debug for the traceback)")
    assert "…" in line and not (tmp_path / "a").exists()
    for debug_argv in (["--debug", *argv], [*argv, "--debug"]):
        assert main(debug_argv) == 1
        err = capsys.readouterr().err
        assert "Traceback (most recent call last)" in err and "ValueError: bad bad" in err


def test_a_long_input_error_is_cut_to_one_short_line(ckpt, tiny_corpus, tmp_path, monkeypatch, capsys):
    import asr_introspect.workflows.align as align_workflow

    def refuse(*args, **kwargs):
        raise InputError("--frames 0:99999 " + "1," * 5000 + "\nsecond line: pass fewer frames")

    monkeypatch.setattr(align_workflow, "align", refuse)
    argv = ["align", "--model", str(ckpt), "--data", str(tiny_corpus.root), "--out", str(tmp_path / "a"), "--quiet"]
    assert main(argv) == 2
    line = one_line(capsys.readouterr().err)
    assert line.startswith("asr-introspect align: error: --frames 0:99999 1,1,")
    assert line.endswith("second line: pass fewer frames") and "…" in line


def test_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["naps", "--batch-size", "abc", "--out", "x"])
    assert exit_info.value.code == 2
    line = one_line(capsys.readouterr().err)
    assert "--batch-size" in line and "'abc'" in line and "asr-introspect naps --help" in line


def test_debug_flag_goes_before_or_after_the_subcommand():
    parser = build_parser()
    assert parser.parse_args(["align", "--out", "x"]).debug is False
    assert parser.parse_args(["--debug", "align", "--out", "x"]).debug is True
    assert parser.parse_args(["align", "--out", "x", "--debug"]).debug is True


# ---------------------------------------------------------------------------
# Signals: SIGINT and SIGKILL in the middle of naps and train, in subprocesses

#: Runs the CLI with one change: when an atomic write of a file named NAME (into a
#: staging folder, or anywhere with WHERE=any) has written its temporary, write
#: MARKER and sleep, so the test can signal a run that is certainly mid-write.
PAUSING_CLI = textwrap.dedent("""
    import contextlib, os, signal, sys, time
    from pathlib import Path
    import asr_introspect.io as aio

    marker, name, where = sys.argv[1:4]
    signal.signal(signal.SIGINT, signal.default_int_handler)
    original = aio.atomic_path

    @contextlib.contextmanager
    def pausing(path):
        with original(path) as tmp:
            yield tmp
            p = Path(path)
            staged = any(part.startswith(".staging-") for part in p.parts)
            if p.name == name and (where == "any" or staged):
                Path(marker).write_text(str(os.getpid()))
                time.sleep(600)

    aio.atomic_path = pausing
    from asr_introspect.cli import main
    sys.exit(main(sys.argv[4:]))
""")


def run_paused(tmp_path: Path, argv: list[str], name: str, sig: int, where: str = "staging") -> tuple[int, str]:
    """Start the CLI, wait until it pauses inside the write of ``name``, send ``sig``; (exit code, stderr)."""
    marker = tmp_path / f"paused-{name}-{sig}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    proc = subprocess.Popen(
        [sys.executable, "-c", PAUSING_CLI, str(marker), name, where, *argv],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 600
        while not marker.exists():
            assert proc.poll() is None, f"exited {proc.returncode} before pausing: {proc.stderr.read()[-3000:]}"
            assert time.monotonic() < deadline, "never paused"
            time.sleep(0.1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return proc.returncode, err


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL], ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_naps_interrupted_or_killed_leaves_out_unchanged_and_a_rerun_cleans_up(
    sig, finished_runs, ckpt, tiny_corpus, tmp_path
):
    out = tmp_path / "naps"
    shutil.copytree(finished_runs["naps"], out)
    before = snapshot(out)
    argv = command_argv("naps", ckpt, tiny_corpus.root, out)
    argv[argv.index("conv9,conv11")] = "conv1,conv9,conv11"  # other settings: a mix would show
    code, err = run_paused(tmp_path, argv, "naps_letter.json", sig)
    if sig != signal.SIGKILL:
        what = "interrupted" if sig == signal.SIGINT else "terminated"
        assert code == 128 + sig and f"asr-introspect naps: {what}" in err
        assert snapshot(out) == before and staging_dirs(out) == []
    else:
        assert code == -signal.SIGKILL
        assert snapshot(out, skip_staging=True) == before
        (leftover,) = staging_dirs(out)
        assert list(leftover.rglob("*.tmp")) or list(leftover.rglob("*.npz"))  # killed mid-write
    assert main(argv) == 0
    assert staging_dirs(out) == [] and tmp_files(out) == []
    manifest = assert_manifest_matches(out)
    assert manifest["settings"]["layers"] in ("conv1,conv9,conv11", ["conv1", "conv9", "conv11"])


def train_argv(corpus: Path, out: Path, *extra: str) -> list[str]:
    return [
        "train",
        "--data",
        str(corpus),
        "--valid",
        str(corpus),
        "--preset",
        "tiny",
        "--steps",
        "2",
        "--max-steps",
        "6",
        "--batch-size",
        "4",
        "--eval-every",
        "2",
        "--checkpoint-every",
        "2",
        "--out",
        str(out),
        "--quiet",
        *extra,
    ]


@pytest.fixture(scope="module")
def finished_train(tmp_path_factory, tiny_corpus) -> Path:
    """A training run of 2 steps (checkpoint and evaluation at step 2)."""
    out = tmp_path_factory.mktemp("train") / "run"
    assert main(train_argv(tiny_corpus.root, out)) == 0
    return out


def test_train_run_directory_has_a_manifest_and_state_carries_the_weights(finished_train):
    manifest = assert_manifest_matches(finished_train)
    assert manifest["command"] == "train" and manifest["summary"]["step"] == 2
    assert set(manifest["files"]) == {"config.json", "model.safetensors", "best.safetensors", "state.pt", "log.jsonl"}
    state = torch.load(finished_train / "state.pt", weights_only=True)
    model, _ = load_checkpoint(finished_train / "model.safetensors")
    for name, value in model.module.state_dict().items():
        torch.testing.assert_close(state["model"][name], value, rtol=0, atol=0, msg=name)


def _truncate(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _pickle_of_objects(path: Path) -> None:
    import collections
    import pickle

    path.write_bytes(pickle.dumps({"step": 2, "history": collections.Counter("abc"), "f": os.getcwd}))


@pytest.mark.parametrize(
    "extra, damage, fragments",
    [
        ((), None, ["{out} already holds a training run", "--resume", "--overwrite"]),
        (("--resume", "--overwrite"), None, ["--resume", "--overwrite", "only one of them"]),
        (("--resume",), ("state.pt", _truncate), ["{out}/state.pt: truncated or corrupt", "--overwrite"]),
        (("--resume",), ("state.pt", _pickle_of_objects), ["{out}/state.pt: holds Python objects", "not loaded"]),
        (("--resume",), ("state.pt", Path.unlink), ["{out}: nothing to resume (state.pt missing", "--overwrite"]),
        (
            ("--resume",),
            ("config.json", lambda p: p.write_text('{"train": {"preset": "tiny",')),
            ["{out}/config.json: not valid JSON"],
        ),
        (
            ("--resume",),
            ("config.json", lambda p: p.write_text('{"train": {"presets": "tiny"}, "features": {}}')),
            ["{out}/config.json: unusable settings (unknown training settings: presets)"],
        ),
        (("--overwrite", "--lr", "nan"), None, ["argument --lr:", "'nan'"]),
        (("--overwrite", "--batch-size", "0"), None, ["argument --batch-size:", "got 0"]),
        (("--overwrite", "--preset", "huge"), None, ["--preset 'huge' is unknown"]),
    ],
    ids=[
        "no-flag",
        "resume-and-overwrite",
        "truncated-state",
        "pickle-state",
        "missing-state",
        "corrupt-config",
        "unknown-setting",
        "lr-nan",
        "batch-size-0",
        "preset-huge",
    ],
)
def test_train_refuses_and_leaves_the_run_unchanged(extra, damage, fragments, finished_train, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_train, out)
    if damage is not None:
        name, hurt = damage
        hurt(out / name)
    before = snapshot(out)
    argv = train_argv(tiny_corpus.root, out, *extra)
    if extra == ("--resume",) and damage[1] is _pickle_of_objects:
        # in a subprocess: torch's warnings and messages would show on the real stderr
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
        proc = subprocess.run(
            [sys.executable, "-m", "asr_introspect.cli", *argv], env=env, capture_output=True, text=True
        )
        code, err = proc.returncode, proc.stderr
    else:
        import contextlib
        import io

        buffer = io.StringIO()
        with contextlib.redirect_stderr(buffer):
            try:
                code = main(argv)
            except SystemExit as exc:  # a usage error, found by argparse
                code = exc.code
        err = buffer.getvalue()
    assert code == 2
    line = one_line(err)
    for fragment in fragments:
        assert fragment.format(out=out) in line, line
    assert "weights_only" not in err
    assert snapshot(out) == before


def test_train_help_shows_the_training_defaults():
    from asr_introspect.cli.train import CONFIG_DEFAULTS
    from asr_introspect.training import TrainConfig

    assert CONFIG_DEFAULTS == {name: getattr(TrainConfig(), name) for name in CONFIG_DEFAULTS}


def test_train_overwrite_replaces_the_old_run_at_its_first_checkpoint(finished_train, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_train, out)
    (out / "notes.txt").write_text("mine")
    assert main(train_argv(tiny_corpus.root, out, "--overwrite", "--seed", "7", "--eval-every", "100")) == 0
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 7
    # the new run evaluates only at its end (step 2 == stop): one log line, and the old run's files are gone
    assert [json.loads(line)["step"] for line in (out / "log.jsonl").read_text().splitlines()] == [2]
    assert (out / "notes.txt").read_text() == "mine" and staging_dirs(out) == []
    manifest = assert_manifest_matches(out, ignore=("notes.txt",))
    assert manifest["settings"]["overwrite"] is True and manifest["settings"]["train"]["seed"] == 7


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_train_overwrite_interrupted_or_killed_keeps_the_old_run(sig, finished_train, tiny_corpus, tmp_path):
    out = tmp_path / "run"
    shutil.copytree(finished_train, out)
    before = snapshot(out)
    argv = train_argv(tiny_corpus.root, out, "--overwrite", "--seed", "7")
    code, err = run_paused(tmp_path, argv, "state.pt", sig)  # the new run's first checkpoint, mid-write
    if sig == signal.SIGINT:
        assert code == 130 and "asr-introspect train: interrupted" in err
        assert snapshot(out) == before and staging_dirs(out) == []
    else:
        assert code == -signal.SIGKILL
        assert snapshot(out, skip_staging=True) == before and len(staging_dirs(out)) == 1
    # starting over succeeds and cleans up
    assert main(train_argv(tiny_corpus.root, out, "--overwrite", "--seed", "7")) == 0
    assert staging_dirs(out) == [] and tmp_files(out) == []
    assert json.loads((out / "config.json").read_text())["train"]["seed"] == 7
    assert_manifest_matches(out)


@pytest.mark.slow
def test_train_killed_while_writing_a_resume_checkpoint_resumes_exactly(finished_train, tiny_corpus, tmp_path):
    """SIGKILL between the new model.safetensors and the new state.pt: the resume reads one consistent state."""
    killed, straight = tmp_path / "killed", tmp_path / "straight"
    shutil.copytree(finished_train, killed)
    shutil.copytree(finished_train, straight)
    code, _ = run_paused(tmp_path, train_argv(tiny_corpus.root, killed, "--resume"), "state.pt", signal.SIGKILL, "any")
    assert code == -signal.SIGKILL
    assert list(killed.glob(".state.pt.*.tmp"))  # the half-written checkpoint's temporary
    assert torch.load(killed / "state.pt", weights_only=True)["step"] == 2  # the old state is intact
    assert main(train_argv(tiny_corpus.root, killed, "--resume")) == 0
    assert main(train_argv(tiny_corpus.root, straight, "--resume")) == 0
    assert tmp_files(killed) == [] and staging_dirs(killed) == []
    assert [json.loads(line)["step"] for line in (killed / "log.jsonl").read_text().splitlines()] == [2, 4]
    a, meta = load_checkpoint(killed / "model.safetensors")
    b, _ = load_checkpoint(straight / "model.safetensors")
    assert meta["training"]["step"] == 4
    for (name, x), y in zip(a.module.state_dict().items(), b.module.state_dict().values()):
        torch.testing.assert_close(x, y, rtol=1e-5, atol=1e-6, msg=name)
    assert_manifest_matches(killed)


@pytest.mark.flite
def test_synth_writes_in_place_with_a_manifest_and_resumes(tmp_path):
    out = tmp_path / "corpus"
    argv = ["synth", "--out", str(out), "--utterances", "2", "--voices", "slt", "--quiet"]
    argv += ["--test-text-fraction", "0", "--test-speaker-fraction", "0"]
    assert main(argv) == 0
    first = assert_manifest_matches(out)
    assert sum(rel.endswith(".flac") for rel in first["files"]) == 2
    flacs = {rel: entry for rel, entry in first["files"].items() if rel.endswith(".flac")}
    assert main(argv) == 0  # same settings: resumes, keeping the audio
    second = assert_manifest_matches(out)
    assert {rel: second["files"][rel] for rel in flacs} == flacs
