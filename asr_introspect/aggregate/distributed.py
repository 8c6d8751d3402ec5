"""Summing accumulator arrays across processes with ``torch.distributed`` (gloo on CPU, NCCL on GPU)."""

from __future__ import annotations

import numpy as np
import torch
import torch.distributed as dist

__all__ = ["torch_distributed", "all_reduce_arrays"]


def torch_distributed():
    """``torch.distributed`` when a process group is initialized, else None."""
    if not dist.is_available() or not dist.is_initialized():
        return None
    return dist


#: the former private name (``asr_introspect.naps`` imports it)


def all_reduce_arrays(arrays: list[np.ndarray], group=None) -> None:
    """Sum ``arrays`` in place across all processes (no-op without a process group)."""
    if torch_distributed() is None:
        return
    # NCCL reduces CUDA tensors only; gloo (and others) work on the CPU arrays in place
    device = torch.device("cpu")
    if dist.get_backend(group) == "nccl":
        device = torch.device("cuda", torch.cuda.current_device())
    # one cheap collective first, so mismatched shapes fail loudly instead of hanging
    dims = [int(d) for a in arrays for d in (tuple(a.shape) + (1, 1, 1))[:3]]
    check = torch.tensor(dims + [-d for d in dims], dtype=torch.int64, device=device)
    dist.all_reduce(check, op=dist.ReduceOp.MAX, group=group)
    check = check.cpu().tolist()
    largest, smallest = check[: len(dims)], [-d for d in check[len(dims) :]]
    if largest != dims or smallest != dims:
        shapes = [tuple(a.shape) for a in arrays]
        raise ValueError(
            f"all_reduce: accumulator shapes differ between processes (here {shapes}); "
            "create every process's accumulator with the same groups and features"
        )
    for a in arrays:
        if a.size == 0:
            continue
        host = torch.from_numpy(a)  # shares memory with the accumulator's array
        if device.type == "cpu":
            dist.all_reduce(host, op=dist.ReduceOp.SUM, group=group)
        else:
            buf = host.to(device)
            dist.all_reduce(buf, op=dist.ReduceOp.SUM, group=group)
            host.copy_(buf.cpu())
