"""``train_run``: HAGE under the cross-validation protocol, from files to a run folder.

Settings resolve as defaults < config file (TOML or YAML) < explicit overrides (CLI flags);
the resolved settings are saved in the run's ``config.json``. Gene embeddings trained on a
held-out section are refused (or, with ``allow_leak``, used with a warning recorded in the run).
"""

from __future__ import annotations

import hashlib
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.errors import ConfigError, DataError, ProvenanceError, at
from hagekit.hage.model import HAGEConfig
from hagekit.progress import Reporter, reporter_or_null

__all__ = ["RunSettings", "TrainResult", "RUN_KEYS", "RECIPES", "load_config_file", "load_recipe", "resolve_settings",
           "plan_gene_embeddings", "train_run"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RunSettings:
    """Protocol settings of a run (the HAGE hyper-parameters live in :class:`HAGEConfig`)."""

    split: str = "section"
    folds: tuple[str, ...] | None = None
    trials: int = 5
    seed: int = 0
    val_fraction: float = 0.2
    target: str = "log1p_norm"
    allow_leak: bool = False
    per_fold_embeddings: bool = True
    """When the gene embeddings were trained on a held-out section (and ``allow_leak`` is off),
    train leak-free embeddings per fold on its training sections instead of refusing."""


RUN_KEYS = ("split", "folds", "trials", "seed", "val_fraction", "target", "allow_leak", "per_fold_embeddings")
RECIPES = ("default", "paper")
"""Shipped recipes: ``default`` (:class:`HAGEConfig`'s defaults, chosen by ``bench tune``) and
``paper`` (``hagekit/recipes/paper.toml``: the paper's literal settings)."""


@dataclass
class TrainResult:
    """What :func:`train_run` returns: the run folder, metric rows, summary and settings."""

    out_dir: Path
    rows: list[dict[str, Any]]
    summary: dict[str, Any]
    config: HAGEConfig
    settings: RunSettings
    warnings: list[str] = field(default_factory=list)


def load_config_file(path: Path | str) -> dict[str, Any]:
    """Read a TOML (``.toml``) or YAML (``.yaml``/``.yml``) config into a flat dict.

    Keys may sit at the top level or in ``[hage]`` / ``[run]`` tables.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(at(path, "config file not found"))
    suffix = path.suffix.lower()
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(path.read_text(encoding="utf-8"))
        elif suffix in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        else:
            raise ConfigError(at(path, "config must be .toml, .yaml or .yml"))
    except ConfigError:
        raise
    except Exception as exc:  # tomllib/yaml parse errors
        raise ConfigError(at(path, f"cannot parse config ({type(exc).__name__}: {exc})".replace("\n", " "))) from None
    if not isinstance(data, dict):
        raise ConfigError(at(path, "config must be a mapping of settings"))
    flat: dict[str, Any] = {}
    for key, value in data.items():
        if key in ("hage", "run") and isinstance(value, dict):
            flat.update(value)
        else:
            flat[key] = value
    return flat


def load_recipe(recipe: str | Path, dataset: str | None = None) -> dict[str, Any]:
    """Settings of a recipe: a shipped name (:data:`RECIPES`) or a TOML/YAML file. A recipe's
    ``[datasets.<name>]`` table applies on top when ``dataset`` is that name."""
    name = str(recipe)
    if name == "default":
        return {}
    path = Path(__file__).resolve().parent.parent / "recipes" / f"{name}.toml" if name in RECIPES else Path(name)
    if name not in RECIPES and not path.is_file():
        raise ConfigError(f"--recipe: {name!r} is neither a shipped recipe ({', '.join(RECIPES)}) nor a config file")
    flat = load_config_file(path)
    per_dataset = flat.pop("datasets", {}) or {}
    if dataset and isinstance(per_dataset, dict) and isinstance(per_dataset.get(dataset), dict):
        flat.update(per_dataset[dataset])
    return flat


def resolve_settings(
    config_file: Path | str | None = None, overrides: Mapping[str, Any] | None = None, *, dataset: str | None = None
) -> tuple[HAGEConfig, RunSettings]:
    """Defaults < recipe < file < overrides (``None`` override values mean 'not given').

    The recipe is the ``recipe`` key of the file or of the overrides (``--recipe``)."""
    merged: dict[str, Any] = {}
    source = "config"
    if config_file is not None:
        merged.update(load_config_file(config_file))
        source = str(config_file)
    for key, value in (overrides or {}).items():
        if value is not None:
            merged[key] = value
    recipe = merged.pop("recipe", None)
    if recipe is not None:
        merged = {**load_recipe(recipe, dataset), **merged}
    for key, value in merged.items():
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{source}: {key} must be a finite number, got {value}")
    valid = set(HAGEConfig.field_names()) | set(RUN_KEYS)
    unknown = sorted(set(merged) - valid)
    if unknown:
        raise ConfigError(f"{source}: unknown setting(s) {', '.join(unknown)} (valid: {', '.join(sorted(valid))})")
    hage = HAGEConfig.from_dict({k: v for k, v in merged.items() if k in HAGEConfig.field_names()}, source=source)
    run_vals = {k: merged[k] for k in RUN_KEYS if k in merged}
    folds = run_vals.get("folds")
    if isinstance(folds, str):
        folds = [f.strip() for f in folds.split(",") if f.strip()]
    try:
        settings = RunSettings(
            split=str(run_vals.get("split", "section")),
            folds=tuple(str(f) for f in folds) if folds else None,
            trials=int(run_vals.get("trials", 5)),
            seed=int(run_vals.get("seed", 0)),
            val_fraction=float(run_vals.get("val_fraction", 0.2)),
            target=str(run_vals.get("target", "log1p_norm")),
            allow_leak=_as_bool(run_vals.get("allow_leak", False)),
            per_fold_embeddings=_as_bool(run_vals.get("per_fold_embeddings", True)),
        )
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{source}: invalid run setting ({exc})") from None
    if settings.trials < 1:
        raise ConfigError(f"--trials: must be >= 1, got {settings.trials}")
    if settings.seed < 0:
        raise ConfigError(f"{source}: seed must be >= 0, got {settings.seed}")
    if not 0.0 < settings.val_fraction < 1.0:
        raise ConfigError(f"{source}: val_fraction (--val-fraction) must be in (0, 1), got {settings.val_fraction}")
    return hage, settings


def _as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return bool(value)


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
    *,
    data_root: Path | str,
    dataset: str,
    features_dir: Path | str,
    genes_path: Path | str,
    embeddings_path: Path | str,
    out: Path | str,
    config_file: Path | str | None = None,
    overrides: Mapping[str, Any] | None = None,
    sections: Sequence[str] | None = None,
    device: str = "auto",
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> TrainResult:
    """Train and evaluate HAGE on every chosen fold x trial; write the run folder ``out``.

    ``overrides`` holds HAGE settings (``d``, ``k1``, ``epochs``, ``use_ge``...) and run
    settings (``split``, ``folds``, ``trials``, ``seed``, ``val_fraction``, ``target``,
    ``allow_leak``); ``None`` values are ignored so that CLI defaults do not mask the file.
    """
    from hagekit.data.section import dataset_sections
    from hagekit.distributed import init_distributed
    from hagekit.genes.embeddings import embedding_training_sections, embeddings_for_panel
    from hagekit.genes.per_fold import embeddings_for
    from hagekit.hage.estimator import HAGERegressor
    from hagekit.io.genelist import read_gene_list
    from hagekit.training.dataset import load_dataset
    from hagekit.training.protocol import FoldContext, ProtocolSettings, run_protocol
    from hagekit.training.splits import make_folds

    config, settings = resolve_settings(config_file, overrides, dataset=dataset)
    genes_path, embeddings_path, out = Path(genes_path), Path(embeddings_path), Path(out)
    if out.exists() and not out.is_dir():
        raise DataError(at(out, "--out exists and is not a folder"))
    dataset_sections(data_root, dataset)  # an unknown dataset is named before its missing panel
    genes = read_gene_list(genes_path)
    emb = embeddings_for_panel(embeddings_path, genes)
    data = load_dataset(data_root, dataset, features_dir, genes, sections=sections,
                        target=settings.target, progress=progress)
    folds = make_folds(data.patients(), split=settings.split, folds=settings.folds)
    per_fold, warnings, leak = plan_gene_embeddings(folds, settings, embeddings_path, data_root=data_root,
                                                    dataset=dataset, genes=genes, dim=emb.shape[1],
                                                    progress=progress)
    run_config = {
        "hage": config.to_dict(),
        "genes_path": portable_path(genes_path, out),
        "gene_embeddings": {
            "path": portable_path(embeddings_path, out),
            "sha256": file_sha256(embeddings_path),
            "dim": int(emb.shape[1]),
            "training_sections": sorted(embedding_training_sections(embeddings_path)),
            "allow_leak": settings.allow_leak,
            "leaked_sections": leak,
            "per_fold_cache": portable_path(per_fold.cache_dir, out) if per_fold is not None else None,
        },
        "data_root": portable_path(data_root, out),
        "features_dir": portable_path(features_dir, out),
    }
    rep = reporter_or_null(progress)
    rep.message(
        f"HAGE on {data.dataset}: {len(data.sections)} sections, {len(genes)} genes, "
        f"{data.feature_dim}-d {data.feature_attrs.get('encoder', '?')} features, "
        f"{len(folds)} fold(s) x {settings.trials} trial(s), d={config.d}, epochs={config.epochs}"
    )

    fitted: list[HAGERegressor] = []

    def factory(ctx: FoldContext) -> HAGERegressor:
        fold_emb = embeddings_for(per_fold if per_fold is not None else emb, ctx.train_sections)
        est = HAGERegressor(config, fold_emb, random_state=ctx.seed, device=device, genes=list(ctx.genes),
                            label=f"{ctx.fold} trial {ctx.trial}")
        fitted.append(est)
        return est

    result = run_protocol(
        data,
        factory,
        ProtocolSettings(split=settings.split, folds=settings.folds, trials=settings.trials, seed=settings.seed,
                         val_fraction=settings.val_fraction, method="hage", out_dir=out, config=run_config,
                         overwrite=overwrite),
        dist=init_distributed(device),
        progress=progress,
        estimator_type=HAGERegressor,  # resume checks saved models without per-fold embeddings
    )
    warnings.extend(_collapse_summary(fitted))
    return TrainResult(out, result.rows, result.summary, config, settings, warnings)


def plan_gene_embeddings(folds: Sequence[Any], settings: Any, embeddings_path: Path | None, *,
                         data_root: Path | str, dataset: str, genes: Sequence[str], dim: int,
                         progress: Reporter | None = None) -> tuple[Any, list[str], list[str]]:
    """Which gene embeddings the folds' HAGE models get, shared by ``train`` and ``bench``.

    Returns ``(per_fold, warnings, leaked_sections)``: ``per_fold`` is a
    :class:`~hagekit.genes.per_fold.FoldEmbeddings` (cache ``<embeddings folder>/per_fold``) when
    the file was trained on a held-out section and ``settings.per_fold_embeddings`` is on (and not
    ``allow_leak``), else None and the file is used as is (refused when it leaks, unless
    ``allow_leak``). ``embeddings_path`` None: no HAGE, only the protocol warnings.
    """
    from hagekit.genes.embeddings import embedding_training_sections
    from hagekit.genes.per_fold import FoldEmbeddings

    per_fold = None
    test_sections = {s for f in folds for s in f.test_sections}
    if (embeddings_path is not None and settings.per_fold_embeddings and not settings.allow_leak
            and embedding_training_sections(embeddings_path) & test_sections):
        per_fold = FoldEmbeddings(data_root, dataset, genes, dim=dim, cache_dir=Path(embeddings_path).parent / "per_fold",
                                  seed=settings.seed, progress=progress)
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
