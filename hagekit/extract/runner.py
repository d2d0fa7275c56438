"""The control flow of every extraction run: which items this process encodes, and how.

1. Pending items: finished outputs are skipped (recorded once, by rank 0).
2. Dealing: under ``torchrun`` the pending items are weighed in parallel (tiles per slide,
   spots per section), then dealt largest first to the least-loaded rank; with
   ``--shard K/N`` the share is dealt by file size over *all* inputs, so it stays the same
   on every rerun and in every job of a Slurm array.
3. Each item runs under a per-item lock file in the output folder (another job holding it
   means "skip"; a dead job's lock is reclaimed) and is rechecked once locked.
4. A CUDA out-of-memory error halves the batch and retries the item (the smaller batch is
   kept for the rest of the run); only input faults (:data:`INPUT_ERRORS`) fail one item;
   anything else (MemoryError, bugs) stops the run.
5. Every rank's summary is gathered; all ranks return the merged one (rank 0 prints it).
"""

from __future__ import annotations

import logging
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hagekit.distributed import (
    DistContext,
    Shard,
    broadcast_from_main,
    deal_balanced,
    gather_to_all,
    init_distributed,
    parse_shard,
)
from hagekit.errors import ConfigError, is_fatal_os_error
from hagekit.extract.common import INPUT_ERRORS, pending_inputs, setup_for, whole_feature_file
from hagekit.extract.engine import EncoderSetup
from hagekit.extract.spec import EncoderSpec, ExtractionSpec
from hagekit.extract.summary import ExtractSummary, ItemResult, RankStats, merge_summaries
from hagekit.progress import Reporter

__all__ = ["SkipItem", "run_items", "is_cuda_oom"]

log = logging.getLogger(__name__)


class SkipItem(Exception):  # noqa: N818 - a signal, not an error
    """Raised by an item's extract function: nothing to do for it (e.g. a section without image)."""


#: ``extract(path, setup, target, batch_size, num_workers) -> n_patches``.
ExtractFn = Callable[[Path, EncoderSetup, Path, int, int], int]


def is_cuda_oom(exc: BaseException) -> bool:
    """True for a CUDA out-of-memory error (torch's own type, or the older RuntimeError text)."""
    import torch

    if isinstance(exc, getattr(torch, "OutOfMemoryError", torch.cuda.OutOfMemoryError)):
        return True
    return isinstance(exc, RuntimeError) and "CUDA out of memory" in str(exc)


def _file_size(path: Path) -> float:
    try:
        return float(path.stat().st_size)
    except OSError:
        return 0.0


def _safe_weight(weigh: Callable[[Path], float], path: Path) -> float:
    try:
        return float(weigh(path))
    except INPUT_ERRORS:  # the item fails later, where its error is recorded
        return 0.0


def _my_items(
    files: Sequence[Path],
    *,
    ctx: DistContext,
    shard: Shard | None,
    weigh: Callable[[Path], float],
    pending: Callable[[Sequence[Path]], list[Path]],
) -> list[Path]:
    """This process's share of ``files`` still to do (``pending`` drops and records finished ones)."""
    if shard is not None:
        share = deal_balanced([_file_size(f) for f in files], shard.count)[shard.index]
        mine = [files[i] for i in share]
        log.info("shard %s: %d of %d inputs", shard, len(mine), len(files))
        return pending(mine)
    if not ctx.distributed:
        return pending(files)
    todo = [str(p) for p in pending(files)] if ctx.is_main else []
    todo = broadcast_from_main(todo, ctx)
    paths = [Path(p) for p in todo]
    mine_rr = {p: _safe_weight(weigh, Path(p)) for p in todo[ctx.rank :: ctx.world_size]}
    weights: dict[str, float] = {}
    for part in gather_to_all(mine_rr, ctx):
        weights.update(part)
    share = deal_balanced([weights[p] for p in todo], ctx.world_size)[ctx.rank]
    log.info("rank %d: %d of %d pending inputs (weight %.0f of %.0f)", ctx.rank, len(share), len(todo),
             sum(weights[todo[i]] for i in share), sum(weights.values()))
    return [paths[i] for i in share]


