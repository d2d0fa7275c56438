"""Reading a trained HAGE run folder: settings, gene panel, feature provenance, model folders.

Below both its users (``hagekit.predict`` and the ``ge:`` encoder in
:mod:`hagekit.hage.ge_encoder`) so that neither imports the other. The files themselves are
read through :class:`hagekit.io.run_folder.RunFolder`, which also writes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, at
from hagekit.io.run_folder import RunFolder

__all__ = ["RunInfo", "load_run", "trained_on"]


@dataclass
class RunInfo:
    """A run folder as prediction sees it: settings, panel, feature provenance, models."""

    path: Path
    config: dict[str, Any]
    genes: list[str]
    feature_attrs: dict[str, Any]
    target: str
    models: dict[tuple[str, int], Path] = field(default_factory=dict)

    @property
    def folds(self) -> list[str]:
        return list(dict.fromkeys(f for f, _ in self.models))

    @property
    def folder(self) -> RunFolder:
        return RunFolder(self.path)


def load_run(run: Path | str) -> RunInfo:
    """Read a HAGE run folder (``config.json``, ``genes.txt``, ``<fold>/trial<k>/model.safetensors``)."""
    folder = RunFolder(Path(run))
    run = folder.path
    config = folder.read_config(missing="not a run folder (no config.json); train one with `hagekit train`")
    protocol = config.get("protocol", {})
    if protocol.get("method", "hage") != "hage":
        raise DataError(at(run, f"run of method {protocol.get('method')!r}, not a HAGE run"))
    genes = folder.read_genes()
    models = folder.trials_with("model.safetensors")
    if not models:
        raise DataError(at(run, "no trained models (<fold>/trial<k>/model.safetensors); is training finished?"))
    return RunInfo(run, config, genes, dict(protocol.get("features", {})),
                   str(protocol.get("target", "log1p_norm")), models)


def trained_on(info: RunInfo, fold: str) -> dict[str, list[str]]:
    """What fold ``fold``'s models saw: ``{"sections": [...], "patients": [...]}`` (sorted).

    Sections: the fold's training sections in ``splits.json`` (train and validation spots both
    come from them), plus the sections the gene-embedding file was trained on when the run
    used that file as is (per-fold embeddings are trained on the fold's own sections).
    Patients: read from the run's ``data_root`` section files (``metrics.csv`` as fallback).
    """
    settings = {**info.config, **dict(info.config.get("config", {}) or {})}  # train writes {protocol, config}
    sections: set[str] = set()
    splits = info.folder.read_splits()
    if splits is not None:
        for rec in splits.get("trials", []):
            if str(rec.get("name")) == str(fold):
                sections.update(str(s) for s in rec.get("train_sections", []))
    else:  # a run still training: its folds follow from the protocol's sections and split
        sections.update(_fold_train_sections(info, fold, settings))
    if not sections:
        raise DataError(at(info.folder.splits_path, f"no record of fold {fold}'s training sections"))
    emb = dict(settings.get("gene_embeddings", {}) or {})
    if not emb.get("per_fold_cache"):
        sections.update(str(s) for s in emb.get("training_sections", []) or [])
    patients = _section_patients(info, sections, settings)
    return {"sections": sorted(sections), "patients": sorted(set(patients.values())),
            "sections_without_patient": sorted(sections - set(patients))}


def _fold_train_sections(info: RunInfo, fold: str, settings: dict[str, Any]) -> list[str]:
    """Training sections of ``fold`` from config.json alone (as ``make_folds`` builds them)."""
    protocol = dict(info.config.get("protocol", {}) or {})
    every = [str(s) for s in protocol.get("sections", []) or []]
    if protocol.get("split", "section") == "section":
        return [s for s in every if s != str(fold)]
    patients = _section_patients(info, set(every), settings)
    if len(patients) < len(every):
        return []
    return [s for s in every if patients[s] != str(fold) and s != str(fold)]


def _section_patients(info: RunInfo, sections: set[str], settings: dict[str, Any]) -> dict[str, str]:
    out: dict[str, str] = {}
    root = settings.get("data_root")
    dataset = str(info.config.get("protocol", {}).get("dataset", "") or "")
    if root and dataset:
        from hagekit.data.section import section_info
        from hagekit.workspace import canonical_dataset

        # recorded relative to the run folder (runs of older versions: absolute)
        folder = (info.path / root if not Path(root).is_absolute() else Path(root)) / canonical_dataset(dataset)
        for s in sections:
            path = folder / f"{s}.h5ad"
            if path.is_file():
                try:
                    out[s] = section_info(path).patient
                except Exception:  # noqa: BLE001 - a damaged section only loses its patient here
                    continue
    for row in info.folder.metrics_rows():
        if row.get("section") in sections and row.get("patient"):
            out.setdefault(str(row["section"]), str(row["patient"]))
    return out
