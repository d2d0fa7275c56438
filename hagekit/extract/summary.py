"""What an extraction run did: per section/slide done, skipped or failed (with the reason)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["ItemResult", "ExtractSummary"]


@dataclass
class ItemResult:
    """One section or slide: ``status`` is done, skipped or failed; seconds are wall time."""

    name: str
    status: str
    n_patches: int = 0
    seconds: float = 0.0
    reason: str = ""
    path: Path | None = None

    @property
    def patches_per_s(self) -> float:
        return self.n_patches / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class ExtractSummary:
    """A run's results in input order, with totals for the CLI summary."""

    encoder: str
    out_dir: Path
    items: list[ItemResult] = field(default_factory=list)
    seconds: float = 0.0
    device: str = "cpu"
    precision: str = "fp32"

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
        """Patches per second over the sections/slides computed in this run."""
        secs = sum(i.seconds for i in self.done)
        return self.n_patches / secs if secs > 0 else float("nan")

    def to_dict(self) -> dict[str, Any]:
        return {
            "encoder": self.encoder,
            "out_dir": str(self.out_dir),
            "seconds": self.seconds,
            "device": self.device,
            "precision": self.precision,
            "n_patches": self.n_patches,
            "patches_per_s": self.patches_per_s,
            "items": [{**asdict(i), "path": str(i.path) if i.path else ""} for i in self.items],
        }
