"""Safe result writing: atomic files (temp file + ``os.replace``) and all-or-nothing run directories.

- :func:`atomic_path`, :func:`save_json`, :func:`save_npz`: one file, written
  under a temporary name in the same folder and renamed into place, so an
  interrupted run never leaves a half-written file that a later run would trust.
- :class:`RunDirectory`: a whole run's output folder, all or nothing, with a
  manifest ``run.json`` of what the run wrote and with which settings (see the
  class docstring for the guarantee).
- :func:`check_out_dir`, :func:`check_out_file`: validate ``--out`` before any
  computation; :func:`clean_leftovers`: remove what killed runs left behind.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import io
import json
import os
import re
import secrets
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from asr_introspect import __version__
from asr_introspect.errors import InputError


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path next to ``path``; rename it onto ``path`` on success.

    The temporary file is removed if the body raises, and ``path`` is untouched.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.chmod(tmp_path, 0o666 & ~_umask())  # mkstemp makes 0600; give the file normal permissions
        os.replace(tmp_path, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp_path.unlink()
        raise


def write_bytes_atomic(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and return the path."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def write_text_atomic(path: str | os.PathLike, text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically and return the path."""
    return write_bytes_atomic(path, text.encode("utf-8"))


def _to_jsonable(obj: Any) -> Any:
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (np.floating,)):
        return float(obj)
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


def to_json(obj: Any, indent: int | None = 2) -> str:
    """JSON text for ``obj``, converting NumPy scalars/arrays and paths."""
    return json.dumps(obj, indent=indent, default=_to_jsonable, sort_keys=False)


def save_json(path: str | os.PathLike, obj: Any) -> Path:
    """Write ``obj`` as pretty JSON, atomically."""
    return write_text_atomic(path, to_json(obj) + "\n")


def save_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write arrays to a compressed ``.npz`` atomically (no pickled objects)."""
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes_atomic(path, buffer.getvalue())


def load_npz(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """Read every array of an ``.npz`` written by :func:`save_npz`."""
    with np.load(path, allow_pickle=False) as data:
        return {k: data[k] for k in data.files}


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 (hex) of a file's bytes, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


# ---------------------------------------------------------------------------
# Run directories: validation, leftovers, manifest, all-or-nothing commit

#: The manifest every run directory gets, written last.
MANIFEST_NAME = "run.json"
MANIFEST_FORMAT = "asr-introspect-run"
MANIFEST_VERSION = 1
#: ``.staging-<pid>-<random>``: a run's private folder inside its output directory.
STAGING_PREFIX = ".staging-"
_STAGING_RE = re.compile(r"^\.staging-(\d+)-[0-9a-f]+$")
#: Text files in which paths into the staging folder are rewritten to the final paths at commit.
_TEXT_SUFFIXES = (".json", ".jsonl", ".html", ".htm", ".md", ".txt", ".csv", ".tsv")
_TEXT_REWRITE_MAX_BYTES = 64 << 20


def _is_leftover_tmp(name: str) -> bool:
    """A temporary of :func:`atomic_path` (``.NAME.RANDOM.tmp``)."""
    return name.startswith(".") and name.endswith(".tmp")


def _first_existing(path: Path) -> Path:
    while not path.exists() and not path.is_symlink() and path != path.parent:
        path = path.parent
    return path


def check_out_dir(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Check that ``out`` can be (or is) a writable directory, before any computation; returns it as a Path.

    ``InputError`` (one line naming ``flag`` and the path) when ``out`` is an
    existing file, when a parent on its way is a file, or when the directory (or
    the nearest existing parent it would be created in) is not writable.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise InputError(f"{flag} {out} is a file, not a directory: give a directory (it is created if missing)")
    existing = _first_existing(out.absolute())
    if not existing.is_dir():
        raise InputError(f"{flag} {out}: {existing} is a file, so the directory cannot be created there")
    if not os.access(existing, os.W_OK | os.X_OK):
        what = "directory" if existing == out.absolute() else "parent directory"
        raise InputError(f"{flag} {out}: the {what} {existing} is not writable; choose another {flag}")
    return out


def check_out_file(out: str | os.PathLike, flag: str = "--out") -> Path:
    """Check that ``out`` can be written as a file (not a directory; a writable folder), before computing."""
    out = Path(out)
    if out.is_dir():
        raise InputError(f"{flag} {out} is a directory: give a file name, e.g. {out / 'result.json'}")
    existing = _first_existing(out.absolute().parent)
    if not existing.is_dir():
        raise InputError(f"{flag} {out}: {existing} is a file, so {out.name} cannot be written below it")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise InputError(f"{flag} {out}: the directory {existing} is not writable; choose another {flag}")
    return out


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine (a zombie counts as alive)."""
    if pid <= 0:
        return False
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    except OSError:
        return False
    return True


