"""Many processes: ``torchrun --nproc_per_node=N -m rnnkit train ...`` trains with DistributedDataParallel.

torchrun starts N processes and tells each its place through the environment (``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``). The trainer joins the process group
(gloo on CPU, nccl on GPU), each rank trains on its own shard of every batch, DDP averages the gradients
(so the update is the one for the global batch), and rank 0 alone writes logs, plots and checkpoints.

Outside torchrun (no ``WORLD_SIZE``, or 1) every function here is the one-process identity.
"""

from __future__ import annotations

import os
from typing import Any

import torch
import torch.distributed as dist
from torch import Tensor

from ..errors import InputError


def world_size() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def is_main() -> bool:
    """True in the process that writes files and prints (rank 0; the only process outside torchrun)."""
    return rank() == 0


def setup(device: torch.device) -> bool:
    """Join the process group torchrun describes, if any and not yet joined. True if this call joined it
    (so the caller should :func:`teardown` when done)."""
    if world_size() <= 1 or dist.is_initialized():
        return False
    if not dist.is_available():
        raise InputError("WORLD_SIZE > 1 but this torch build has no torch.distributed")
    backend = "nccl" if device.type == "cuda" else "gloo"
    if device.type == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return True


def teardown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def all_reduce_sum(values: list[float], device: torch.device) -> list[float]:
    """The sums over all ranks of a few numbers (the numbers themselves in one process)."""
    if not active():
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def all_reduce_mean(value: float, device: torch.device) -> float:
    return all_reduce_sum([value], device)[0] / world_size()


def gather_batch(t: Tensor) -> Tensor:
    """Every rank's ``t`` (K, b, n) joined along the batch dimension into (K, b * world, n), rank order."""
    if not active():
        return t
    parts = [torch.empty_like(t) for _ in range(world_size())]
    dist.all_gather(parts, t.contiguous())
    return torch.cat(parts, dim=1)


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's ``obj`` (picklable, sent between live processes only, never stored), rank order."""
    if not active():
        return [obj]
    out: list[Any] = [None] * world_size()
    dist.all_gather_object(out, obj)
    return out


def barrier() -> None:
    if active():
        dist.barrier()
