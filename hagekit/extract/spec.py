"""What an extraction run is asked for, as two value objects built once (by the CLI or a caller).

:class:`EncoderSpec`: which encoder and how to feed it (device, precision, batch, readers).
:class:`ExtractionSpec`: what to cut (spot patch side, or the slides' :class:`TilingSpec`),
where to write it, and how the run resumes and shares its work.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

from hagekit.device import PRECISIONS
from hagekit.errors import ConfigError, DataError, at

__all__ = ["DEFAULT_PATCH_UM", "DEFAULT_TILE_SIZE", "MAX_TILE_PX", "EncoderSpec", "ExtractionSpec", "TilingSpec"]

#: HEST's spot patch: 224 px at 0.5 µm/px.
DEFAULT_PATCH_UM = 112.0
#: Tile side in px at the target resolution when tiling (CLAM's and TRIDENT's default).
DEFAULT_TILE_SIZE = 256
#: Largest tile side (px at the target resolution): 16x the usual 256, 192 MB as RGB per read.
MAX_TILE_PX = 4096
#: Fraction of tissue a tile needs by default.
DEFAULT_MIN_TISSUE = 0.25


@dataclass(frozen=True)
class EncoderSpec:
    """The encoder (a ``create_encoder`` spec string and its weights) and how to run it."""

    name: str = "builtin"
    weights: Path | None = None
    random_weights: bool = False
    device: str = "auto"
    precision: str | None = None  #: None: the encoder's own choice on CUDA (bf16), fp32 on CPU
    batch_size: int = 64
    num_workers: int | None = None  #: DataLoader readers; None: chosen from the device and CPUs

    @classmethod
    def of(cls, encoder: EncoderSpec | str) -> EncoderSpec:
        """``encoder`` itself, or the spec of that encoder name with the defaults."""
        return encoder if isinstance(encoder, EncoderSpec) else cls(name=str(encoder))

    @property
    def key(self) -> str:
        """The spec string recorded in (and checked against) feature files."""
        return self.name.strip()

    def validate(self) -> None:
        """Refuse a batch below 1, an unknown precision or a negative worker count (ConfigError)."""
        if self.batch_size < 1:
            raise ConfigError(f"--batch-size: must be >= 1, got {self.batch_size}")
        if self.precision is not None and self.precision not in PRECISIONS:
            raise ConfigError(f"--precision: unknown {self.precision!r} (valid: {', '.join(PRECISIONS)})")
        if self.num_workers is not None and self.num_workers < 0:
            raise ConfigError(f"--num-workers: must be >= 0, got {self.num_workers}")


@dataclass(frozen=True)
class TilingSpec:
    """How whole slides are tiled: ``tile_size`` px at ``target_mpp`` (or ``magnification``: 20x =
    0.5 µm/px) over the tissue, or the tiles of CLAM/TRIDENT coords files in ``coords_dir``."""

    mpp: float | None = None  #: level-0 µm/px, overriding or supplying the slide's metadata
    target_mpp: float | None = None  #: None: 0.5 (20x), unless ``magnification`` is given
    magnification: float | None = None
    tile_size: int | None = None  #: None: the coords file's patch_size, or DEFAULT_TILE_SIZE when tiling
    overlap: int = 0
    min_tissue: float = DEFAULT_MIN_TISSUE
    coords_dir: Path | None = None
    preview: bool = False  #: also write <out>/previews/<slide>.png (mask and tiles)

    def resolved_target_mpp(self) -> float:
        """The tile resolution in µm/px (``magnification`` wins over ``target_mpp``)."""
        from hagekit.slides.tiling import target_mpp_from

        return target_mpp_from(self.target_mpp, self.magnification)

    def validate(self) -> None:
        """Refuse impossible tiling settings (ConfigError) or a missing coords folder (DataError)."""
        size = self.tile_size if self.tile_size is not None else DEFAULT_TILE_SIZE
        if not 8 <= size <= MAX_TILE_PX:
            raise ConfigError(f"--tile-size: must be 8 to {MAX_TILE_PX} px (a tile is read whole), got {size}")
        if not 0 <= self.overlap < size:
            raise ConfigError(f"--overlap: must be in [0, --tile-size={size}) px, got {self.overlap}")
        if not 0.0 <= self.min_tissue <= 1.0:
            raise ConfigError(f"--min-tissue: must be a fraction in [0, 1], got {self.min_tissue}")
        if self.mpp is not None and not self.mpp > 0:
            raise ConfigError(f"--mpp: must be positive µm per pixel, got {self.mpp}")
        if self.coords_dir is not None and not Path(self.coords_dir).is_dir():
            raise DataError(at(self.coords_dir, "--coords folder not found"))

    def options_given(self) -> list[str]:
        """The tiling options set away from their defaults (as CLI flags)."""
        given = {
            "--mpp": self.mpp is not None, "--target-mpp": self.target_mpp is not None,
            "--magnification": self.magnification is not None, "--coords": self.coords_dir is not None,
            "--preview": self.preview, "--tile-size": self.tile_size is not None, "--overlap": self.overlap != 0,
            "--min-tissue": not math.isclose(self.min_tissue, DEFAULT_MIN_TISSUE),
        }
        return [flag for flag, on in given.items() if on]


@dataclass(frozen=True)
class ExtractionSpec:
    """What to cut and where it goes: spot patches of ``patch_um`` µm (ST sections) or the
    ``tiling`` of whole slides, into ``out_dir``; resume (``overwrite``) and work sharing
    (``shard`` "K/N", ``lock_timeout`` seconds before another job's item lock is stale)."""

    out_dir: Path | None = None  #: None: the workspace's features folder
    patch_um: float = DEFAULT_PATCH_UM
    dump_patches: bool = False  #: spots: also write HEST patch files to <out>/patches/
    tiling: TilingSpec = field(default_factory=TilingSpec)
    overwrite: bool = False
    shard: str | None = None
    lock_timeout: float | None = None

    def spot_options_given(self) -> list[str]:
        """The spot-only options set away from their defaults (as CLI flags)."""
        given = {"--dump-patches": self.dump_patches, "--patch-um": not math.isclose(self.patch_um, DEFAULT_PATCH_UM)}
        return [flag for flag, on in given.items() if on]
