"""One scale-out mechanism: ``torchrun`` ranks (torch.distributed) or ``--shard K/N`` jobs.

Under ``torchrun`` (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK`` in the environment) the process
group is set up once: gloo on CPU, NCCL on GPUs (rank ``r`` uses ``cuda:LOCAL_RANK`` through
:func:`hagekit.device.resolve_device`). Work items are dealt deterministically: balanced by a
weight (tile count, spots), largest first, each to the least-loaded rank. Without a process
group, ``--shard K/N`` gives a job the same kind of deterministic share.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from hagekit.errors import ConfigError

__all__ = [
    "DistContext",
    "Shard",
    "env_rank",
    "env_world_size",
    "is_main_process",
    "init_distributed",
    "deal_balanced",
    "parse_shard",
    "gather_to_all",
    "broadcast_from_main",
    "barrier",
    "my_tasks",
    "round_robin_device",
    "shutdown_distributed",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

#: How long a collective waits for slow ranks (a rank may encode for hours before the gather).
DEFAULT_TIMEOUT_MIN = 7 * 24 * 60


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name, "")
    try:
        return int(value) if value.strip() else default
    except ValueError:
        return default


def env_rank() -> int:
    """This process's global rank (0 outside torchrun); reads the environment only."""
    return _env_int("RANK", 0)


def env_world_size() -> int:
    """Number of ranks (1 outside torchrun); reads the environment only (no torch import)."""
    return max(1, _env_int("WORLD_SIZE", 1))


def is_main_process() -> bool:
    """True on rank 0 (and outside torchrun): the process that prints and writes tables."""
    return env_rank() == 0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: rank, world size, local rank and the collective backend."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    backend: str = ""

    @property
    def distributed(self) -> bool:
        """True when a process group with more than one rank is active."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: str | None = "auto") -> DistContext:
    """Join the torchrun process group if ``WORLD_SIZE`` > 1 (idempotent); else a 1-rank context.

    The backend is NCCL when this rank resolves to a CUDA device, gloo otherwise; collectives
    wait up to ``HAGEKIT_DIST_TIMEOUT_MIN`` minutes (default 7 days) for slower ranks.
    """
    world = env_world_size()
    if world <= 1:
        return DistContext()
    import datetime

    import torch
    import torch.distributed as dist

    from hagekit.device import resolve_device

    rank, local = env_rank(), _env_int("LOCAL_RANK", 0)
    if not dist.is_available():  # pragma: no cover - every torch wheel we support has it
        raise ConfigError("torchrun: this torch build has no torch.distributed")
    if not dist.is_initialized():
        dev = resolve_device(device)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        minutes = _env_int("HAGEKIT_DIST_TIMEOUT_MIN", DEFAULT_TIMEOUT_MIN)
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=minutes))
        import atexit

        atexit.register(shutdown_distributed, wait=False)  # NCCL warns (and may hang) when a group is left at exit
        log.info("rank %d/%d (local %d) joined the %s process group on %s", rank, world, local, backend, dev)
    return DistContext(dist.get_rank(), dist.get_world_size(), local, dist.get_backend())


#: How long a finished rank waits at the final barrier for the others (seconds).
FINAL_BARRIER_S = 600


def shutdown_distributed(wait: bool = True) -> None:
    """Leave the process group (idempotent; a no-op without one).

    With ``wait`` (a rank that finished its work normally) every rank first meets at one
    barrier, so no rank tears down its connections while another still talks to it: without
    it, a rank that left early made gloo abort its peer at exit ("terminate called without an
    active exception", exit -6) after all work was done. A failed rank leaves without waiting
    (its peers then fail in their next collective instead of hanging).
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if wait:
        try:
            if dist.get_backend() == "gloo":
                import datetime

                dist.monitored_barrier(timeout=datetime.timedelta(seconds=FINAL_BARRIER_S), wait_all_ranks=True)
            else:
                dist.barrier()
        except Exception as exc:  # a peer died: still leave the group below
            log.warning("final barrier failed (%s); leaving the process group anyway", exc)
    dist.destroy_process_group()


def deal_balanced(weights: Sequence[float], n_bins: int) -> list[list[int]]:
    """Indices of ``weights`` dealt to ``n_bins``: largest first, each to the least-loaded bin.

    Deterministic: ties break by input index (items) and by bin number (bins). Each bin's
    list keeps input order, so outputs appear in a stable order.
    """
    if n_bins < 1:
        raise ConfigError(f"cannot deal over {n_bins} ranks/shards")
    order = sorted(range(len(weights)), key=lambda i: (-float(weights[i]), i))
    loads = [0.0] * n_bins
    counts = [0] * n_bins
    bins: list[list[int]] = [[] for _ in range(n_bins)]
    for i in order:
        b = min(range(n_bins), key=lambda k: (loads[k], counts[k], k))
        bins[b].append(i)
        loads[b] += max(0.0, float(weights[i]))
        counts[b] += 1
    return [sorted(b) for b in bins]


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (``--shard K/N``, 0-based K)."""

    index: int
    count: int

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


def parse_shard(text: str | None) -> Shard | None:
    """``"K/N"`` -> Shard(K, N) with 0 <= K < N; None stays None. Slurm: ``$SLURM_ARRAY_TASK_ID/16``."""
    if text is None or not str(text).strip():
        return None
    parts = str(text).strip().split("/")
    try:
        k, n = (int(p) for p in parts) if len(parts) == 2 else (None, None)
    except ValueError:
        k, n = None, None
    if k is None or n is None or n < 1 or not 0 <= k < n:
        raise ConfigError(f"--shard: expected K/N with 0 <= K < N (e.g. 3/16), got {text!r}")
    return Shard(k, n)


def gather_to_all(obj: T, ctx: DistContext) -> list[T]:
    """Every rank's ``obj`` (picklable), in rank order, on every rank; ``[obj]`` without a group."""
    if not ctx.distributed:
        return [obj]
    import torch.distributed as dist

    out: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(out, obj)
    return out


def broadcast_from_main(obj: T, ctx: DistContext) -> T:
    """Rank 0's ``obj`` on every rank (so all ranks deal from one identical list)."""
    if not ctx.distributed:
        return obj
    import torch.distributed as dist

    box: list[Any] = [obj if ctx.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(ctx: DistContext) -> None:
    """Wait for every rank (no-op without a process group)."""
    if ctx.distributed:
        import torch.distributed as dist

        dist.barrier()


def my_tasks(n_tasks: int, ctx: DistContext, weights: Sequence[float] | None = None) -> list[int]:
    """Indices of the ``n_tasks`` tasks this rank runs (all of them without a process group)."""
    if not ctx.distributed:
        return list(range(n_tasks))
    return deal_balanced(list(weights) if weights is not None else [1.0] * n_tasks, ctx.world_size)[ctx.rank]


def round_robin_device(device: str, index: int) -> str:
    """``device`` for the ``index``-th parallel job on one machine: CUDA jobs take the GPUs in turn
    (``--jobs N``: job i on ``cuda:(i mod n_gpus)``); anything else is returned as resolved."""
    from hagekit.device import resolve_device

    dev = resolve_device(device)
    if dev.type != "cuda" or env_world_size() > 1:  # under torchrun a rank keeps its own GPU
        return str(dev)
    import torch

    return f"cuda:{index % max(1, torch.cuda.device_count())}"