def staging_owner(path: str | os.PathLike) -> int | None:
    """The process id in a staging folder's name, or None if ``path`` is no staging folder."""
    match = _STAGING_RE.match(Path(path).name)
    return int(match.group(1)) if match else None


def new_staging_dir(out: str | os.PathLike) -> Path:
    """Create ``out/.staging-<pid>-<random>`` (``out`` must exist) and return it."""
    path = Path(out) / f"{STAGING_PREFIX}{os.getpid()}-{secrets.token_hex(4)}"
    path.mkdir()
    return path


def clean_leftovers(out: str | os.PathLike) -> list[Path]:
    """Remove what interrupted or killed runs left in ``out``; returns what was removed.

    - staging folders ``.staging-<pid>-*`` whose process is gone (a live
      process's folder is kept: it may be running right now);
    - temporaries of atomic writes (``.NAME.RANDOM.tmp``) anywhere below
      ``out``, outside staging folders and outside nested run directories
      (a subfolder with its own ``run.json`` or ``state.pt``: e.g. a training
      run that may be writing a checkpoint right now). Other files are never touched.
    """
    out = Path(out)
    removed: list[Path] = []
    if not out.is_dir():
        return removed
    for root, dirs, files in os.walk(out):
        root_path = Path(root)
        for name in list(dirs):
            pid = staging_owner(name)
            if pid is None:
                if (root_path / name / MANIFEST_NAME).exists() or (root_path / name / "state.pt").exists():
                    dirs.remove(name)  # another run's directory: its own runs clean it
                continue
            dirs.remove(name)  # never descend into a staging folder
            if root_path == out and not pid_alive(pid):
                shutil.rmtree(root_path / name, ignore_errors=True)
                removed.append(root_path / name)
        for name in files:
            if _is_leftover_tmp(name):
                with contextlib.suppress(FileNotFoundError):
                    (root_path / name).unlink()
                    removed.append(root_path / name)
    return removed


