"""Accumulators under torchrun: 2 processes (gloo, CPU) give the 1-process result.

The test launches ``python -m torch.distributed.run --nproc_per_node=2`` on
this file; each worker updates GroupStats / WindowStats with its shard of a
synthetic corpus, all-reduces, and saves its state. Run directly as a script,
the file is the worker.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

from asr_introspect.aggregate import GroupStats, WindowStats

N_GROUPS, N_NEURONS, N_MELS, WINDOW = 5, 6, 4, 7


def corpus(n_utterances: int = 9, seed: int = 0):
    """Synthetic utterances: activations (T, N), labels (T,), features (F, T), weights (T,)."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n_utterances):
        n_frames = int(rng.integers(1, 40))
        out.append(
            dict(
                values=rng.standard_normal((n_frames, N_NEURONS)).astype(np.float32),
                labels=rng.integers(-1, N_GROUPS - 1, n_frames),  # group N_GROUPS-1 stays empty
                features=rng.standard_normal((N_MELS, n_frames)).astype(np.float32),
                weights=rng.random(n_frames).astype(np.float32),
            )
        )
    return out


def accumulate(utterances):
    """(plain GroupStats, weighted GroupStats, WindowStats) over the utterances."""
    plain = GroupStats(N_GROUPS, N_NEURONS)
    weighted = GroupStats(N_GROUPS, N_NEURONS)
    windows = WindowStats(N_GROUPS, N_MELS, WINDOW, border="pad")
    for u in utterances:
        plain.update(u["values"], u["labels"])
        weighted.update(u["values"], u["labels"], u["weights"])
        windows.update(u["features"], np.arange(len(u["labels"])), u["labels"])
    return plain, weighted, windows


def state(plain, weighted, windows):
    return {
        **plain.to_dict("plain/"),
        **weighted.to_dict("weighted/"),
        **{k: v for k, v in windows.to_dict("windows/").items() if not k.endswith("border")},
    }


def worker(out_dir: str) -> None:
    import torch.distributed as dist

    dist.init_process_group("gloo")
    rank, world = dist.get_rank(), dist.get_world_size()
    try:
        accs = accumulate(corpus()[rank::world])  # shard the corpus between processes
        for acc in accs:
            acc.all_reduce()
        result = state(*accs)
        # mismatched accumulators (here: same size, different shapes) must fail
        # loudly on every rank, not hang or mix up groups
        try:
            GroupStats(*((2, 6), (3, 4))[rank]).all_reduce()
            result["mismatch_raised"] = np.array(False)
        except ValueError:
            result["mismatch_raised"] = np.array(True)
        np.savez(Path(out_dir) / f"rank{rank}.npz", **result)
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one_process(tmp_path):
    # the 1-process result first: this also fills Numba's on-disk cache, so the
    # workers load the kernels instead of both compiling them
    want = state(*accumulate(corpus()))
    env = dict(
        os.environ,
        NUMBA_NUM_THREADS="1",  # 2 workers on 2 cores
        OMP_NUM_THREADS="1",
        GLOO_SOCKET_IFNAME="lo",
        PYTHONPATH=os.pathsep.join([str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH", "")]),
    )
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nnodes=1",
        "--nproc_per_node=2",
        "--master_addr=127.0.0.1",
        f"--master_port={_free_port()}",
        __file__,
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    for rank in (0, 1):
        with np.load(tmp_path / f"rank{rank}.npz") as got:
            assert bool(got["mismatch_raised"])
            for key, value in want.items():
                if np.issubdtype(value.dtype, np.integer):
                    np.testing.assert_array_equal(got[key], value, err_msg=key)
                else:
                    np.testing.assert_allclose(got[key], value, rtol=1e-12, atol=1e-12, err_msg=key)
    assert want["plain/counts"][-1] == 0 and want["plain/counts"].sum() > 0


if __name__ == "__main__":
    worker(sys.argv[1])
