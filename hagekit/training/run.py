"""``train_run``: HAGE under the cross-validation protocol, from files to a run folder.

Settings resolve as defaults < recipe < config file (TOML or YAML) < explicit overrides (CLI
flags), by :func:`hagekit.config.resolve_layers`; the resolved settings are saved in the run's
``config.json``. Gene embeddings trained on a
held-out section are refused (or, with ``allow_leak``, used with a warning recorded in the run).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.config import RUN_KEYS, Layers, RunSettings, resolve_layers
from hagekit.errors import ConfigError, DataError, ProvenanceError, at
from hagekit.hage.model import HAGEConfig
from hagekit.progress import Reporter, reporter_or_null
from hagekit.study import StudyInputs

__all__ = ["TrainResult", "resolve_settings", "settings_from", "plan_gene_embeddings", "train_run"]

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What :func:`train_run` returns: the run folder, metric rows, summary and settings."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    config: HAGEConfig
    settings: RunSettings
    warnings: list[str] = field(default_factory=list)


def resolve_settings(
    config_file: Path | str | None = None, overrides: Mapping[str, Any] | None = None, *, dataset: str | None = None
) -> tuple[HAGEConfig, RunSettings]:
    """HAGE's config and the run settings after :func:`hagekit.config.resolve_layers`'s
    precedence (defaults < recipe < file < overrides; ``None`` override values mean 'not given').
    ``[baselines.<method>]`` tables are refused here: only ``bench`` runs other methods."""
    layers = resolve_layers(config_file, overrides, dataset=dataset)
    if layers.methods:
        layers.values["baselines"] = layers.methods
    return settings_from(layers)


def settings_from(layers: Layers) -> tuple[HAGEConfig, RunSettings]:
    """HAGE's config and the run settings from resolved ``layers`` (unknown keys refused)."""
    merged, source = layers.values, layers.source
    valid = set(HAGEConfig.field_names()) | set(RUN_KEYS)
    unknown = sorted(set(merged) - valid)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} (valid: {', '.join(sorted(valid))})")
    hage = HAGEConfig.from_dict({k: v for k, v in merged.items() if k in HAGEConfig.field_names()}, source=source)
    return hage, RunSettings.from_dict(merged, source=source)


def portable_path(path: Path | str, run_dir: Path | str) -> str:
    """``path`` as a run records it: relative to the run folder (so a moved or copied workspace
    keeps pointing at its own inputs); informational only, a rerun compares contents."""
    import os

    target, base = Path(path).resolve(), Path(run_dir).resolve()
    try:
        return os.path.relpath(target, base)
    except ValueError:  # another drive (Windows)
        return str(target)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_embedding_leak(
    embeddings_path: Path, test_sections: Sequence[str], *, allow_leak: bool
) -> list[str]:
    """Held-out sections the embeddings were trained on; raises unless ``allow_leak``."""
    from hagekit.genes.embeddings import embedding_training_sections

    trained_on = embedding_training_sections(embeddings_path)
    leak = sorted(set(trained_on) & set(test_sections))
    if leak and not allow_leak:
        raise ProvenanceError(
            at(
                embeddings_path,
                f"gene embeddings were trained on held-out section(s) {', '.join(leak)}; "
                "train them on other sections (`hagekit genes embed --sections ...`), let `hagekit train` "
                "or `hagekit bench` train them per fold (their default, unless --no-per-fold-embeddings), "
                "or pass --allow-leak",
            )
        )
    if leak:
        log.warning("%s: gene embeddings were trained on held-out section(s) %s (--allow-leak)",
                    embeddings_path, ", ".join(leak))
    return leak


