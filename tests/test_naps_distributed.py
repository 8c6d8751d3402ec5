"""NAPs under torchrun: 2 processes (gloo, CPU), each with half the corpus, give the 1-process NAPs.

The test writes a tiny checkpoint and corpus, then launches
``python -m torch.distributed.run --nproc_per_node=2`` on this file. Each worker
computes letter NAPs and gradient-weighted phoneme NAPs with the library
(``compute_naps`` -> ``NAPEstimator.fit`` -> ``stream.fit_estimators``, which
streams ``utterances[rank::world]`` and all-reduces), saves them, and runs the
``naps`` command (rank 0 writes its files). Run directly as a script, the file
is the worker (``... CKPT DATA OUT [one]``; ``one``: NAPs of the first utterance
only, so one process streams nothing).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np

LAYERS = ["conv2", "conv9", "conv11"]


def compute(ckpt: str, data: str, first: int | None = None):
    """(letter NAPs, gradient-weighted phoneme NAPs) of the checkpoint over the corpus (its ``first``
    utterances: then letters only, phonemes None)."""
    from asr_introspect.corpus import load_corpus
    from asr_introspect.models import load_checkpoint
    from asr_introspect.naps import compute_naps

    model, _ = load_checkpoint(ckpt)
    model.eval()
    utterances = load_corpus(data)
    if first is not None:
        return compute_naps(model, utterances[:first], "letter", LAYERS, batch_size=2), None
    letters = compute_naps(model, utterances, "letter", LAYERS, batch_size=2)
    phones = compute_naps(model, utterances, "phoneme", LAYERS, batch_size=2, weighting="gradient")
    return letters, phones


def worker(ckpt: str, data: str, out_dir: str, mode: str = "full") -> None:
    import torch.distributed as dist

    from asr_introspect.cli import main

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    try:
        if mode == "one":
            compute(ckpt, data, first=1)[0].save(Path(out_dir) / f"one{rank}.npz")
            return
        letters, phones = compute(ckpt, data)
        letters.save(Path(out_dir) / f"letters{rank}.npz")
        phones.save(Path(out_dir) / f"phones{rank}.npz")
        code = main(
            [
                "naps",
                "--model",
                ckpt,
                "--data",
                data,
                "--by",
                "letter",
                "--layers",
                "conv9,conv11",
                "--out",
                str(Path(out_dir) / "cli"),
                "--no-figures",
                "--json",
                "--quiet",
            ]
        )
        (Path(out_dir) / f"cli_exit{rank}").write_text(str(code))
    finally:
        dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _checkpoint(tmp_path) -> str:
    import torch

    from asr_introspect.models import build_model, save_checkpoint

    torch.manual_seed(0)
    model = build_model("tiny").eval()
    for module in model.module.modules():
        if isinstance(module, torch.nn.BatchNorm1d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.bias.data.uniform_(-0.5, 0.5)
    return str(save_checkpoint(tmp_path / "tiny.safetensors", model))


def _torchrun(*args: str) -> subprocess.CompletedProcess:
    """This file as the worker of 2 processes (gloo, CPU)."""
    env = dict(
        os.environ,
        NUMBA_NUM_THREADS="1",
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
        *args,
    ]
    return subprocess.run(cmd, check=False, env=env, capture_output=True, text=True, timeout=180)


def test_two_processes_equal_one_process(tmp_path, tiny_corpus):
    from asr_introspect.naps import NAPs

    ckpt = _checkpoint(tmp_path)
    data = str(tiny_corpus.root)
    out = tmp_path / "out"
    out.mkdir()
    proc = _torchrun(ckpt, data, str(out))
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]

    want_letters, want_phones = compute(ckpt, data)
    assert want_letters.settings["utterances"] == 7 and want_phones.settings["utterances"] == 2
    for rank in (0, 1):
        # float32 activations of differently composed batches on 1 vs several threads differ in
        # the last bits (about 1e-6 of the activations' scale after 9 layers); gradient weights
        # amplify that a little. Counts must match exactly.
        for want, name, tol in ((want_letters, "letters", 1e-5), (want_phones, "phones", 1e-4)):
            got = NAPs.load(out / f"{name}{rank}.npz")
            assert got.settings["utterances"] == want.settings["utterances"]
            assert sorted(got.settings["skipped"]) == sorted(want.settings["skipped"])
            for layer in LAYERS:
                np.testing.assert_array_equal(got.counts(layer), want.counts(layer))
                np.testing.assert_array_equal(got.stats[layer].counts, want.stats[layer].counts)
                np.testing.assert_allclose(got.means(layer), want.means(layer), rtol=tol, atol=2 * tol)
                np.testing.assert_allclose(got.weight_sums(layer), want.weight_sums(layer), rtol=tol)
        assert (out / f"cli_exit{rank}").read_text() == "0"
    # the command: rank 0 wrote the NAPs of the whole corpus
    cli = NAPs.load(out / "cli" / "naps_letter.npz")
    np.testing.assert_allclose(cli.means("conv9"), want_letters.means("conv9"), rtol=1e-5, atol=2e-5)
    np.testing.assert_array_equal(cli.counts("conv9"), want_letters.counts("conv9"))
    summaries = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert any(s.get("world_size") == 2 and s.get("utterances") == {"letter": 7} for s in summaries)


def test_a_process_without_utterances_still_joins_the_sum(tmp_path, tiny_corpus):
    """One utterance, two processes: rank 1 streams nothing but must still all-reduce (its estimator
    is sized before the stream, ``StreamEstimator.prepare``), and both end with the 1-process NAPs."""
    from asr_introspect.naps import NAPs

    ckpt = _checkpoint(tmp_path)
    data = str(tiny_corpus.root)
    out = tmp_path / "out"
    out.mkdir()
    proc = _torchrun(ckpt, data, str(out), "one")
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-4000:]
    want = compute(ckpt, data, first=1)[0]
    for rank in (0, 1):
        got = NAPs.load(out / f"one{rank}.npz")
        assert got.settings["utterances"] == want.settings["utterances"] == 1
        for layer in LAYERS:
            np.testing.assert_array_equal(got.counts(layer), want.counts(layer))
            np.testing.assert_allclose(got.means(layer), want.means(layer), rtol=1e-5, atol=2e-5)


if __name__ == "__main__":
    worker(*sys.argv[1:5])
