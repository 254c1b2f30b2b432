"""torchrun/DDP setup and the original's distributed semantics.

The original (torch.distributed.launch, one optimizer per rank) averaged the initial parameters
across ranks and then SUMMED gradients over ranks every update (all-reduce with denominator 1).
Here DDP does the all-reduce, overlapped with backward, through a comm hook that sums instead
of DDP's default average. Same code on GPUs (nccl) and CPU (gloo).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: int = -1
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1 or self.local_rank != -1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(local_rank: int = -1, device: str | None = None) -> Dist:
    """Read torchrun's env (LOCAL_RANK, RANK, WORLD_SIZE) or --local_rank, init the process group.

    Single process: cuda if available else cpu. Distributed: cuda:LOCAL_RANK with nccl, or cpu
    with gloo when there is no GPU (or `device="cpu"`)."""
    env_local = os.environ.get("LOCAL_RANK")
    if local_rank == -1 and env_local is not None and int(os.environ.get("WORLD_SIZE", "1")) > 1:
        local_rank = int(env_local)
    use_cuda = torch.cuda.is_available() and device != "cpu"
    if local_rank == -1:
        return Dist(device=torch.device(device or ("cuda" if use_cuda else "cpu")))
    if use_cuda:
        torch.cuda.set_device(local_rank)
        dev = torch.device("cuda", local_rank)
    else:
        dev = torch.device("cpu")
    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", "29500")
        os.environ.setdefault("RANK", str(local_rank))
        os.environ.setdefault("WORLD_SIZE", "1")
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world_size=dist.get_world_size(), local_rank=local_rank, device=dev)


def cleanup() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


@torch.no_grad()
def average_parameters(model: torch.nn.Module, world_size: int) -> None:
    """The original's start: every rank begins from the mean of all ranks' initial parameters."""
    for p in model.parameters():
        dist.all_reduce(p.data)
        p.data.div_(world_size)


def _sum_hook(_state, bucket):
    fut = dist.all_reduce(bucket.buffer(), async_op=True).get_future()
    return fut.then(lambda f: f.value()[0])


def wrap_ddp(model: torch.nn.Module, d: Dist) -> torch.nn.Module:
    """DDP whose gradient all-reduce SUMS over ranks (the original's rescale_denom=1)."""
    from torch.nn.parallel import DistributedDataParallel as DDP
    # No buffer broadcast before each forward (the model's buffers never change). torch 2.13
    # renamed the flag and warns on the old one.
    buffers = ({"forward_sync_buffers": False} if "forward_sync_buffers" in inspect.signature(DDP).parameters
               else {"broadcast_buffers": False})
    ddp = DDP(model, device_ids=[d.local_rank] if d.device.type == "cuda" else None,
              gradient_as_bucket_view=True, **buffers)
    ddp.register_comm_hook(None, _sum_hook)
    return ddp


def reduce_stats(stats: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum a stats vector over ranks (the caller divides the means by world size)."""
    if d.world_size > 1:
        stats = stats.clone()
        dist.all_reduce(stats)
    return stats


def broadcast_object(obj, d: Dist):
    if d.world_size == 1:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(d: Dist) -> None:
    if d.world_size > 1:
        dist.barrier()