def clean_file_leftovers(path: str | os.PathLike) -> list[Path]:
    """Remove the temporaries an interrupted atomic write of ``path`` left next to it."""
    path = Path(path)
    removed = []
    if path.parent.is_dir():
        for tmp in path.parent.glob(f".{glob_escape(path.name)}.*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                tmp.unlink()
                removed.append(tmp)
    return removed


def glob_escape(name: str) -> str:
    """``name`` with glob wildcards escaped."""
    return re.sub(r"([*?\[])", r"[\1]", name)


def file_entry(path: str | os.PathLike) -> dict:
    """``{"bytes", "sha256"}`` of a file, as listed in a run manifest."""
    return {"bytes": os.path.getsize(path), "sha256": file_sha256(path)}


def utc_timestamp() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def _jsonable_settings(settings: dict | None) -> dict:
    return json.loads(to_json(settings or {}, indent=None)) if settings else {}


def make_manifest(
    command: str,
    settings: dict | None,
    files: dict[str, dict],
    *,
    started: str,
    status: str = "complete",
    argv: Iterable[str] | None = None,
    summary: dict | None = None,
    wall_seconds: float | None = None,
) -> dict:
    """The content of ``run.json``: what ran (command, argv, settings), when, with which version, and its files.

    ``files``: relative POSIX path -> :func:`file_entry`. ``status`` is
    ``"complete"``, or ``"committing"`` while files are being moved into place.
    """
    manifest: dict[str, Any] = {
        "format": MANIFEST_FORMAT,
        "format_version": MANIFEST_VERSION,
        "status": status,
        "command": command,
        "argv": list(argv) if argv is not None else None,
        "settings": _jsonable_settings(settings),
        "version": __version__,
        "started": started,
        "finished": utc_timestamp() if status == "complete" else None,
        "wall_seconds": None if wall_seconds is None else round(wall_seconds, 3),
        "files": {k: files[k] for k in sorted(files)},
    }
    if summary is not None:
        manifest["summary"] = summary
    return manifest


def read_manifest(out: str | os.PathLike) -> dict | None:
    """``out/run.json`` if it is a readable run manifest, else None (absent, unreadable or foreign)."""
    path = Path(out) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    if not isinstance(manifest, dict) or manifest.get("format") != MANIFEST_FORMAT:
        return None
    if not isinstance(manifest.get("files"), dict):
        return None
    return manifest


def _safe_relative(rel: str) -> bool:
    """A manifest path that stays inside the run directory and names no control file."""
    parts = Path(rel).parts
    if not parts or Path(rel).is_absolute() or ".." in parts or rel != Path(rel).as_posix():
        return False
    return parts[0] != MANIFEST_NAME and staging_owner(parts[0]) is None


def _listed_files(manifest: dict | None) -> dict[str, dict]:
    if manifest is None:
        return {}
    return {rel: entry for rel, entry in manifest["files"].items() if isinstance(rel, str) and _safe_relative(rel)}


@contextlib.contextmanager
def signals_deferred() -> Iterator[None]:
    """Hold SIGINT and SIGTERM back while the body runs (main thread only); deliver them after.

    Used around the renames that commit a run, so Ctrl-C cannot stop a commit halfway.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum, frame):
        received.append(signum)

    previous = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(ValueError, OSError):
            previous[sig] = signal.signal(sig, hold)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if received:
            signal.raise_signal(received[0])


def _prune_empty_dirs(start: Path, stop: Path) -> None:
    """Remove ``start`` and its parents while they are empty, up to (not including) ``stop``."""
    path = start
    while path != stop and stop in path.parents:
        try:
            path.rmdir()
        except OSError:
            return
        path = path.parent


def _walk_files(root: Path) -> tuple[list[str], list[str]]:
    """(files, folders) below ``root`` as sorted relative POSIX paths (symlinks count as files)."""
    files, folders = [], []
    for current, dirs, names in os.walk(root):
        base = Path(current)
        for name in dirs:
            if (base / name).is_symlink():
                files.append((base / name).relative_to(root).as_posix())
            else:
                folders.append((base / name).relative_to(root).as_posix())
        files.extend((base / name).relative_to(root).as_posix() for name in names)
    return sorted(files), sorted(folders)


class RunDirectory:
    """An output directory written all or nothing, with a manifest ``run.json``.

    ::

        with RunDirectory(out, "naps", settings) as run:   # validates `out` (InputError), before computing
            summary = compute_and_write_into(run.path)    # a private staging folder inside `out`
            run.summary = run.final(summary)              # staging paths -> final paths
        # success: files moved into `out`, previous run's other files removed, run.json written last

    **The guarantee.** The command writes into ``out/.staging-<pid>-<random>``
    (inside ``out``, so the final moves are renames on one filesystem, however
    large the result). If the body raises (bad input found late, a bug,
    KeyboardInterrupt / SIGINT, SIGTERM under the command line), the staging
    folder is removed and ``out`` is exactly as it was (a created ``out`` is
    removed again). SIGKILL or a power cut leaves only the staging folder, which
    the next run into ``out`` removes (its pid is dead). On success the commit:

    1. rewrites staging paths inside small text results (``.json``, ``.html``, ...)
       to the final paths, and hashes every staged file;
    2. writes ``run.json`` with ``"status": "committing"`` listing the new files
       and the previous run's files (so nothing can become an unlisted orphan);
    3. renames every staged file into ``out`` (replacing same-named files);
    4. removes the files the previous manifest listed and this run did not
       write, so outputs of an earlier run with other settings never mix with
       the new ones; files that no manifest lists (the user's own) stay;
    5. writes ``run.json`` (``"status": "complete"``: command, argv, settings,
       start and finish times, version, every file with size and sha256) atomically, last.

    SIGINT and SIGTERM are held back during steps 2-5. **The one window**: a
    SIGKILL or power cut during steps 3-4 (a few renames and unlinks) leaves
    ``out`` with some new and some old files; ``run.json`` then still says
    ``"committing"``, and the next run into ``out`` removes every file it lists.
    Whoever reads ``out`` should trust it only when ``run.json`` says ``"complete"``.

    A directory holds one run at a time: ``out`` holding another command's
    manifest is refused (``InputError``), so e.g. ``naps --out CORPUS`` can
    never delete a synthesized corpus. Leftovers of killed runs are removed on
    entry (:func:`clean_leftovers`).

    ``mode``: ``"staged"`` (the above); ``"in-place"`` for commands that resume
    their own partial output (``synth``: every file is atomic and a rerun with
    the same settings continues): the command writes into ``out`` directly and
    ``run.json`` listing every file below ``out`` is written at the end;
    ``"discard"``: a private staging folder that is never committed (the non-zero
    ranks of a ``torchrun`` job, whose rank 0 writes the results).
    """

    MODES = ("staged", "in-place", "discard")

    def __init__(
        self,
        out: str | os.PathLike,
        command: str,
        settings: dict | None = None,
        *,
        argv: Iterable[str] | None = None,
        mode: str = "staged",
        flag: str = "--out",
    ):
        if mode not in self.MODES:
            raise ValueError(f"mode must be one of {self.MODES}, got {mode!r}")
        self.out = check_out_dir(out, flag)
        self.command = command
        self.settings = dict(settings or {})
        self.argv = list(argv) if argv is not None else None
        self.mode = mode
        self.flag = flag
        self.staging: Path | None = None
        self.summary: dict | None = None
        self.manifest: dict | None = None
        self._created: list[Path] = []
        self._started = ""
        self._clock = 0.0
        if mode != "discard":
            self._check_owner()

    def _check_owner(self) -> None:
        previous = read_manifest(self.out)
        if previous is not None and previous.get("command") not in (None, self.command):
            raise InputError(
                f"{self.flag} {self.out} holds the results of `{previous.get('command')}` "
                f"({self.out / MANIFEST_NAME}); give `{self.command}` its own {self.flag} directory"
            )

    @property
    def path(self) -> Path:
        """Where the command writes: the staging folder (or ``out`` itself in ``"in-place"`` mode)."""
        if self.mode == "in-place":
            return self.out
        if self.staging is None:
            raise RuntimeError("RunDirectory.path is known only inside the with-block")
        return self.staging

    def final(self, obj: Any) -> Any:
        """``obj`` (a summary: dicts, lists, strings, paths) with staging paths replaced by the final ones."""
        if self.staging is None or self.mode == "in-place":
            return obj
        pairs = [(str(self.staging.resolve()), str(self.out.resolve())), (str(self.staging), str(self.out))]

        def fix(value: Any) -> Any:
            if isinstance(value, dict):
                return {fix(k): fix(v) for k, v in value.items()}
            if isinstance(value, list):
                return [fix(v) for v in value]
            if isinstance(value, tuple):
                return tuple(fix(v) for v in value)
            if isinstance(value, Path):
                return Path(fix(str(value)))
            if isinstance(value, str):
                for old, new in pairs:
                    value = value.replace(old, new)
            return value

        return fix(obj)

    # -- the with-block ------------------------------------------------------
    def __enter__(self) -> RunDirectory:
        self._started = utc_timestamp()
        self._clock = time.perf_counter()
        missing = []
        path = self.out.absolute()
        while not path.exists():
            missing.append(path)
            path = path.parent
        self.out.mkdir(parents=True, exist_ok=True)
        # deepest first; a discarded rank's folder is left for rank 0, which writes the results into it
        self._created = missing if self.mode != "discard" else []
        if self.mode != "discard":
            clean_leftovers(self.out)
        if self.mode != "in-place":
            self.staging = new_staging_dir(self.out)
        return self

    def __exit__(self, exc_type, exc, tb) -> bool:
        if exc_type is not None:
            self.abort()
            return False
        if self.mode == "discard":
            self.abort()
            return False
        try:
            self.commit()
        except BaseException:
            self.abort()
            raise
        return False

    def abort(self) -> None:
        """Remove the staging folder (and ``out`` if this run created it and it is empty)."""
        if self.staging is not None:
            shutil.rmtree(self.staging, ignore_errors=True)
        for path in self._created:
            try:
                path.rmdir()
            except OSError:
                break

    def commit(self) -> dict:
        """Move the staged files into ``out`` and write ``run.json`` (see the class docstring); returns it."""
        wall = time.perf_counter() - self._clock
        if self.mode == "in-place":
            files, _ = _walk_files(self.out)
            entries = {
                rel: file_entry(self.out / rel)
                for rel in files
                if _safe_relative(rel) and not _is_leftover_tmp(Path(rel).name)
            }
            self.manifest = make_manifest(
                self.command,
                self.settings,
                entries,
                started=self._started,
                argv=self.argv,
                summary=self.summary,
                wall_seconds=wall,
            )
            save_json(self.out / MANIFEST_NAME, self.manifest)
            return self.manifest
        staging = self.staging
        assert staging is not None
        self._rewrite_staging_paths()
        files, folders = _walk_files(staging)
        if MANIFEST_NAME in files:
            raise RuntimeError(f"the command wrote {MANIFEST_NAME} itself; that name is reserved for the manifest")
        previous = _listed_files(read_manifest(self.out))
        in_the_way = self._conflicts(files, folders, previous)
        entries = {rel: file_entry(staging / rel) for rel in files}
        common = dict(started=self._started, argv=self.argv, summary=self.summary, wall_seconds=wall)
        with signals_deferred():
            save_json(
                self.out / MANIFEST_NAME,
                make_manifest(self.command, self.settings, {**previous, **entries}, status="committing", **common),
            )
            for rel in in_the_way:
                (self.out / rel).unlink()
            for rel in folders:
                (self.out / rel).mkdir(parents=True, exist_ok=True)
            for rel in files:
                target = self.out / rel
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(staging / rel, target)
            for rel in sorted(set(previous) - set(entries) - set(in_the_way)):
                target = self.out / rel
                if target.is_file() or target.is_symlink():
                    target.unlink()
                    _prune_empty_dirs(target.parent, self.out)
            self.manifest = make_manifest(self.command, self.settings, entries, **common)
            save_json(self.out / MANIFEST_NAME, self.manifest)
        shutil.rmtree(staging, ignore_errors=True)
        self.staging = None
        self._created = []
        return self.manifest

    def _conflicts(self, files: list[str], folders: list[str], previous: dict[str, dict]) -> list[str]:
        """Old files that stand where the new run needs a folder (removed at commit); InputError for others."""
        in_the_way: set[str] = set()
        needed_folders = set(folders) | {Path(rel).parent.as_posix() for rel in files}
        for folder in sorted(needed_folders - {"."}):
            parts = Path(folder).parts
            for i in range(1, len(parts) + 1):
                prefix = Path(*parts[:i]).as_posix()
                target = self.out / prefix
                if target.exists() and not target.is_dir():
                    if prefix not in previous:
                        raise InputError(
                            f"{self.flag} {self.out}: {target} is a file where the results need a folder; move it away"
                        )
                    in_the_way.add(prefix)
        for rel in files:
            target = self.out / rel
            if target.is_dir() and not target.is_symlink():
                raise InputError(
                    f"{self.flag} {self.out}: {target} is a folder where the results need a file; move it away"
                )
        return sorted(in_the_way)

    def _rewrite_staging_paths(self) -> None:
        """Replace staging paths inside small text results with the final paths (before hashing)."""
        staging = self.staging
        assert staging is not None
        pairs = [
            (str(staging.resolve()).encode(), str(self.out.resolve()).encode()),
            (str(staging).encode(), str(self.out).encode()),
        ]
        marker = staging.name.encode()
        for rel in _walk_files(staging)[0]:
            path = staging / rel
            if path.suffix.lower() not in _TEXT_SUFFIXES or path.is_symlink():
                continue
            if path.stat().st_size > _TEXT_REWRITE_MAX_BYTES:
                continue
            data = path.read_bytes()
            if marker not in data:
                continue
            for old, new in pairs:
                data = data.replace(old, new)
            write_bytes_atomic(path, data)