def _run_one(
    f: Path,
    target: Path,
    setup: EncoderSetup,
    extract: ExtractFn,
    *,
    batch: list[int],
    workers: int,
    reporter: Reporter,
) -> tuple[int, str]:
    """Encode one item, halving ``batch[0]`` on CUDA OOM; returns (patches, note)."""
    note = ""
    while True:
        try:
            return extract(f, setup, target, batch[0], workers), note
        except Exception as exc:
            if not is_cuda_oom(exc) or batch[0] <= 1:
                raise
            import torch

            old, batch[0] = batch[0], max(1, batch[0] // 2)
            note = f"CUDA out of memory at batch {old}: retried with batch {batch[0]}"
            log.warning("%s: %s", f.name, note)
            reporter.message(f"{f.stem}: {note}")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()


def run_items(
    files: Sequence[Path],
    extract: ExtractFn,
    *,
    encoder: EncoderSpec,
    spec: ExtractionSpec,
    settings: dict[str, Any],
    weigh: Callable[[Path], float],
    reporter: Reporter,
) -> ExtractSummary:
    """Encode this process's share of ``files`` into ``<spec.out_dir>/<stem>.h5``; return the merged summary.

    ``settings`` are the patch attributes a finished file must match to be skipped; ``weigh``
    gives an item's dealing weight under torchrun (its patch count).
    """
    from hagekit.io.locks import DEFAULT_STALE_S

    t_run = time.perf_counter()
    if spec.out_dir is None:
        raise ConfigError("--out: no output folder")
    out, shard = Path(spec.out_dir), parse_shard(spec.shard)
    ctx = init_distributed(encoder.device)
    if shard is not None and ctx.distributed:
        raise ConfigError("--shard: not with torchrun (ranks are dealt their share already); use one or the other")
    stale = DEFAULT_STALE_S if spec.lock_timeout is None else float(spec.lock_timeout)
    if not stale > 0:
        raise ConfigError(f"--lock-timeout: must be a positive number of seconds, got {spec.lock_timeout}")
    summary = ExtractSummary(encoder=encoder.key, out_dir=out)

    def pending(items: Sequence[Path]) -> list[Path]:
        return pending_inputs(items, out, spec=encoder.key, settings=settings, overwrite=spec.overwrite,
                              summary=summary, reporter=reporter)

    todo = _my_items(files, ctx=ctx, shard=shard, weigh=weigh, pending=pending)
    setup, workers = setup_for(todo, encoder, summary)
    batch = [encoder.batch_size]
    for f in todo:
        assert setup is not None
        one = _Item(f, out / f"{f.stem}.h5", rank=ctx.rank)
        one.run(setup, extract, batch=batch, workers=workers, stale=stale, overwrite=spec.overwrite,
                summary=summary, reporter=reporter)
    summary.seconds = time.perf_counter() - t_run
    summary.ranks = [RankStats.of(summary, rank=ctx.rank, host=socket.gethostname(), batch_size=batch[0])]
    summary.shard = str(shard) if shard is not None else ""
    merged = merge_summaries(gather_to_all(summary, ctx)) if ctx.distributed else summary
    order = {f.stem: i for i, f in enumerate(files)}
    merged.items.sort(key=lambda i: order.get(i.name, len(order)))
    return merged


@dataclass(frozen=True)
class _Item:
    """One input of the run and its feature file, encoded under its lock."""

    path: Path
    target: Path
    rank: int

    def run(
        self,
        setup: EncoderSetup,
        extract: ExtractFn,
        *,
        batch: list[int],
        workers: int,
        stale: float,
        overwrite: bool,
        summary: ExtractSummary,
        reporter: Reporter,
    ) -> None:
        """Encode the item (skipped when locked by another job or finished meanwhile); record the result."""
        from hagekit.io.locks import ItemLock, item_lock

        f, target, rank = self.path, self.target, self.rank
        t0 = time.perf_counter()
        with item_lock(target.parent, f.stem, stale_after=stale) as lock:
            if not isinstance(lock, ItemLock):
                reporter.message(f"skip {f.stem}: locked by {lock.describe()} (another job is computing it)")
                summary.items.append(ItemResult(f.stem, "skipped", reason=f"locked by {lock.host}:{lock.pid}", rank=rank))
                return
            if target.exists() and not overwrite and whole_feature_file(target):  # finished by another job meanwhile
                summary.items.append(ItemResult(f.stem, "skipped", reason="exists", path=target, rank=rank))
                return
            try:
                n, note = _run_one(f, target, setup, extract, batch=batch, workers=workers, reporter=reporter)
            except SkipItem as why:
                reporter.message(f"skip {f.stem}: {why}")
                summary.items.append(ItemResult(f.stem, "skipped", reason=str(why), rank=rank))
                return
            except INPUT_ERRORS as exc:
                if is_fatal_os_error(exc):  # disk full, read-only folder: no other item can succeed
                    raise
                log.debug("%s failed", f.name, exc_info=True)
                reporter.message(f"failed {f.name}: {exc}")
                summary.items.append(ItemResult(f.stem, "failed", seconds=time.perf_counter() - t0,
                                                reason=str(exc), rank=rank))
                return
        summary.items.append(ItemResult(f.stem, "done", n_patches=n, seconds=time.perf_counter() - t0,
                                        path=target, reason=note, rank=rank))
