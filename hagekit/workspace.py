"""The default workspace: one root folder through which commands chain without paths.

Layout::

    <root>/data/<dataset>/<section>.h5ad
    <root>/genes/<dataset>/{panel.txt, embeddings.txt}
    <root>/features/<dataset>/<encoder>/<section>.h5
    <root>/runs/<dataset>/<name>/

The root is ``--workspace`` if given, else ``$HAGEKIT_HOME``, else ``./hagekit-work``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from hagekit.errors import ConfigError
from hagekit.io.paths import child_path

__all__ = ["Workspace", "canonical_dataset", "encoder_slug", "DATASET_ALIASES"]

DEFAULT_ROOT = "hagekit-work"
ENV_VAR = "HAGEKIT_HOME"

#: Names users type -> the folder name the dataset lives under.
DATASET_ALIASES = {
    "her2": "her2",
    "her2st": "her2",
    "her2+": "her2",
    "cscc": "cscc",
    "synth": "synth",
    "synthetic": "synth",
}


def canonical_dataset(name: str) -> str:
    """Map a dataset name users type (``her2st``, ``her2``) to its folder name.

    Unknown names (a Visium or HEST dataset the user named) are kept as given after a
    check that they are safe folder names.
    """
    key = name.strip().lower()
    if key in DATASET_ALIASES:
        return DATASET_ALIASES[key]
    if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", name.strip()):
        raise ConfigError(f"--dataset: {name!r} is not a valid dataset name (letters, digits, ._-)")
    return name.strip()


def encoder_slug(encoder: str) -> str:
    """A folder-safe name for an encoder spec (``timm:vit_small`` -> ``timm-vit_small``)."""
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", encoder.strip()).strip("-")
    return slug or "encoder"


@dataclass(frozen=True)
class Workspace:
    """Paths of one workspace root; every path here can be overridden by an explicit option."""

    root: Path

    @classmethod
    def resolve(cls, root: Path | str | None = None) -> Workspace:
        """Pick the root: explicit argument, then ``$HAGEKIT_HOME``, then ``./hagekit-work``."""
        if root is None or str(root) == "":
            root = os.environ.get(ENV_VAR) or DEFAULT_ROOT
        return cls(Path(root).expanduser())

    @property
    def data_root(self) -> Path:
        return self.root / "data"

    def dataset_dir(self, dataset: str) -> Path:
        return self.data_root / canonical_dataset(dataset)

    def section_path(self, dataset: str, section: str) -> Path:
        return child_path(self.dataset_dir(dataset), f"{section}.h5ad", what="section")

    def genes_dir(self, dataset: str) -> Path:
        return self.root / "genes" / canonical_dataset(dataset)

    def panel_path(self, dataset: str) -> Path:
        return self.genes_dir(dataset) / "panel.txt"

    def embeddings_path(self, dataset: str) -> Path:
        return self.genes_dir(dataset) / "embeddings.txt"

    def features_dir(self, dataset: str, encoder: str) -> Path:
        return child_path(self.root / "features" / canonical_dataset(dataset), encoder_slug(encoder), what="--encoder")

    def runs_dir(self, dataset: str) -> Path:
        return self.root / "runs" / canonical_dataset(dataset)

    def run_dir(self, dataset: str, name: str) -> Path:
        """``<root>/runs/<dataset>/<name>``; a ``--name`` that would leave that folder is refused."""
        return child_path(self.runs_dir(dataset), name, what="--name")
