"""``StudyInputs``: the five input paths of a study (train, bench, ablation, tune), resolved once.

A study reads one dataset's sections, its frozen image features, its gene panel and (for methods
that take them, such as HAGE) the panel's gene embeddings. Each path defaults to its place in
the workspace (``hagekit.workspace.Workspace``); a command's explicit option replaces it.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from hagekit.workspace import Workspace

__all__ = ["StudyInputs"]


@dataclass(frozen=True)
class StudyInputs:
    """Where a study's inputs are: ``data_root/<dataset>/<section>.h5ad``, the feature folder
    (``<section>.h5``), the gene panel and the gene embeddings (None: no method needs them)."""

    data_root: Path
    dataset: str
    features_dir: Path
    genes_path: Path
    embeddings_path: Path | None = None

    def __post_init__(self) -> None:
        for name in ("data_root", "features_dir", "genes_path"):
            object.__setattr__(self, name, Path(getattr(self, name)))
        if self.embeddings_path is not None:
            object.__setattr__(self, "embeddings_path", Path(self.embeddings_path))

    @classmethod
    def from_workspace(cls, workspace: Workspace, dataset: str, *, data_root: Path | str | None = None,
                       features_dir: Path | str | None = None, encoder: str = "builtin",
                       genes_path: Path | str | None = None,
                       embeddings_path: Path | str | None = None) -> StudyInputs:
        """The workspace's paths for ``dataset`` (features of ``encoder``), each replaced by the
        explicit one when given."""
        return cls(
            data_root=Path(data_root) if data_root is not None else workspace.data_root,
            dataset=dataset,
            features_dir=Path(features_dir) if features_dir is not None else workspace.features_dir(dataset, encoder),
            genes_path=Path(genes_path) if genes_path is not None else workspace.panel_path(dataset),
            embeddings_path=(Path(embeddings_path) if embeddings_path is not None
                             else workspace.embeddings_path(dataset)),
        )
