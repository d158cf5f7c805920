"""Distributed data-parallel plumbing: run a worker in N local processes (gloo on CPU, nccl on GPU), or join the
process group that ``torchrun`` set up. Everything stays on loopback (MASTER_ADDR=127.0.0.1, GLOO_SOCKET_IFNAME=lo).
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from dataclasses import dataclass
from typing import Any, Callable

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from dlc_core.errors import InputError


@dataclass(frozen=True)
class Rank:
    """Where this process stands: its rank, the world size, and whether it is the one that writes files."""

    rank: int = 0
    world_size: int = 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _entry(rank: int, world_size: int, port: int, backend: str, fn: Callable[..., Any], args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), GLOO_SOCKET_IFNAME="lo")
    dist.init_process_group(backend, rank=rank, world_size=world_size)
    try:
        fn(Rank(rank, world_size), *args)
    except InputError as exc:  # bad input seen inside a worker: one line from rank 0, a plain exit code
        if rank == 0:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        sys.exit(2)
    else:
        dist.barrier()  # every rank done with its collectives before any tears the group down
    finally:
        dist.destroy_process_group()


def backend_for(device: torch.device) -> str:
    """nccl for CUDA, gloo otherwise."""
    return "nccl" if device.type == "cuda" else "gloo"


def launch(fn: Callable[..., Any], nproc: int, device: torch.device, *args: Any) -> None:
    """Call fn(Rank, *args) in this process (nproc == 1 and not under torchrun) or in a distributed group.

    Under torchrun (RANK/WORLD_SIZE set) this process joins the group torchrun created; with nproc > 1 it spawns
    nproc local processes on a free loopback port.
    """
    if "RANK" in os.environ and "WORLD_SIZE" in os.environ:
        os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
        dist.init_process_group(backend_for(device))
        try:
            fn(Rank(dist.get_rank(), dist.get_world_size()), *args)
        finally:
            dist.destroy_process_group()
    elif nproc > 1:
        logging.getLogger("torch.multiprocessing.spawn").setLevel(logging.ERROR)  # our workers print their own error
        try:
            mp.spawn(_entry, args=(nproc, _free_port(), backend_for(device), fn, args), nprocs=nproc, join=True)
        except mp.ProcessExitedException as exc:
            raise SystemExit(exc.exit_code or 1) from None
    else:
        fn(Rank(), *args)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank after a step, so replicas stay identical
    between steps (DDP itself only syncs them at the start of the next forward)."""
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def average_gradients(params: list[torch.nn.Parameter], world_size: int) -> None:
    """All-reduce and average the gradients of parameters that live outside the DDP module (e.g. DLC's α, μ)."""
    for p in params:
        if p.grad is not None:
            dist.all_reduce(p.grad)
            p.grad /= world_size
