"""torchrun support: ranks, devices and barriers. Ranks take disjoint videos and never write the same chunk."""

import os
from dataclasses import dataclass

import torch

from fer_cache.errors import FerCacheError


def resolve_device(device: str, local_rank: int) -> torch.device:
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cuda":
        if not torch.cuda.is_available():
            raise FerCacheError("device cuda was asked for, but no CUDA GPU is visible; use the CPU")
        return torch.device("cuda", local_rank)
    return torch.device(device)


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world: int = 1
    local_rank: int = 0


def init_distributed(device: str) -> DistInfo:
    """torchrun sets WORLD_SIZE/RANK/LOCAL_RANK; ranks then take disjoint videos."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    import torch.distributed as dist
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        use_nccl = device != "cpu" and torch.cuda.is_available()
        if use_nccl:
            torch.cuda.set_device(local_rank)  # NCCL barriers run on the current device: one GPU per rank
        dist.init_process_group("nccl" if use_nccl else "gloo")
    return DistInfo(dist.get_rank(), world, local_rank)


def summed(info: DistInfo, *values: int) -> list[int]:
    """Counts added up over the ranks (every rank gets the totals); the values themselves on one process."""
    if info.world <= 1:
        return list(values)
    import torch.distributed as dist
    device = torch.device("cuda", info.local_rank) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor(values, dtype=torch.int64, device=device)
    dist.all_reduce(total)
    return [int(v) for v in total.tolist()]


def barrier(info: DistInfo) -> None:
    if info.world > 1:
        import torch.distributed as dist
        dist.barrier()
