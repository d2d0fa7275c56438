"""What an extraction run did: per section/slide done, skipped or failed (with the reason),
and per rank (torchrun) the patches and patches/s each process delivered."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ItemResult", "ExtractSummary", "RankStats", "merge_summaries", "per_second"]


def per_second(n: int, seconds: float) -> float:
    """``n`` over ``seconds`` (NaN when no time was taken)."""
    return n / seconds if seconds > 0 else float("nan")


@dataclass
class ItemResult:
    """One section or slide: ``status`` is done, skipped or failed; seconds are wall time."""

    name: str
    status: str
    n_patches: int = 0
    seconds: float = 0.0
    reason: str = ""
    path: Path | None = None
    rank: int = 0

    @property
    def patches_per_s(self) -> float:
        return per_second(self.n_patches, self.seconds)


@dataclass
class RankStats:
    """One process's share: items done, patches, seconds encoding (busy) and in all (wall)."""

    rank: int
    host: str
    device: str
    n_done: int
    n_patches: int
    busy_seconds: float
    wall_seconds: float
    batch_size: int

    @property
    def patches_per_s(self) -> float:
        return per_second(self.n_patches, self.busy_seconds)

    @classmethod
    def of(cls, summary: ExtractSummary, *, rank: int, host: str, batch_size: int) -> RankStats:
        done = summary.done
        return cls(rank, host, summary.device, len(done), sum(i.n_patches for i in done),
                   sum(i.seconds for i in done), summary.seconds, batch_size)


@dataclass
class ExtractSummary:
    """A run's results in input order, with totals for the CLI summary."""

    encoder: str
    out_dir: Path
    items: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"
    ranks: list[RankStats] = field(default_factory=list)
    shard: str = ""

    def _with(self, status: str) -> list[ItemResult]:
        return [i for i in self.items if i.status == status]

    @property
    def done(self) -> list[ItemResult]:
        return self._with("done")

    @property
    def skipped(self) -> list[ItemResult]:
        return self._with("skipped")

    @property
    def failed(self) -> list[ItemResult]:
        return self._with("failed")

    @property
    def ok(self) -> bool:
        """True when nothing failed."""
        return not self.failed

    @property
    def n_patches(self) -> int:
        return sum(i.n_patches for i in self.done)

    @property
    def patches_per_s(self) -> float:
        """Patches per second of the whole run: all patches over the busiest rank's encoding time."""
        if self.ranks:
            secs = max(r.busy_seconds for r in self.ranks)
        else:
            secs = sum(i.seconds for i in self.done)
        return per_second(self.n_patches, secs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "out_dir": str(self.out_dir),
            "seconds": self.seconds,
            "device": self.device,
            "precision": self.precision,
            "n_patches": self.n_patches,
            "patches_per_s": self.patches_per_s,
            "shard": self.shard,
            "ranks": [{**asdict(r), "patches_per_s": r.patches_per_s} for r in self.ranks],
            "items": [{**asdict(i), "path": str(i.path) if i.path else ""} for i in self.items],
        }


def merge_summaries(parts: list[ExtractSummary]) -> ExtractSummary:
    """One summary from every rank's (rank order): all items, per-rank stats, the longest wall time."""
    first = parts[0]
    devices = sorted({p.device for p in parts if p.done}) or [first.device]
    precisions = sorted({p.precision for p in parts if p.done}) or [first.precision]
    return ExtractSummary(
        encoder=first.encoder,
        out_dir=first.out_dir,
        items=[i for p in parts for i in p.items],
        seconds=max(p.seconds for p in parts),
        device=", ".join(devices),
        precision=", ".join(precisions),
        ranks=[r for p in parts for r in p.ranks],
        shard=first.shard,
    )