def protocol_warnings(folds: Sequence[Any], settings: Any, embeddings_path: Path | None) -> tuple[list[str], list[str]]:
    """One-line warnings about the protocol (embeddings trained on a held-out section; the
    section split keeping the held-out patient's other sections) and the leaked sections."""
    warnings: list[str] = []
    leak: list[str] = []
    if embeddings_path is not None:
        test_sections = sorted({s for f in folds for s in f.test_sections})
        leak = check_embedding_leak(Path(embeddings_path), test_sections, allow_leak=settings.allow_leak)
        if leak:
            warnings.append(f"gene embeddings were trained on held-out section(s) {', '.join(leak)}")
    if settings.split == "section" and any(f.same_patient_in_train for f in folds):
        warnings.append("--split section keeps other sections of the held-out patient in training "
                        "(the paper's protocol); --split patient is leak-free")
    return warnings, list(leak)


def train_run(
    inputs: StudyInputs,
    out: Path | str,
    *,
    config_file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    sections: Sequence[str] | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> TrainResult:
    """Train and evaluate HAGE on every chosen fold x trial of ``inputs``; write the run folder ``out``.

    ``overrides`` holds HAGE settings (``d``, ``k1``, ``epochs``, ``use_ge``...) and run
    settings (``split``, ``folds``, ``trials``, ``seed``, ``val_fraction``, ``target``,
    ``allow_leak``); ``None`` values are ignored so that CLI defaults do not mask the file.
    """
    from hagekit.data.section import dataset_sections
    from hagekit.distributed import init_distributed
    from hagekit.genes.embeddings import embeddings_for_panel
    from hagekit.hage.estimator import HAGERegressor
    from hagekit.io.genelist import read_gene_list
    from hagekit.training.dataset import load_dataset
    from hagekit.training.protocol import ProtocolSettings, run_protocol
    from hagekit.training.splits import make_folds

    config, settings = resolve_settings(config_file, overrides, dataset=inputs.dataset)
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(at(out, "--out exists and is not a folder"))
    if inputs.embeddings_path is None:
        raise DataError("--gene-embeddings: HAGE needs the panel's gene embeddings")
    dataset_sections(inputs.data_root, inputs.dataset)  # an unknown dataset is named before its missing panel
    genes = read_gene_list(inputs.genes_path)
    emb = embeddings_for_panel(inputs.embeddings_path, genes)
    data = load_dataset(inputs.data_root, inputs.dataset, inputs.features_dir, genes, sections=sections,
                        target=settings.target, progress=progress)
    folds = make_folds(data.patients(), split=settings.split, folds=settings.folds)
    per_fold, warnings, leak = plan_gene_embeddings(folds, settings, inputs, genes=genes, dim=emb.shape[1],
                                                    progress=progress)
    reporter_or_null(progress).message(
        f"HAGE on {data.dataset}: {len(data.sections)} sections, {len(genes)} genes, "
        f"{data.feature_dim}-d {data.feature_attrs.get('encoder', '?')} features, "
        f"{len(folds)} fold(s) x {settings.trials} trial(s), d={config.d}, epochs={config.epochs}"
    )
    factory = _HAGEFactory(config, per_fold if per_fold is not None else emb, device)
    result = run_protocol(
        data,
        factory,
        ProtocolSettings(split=settings.split, folds=settings.folds, trials=settings.trials, seed=settings.seed,
                         val_fraction=settings.val_fraction, method="hage", out_dir=out,
                         config=_run_record(config, settings, inputs, out, dim=int(emb.shape[1]), leak=leak,
                                            per_fold=per_fold),
                         overwrite=overwrite),
        dist=init_distributed(device),
        progress=progress,
        estimator_type=HAGERegressor,  # resume checks saved models without per-fold embeddings
    )
    warnings.extend(_collapse_summary(factory.fitted))
    return TrainResult(out, result.rows, result.summary, config, settings, warnings)


class _HAGEFactory:
    """One :class:`~hagekit.hage.estimator.HAGERegressor` per fold x trial, with the fold's gene
    embeddings; keeps every estimator it built (for the collapse summary)."""

    def __init__(self, config: HAGEConfig, embeddings: Any, device: str) -> None:
        self.config, self.embeddings, self.device = config, embeddings, device
        self.fitted: list[Any] = []

    def __call__(self, ctx: Any) -> Any:
        from hagekit.genes.per_fold import embeddings_for
        from hagekit.hage.estimator import HAGERegressor

        est = HAGERegressor(self.config, embeddings_for(self.embeddings, ctx.train_sections), random_state=ctx.seed,
                            device=self.device, genes=list(ctx.genes), label=f"{ctx.fold} trial {ctx.trial}")
        self.fitted.append(est)
        return est


def _run_record(config: HAGEConfig, settings: RunSettings, inputs: StudyInputs, out: Path, *, dim: int,
                leak: list[str], per_fold: Any) -> dict[str, Any]:
    """What ``config.json`` records besides the protocol: HAGE's config and the inputs (paths
    relative to the run folder; the embeddings' checksum and provenance)."""
    from hagekit.genes.embeddings import embedding_training_sections

    emb_path = Path(inputs.embeddings_path)  # type: ignore[arg-type]
    return {
        "hage": config.to_dict(),
        "genes_path": portable_path(inputs.genes_path, out),
        "gene_embeddings": {
            "path": portable_path(emb_path, out),
            "sha256": file_sha256(emb_path),
            "dim": dim,
            "training_sections": sorted(embedding_training_sections(emb_path)),
            "allow_leak": settings.allow_leak,
            "leaked_sections": leak,
            "per_fold_cache": portable_path(per_fold.cache_dir, out) if per_fold is not None else None,
        },
        "data_root": portable_path(inputs.data_root, out),
        "features_dir": portable_path(inputs.features_dir, out),
    }


def plan_gene_embeddings(folds: Sequence[Any], settings: Any, inputs: StudyInputs, *, genes: Sequence[str],
                         dim: int, progress: Reporter | None = None) -> tuple[Any, list[str], list[str]]:
    """Which gene embeddings the folds' HAGE models get, shared by ``train`` and ``bench``.

    Returns ``(per_fold, warnings, leaked_sections)``: ``per_fold`` is a
    :class:`~hagekit.genes.per_fold.FoldEmbeddings` (cache ``<embeddings folder>/per_fold``) when
    the file was trained on a held-out section and ``settings.per_fold_embeddings`` is on (and not
    ``allow_leak``), else None and the file is used as is (refused when it leaks, unless
    ``allow_leak``). ``inputs.embeddings_path`` None: no method takes them, only the protocol warnings.
    """
    from hagekit.genes.embeddings import embedding_training_sections
    from hagekit.genes.per_fold import FoldEmbeddings

    per_fold = None
    embeddings_path = inputs.embeddings_path
    test_sections = {s for f in folds for s in f.test_sections}
    if (embeddings_path is not None and settings.per_fold_embeddings and not settings.allow_leak
            and embedding_training_sections(embeddings_path) & test_sections):
        per_fold = FoldEmbeddings(inputs.data_root, inputs.dataset, genes, dim=dim,
                                  cache_dir=Path(embeddings_path).parent / "per_fold", seed=settings.seed,
                                  progress=progress)
    warnings, leak = protocol_warnings(folds, settings, None if per_fold is not None else embeddings_path)
    if per_fold is not None:
        warnings.append(f"{Path(embeddings_path).name} was trained on held-out section(s); using per-fold embeddings "
                        f"trained on each fold's training sections (cached in {per_fold.cache_dir})")
    return per_fold, warnings, leak


def _collapse_summary(fitted: Sequence[Any]) -> list[str]:
    """One line when some fitted models ended with collapsed embeddings (``embedding_cosines_``)."""
    from hagekit.hage.model import collapse_message

    cos = [e.embedding_cosines_ for e in fitted if getattr(e, "embedding_cosines_", None)]
    bad = [c for c in cos if collapse_message(**c)]
    if not bad:
        return []
    worst = max(bad, key=lambda c: max(c.values()))
    return [f"{len(bad)} of {len(cos)} fits: " + str(collapse_message(**worst))]
