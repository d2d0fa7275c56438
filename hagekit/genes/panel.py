"""Gene panels by highly variable genes (HVG): per-section top-N, combined by a rule.

Procedure (the paper's text and its lineage): restrict to genes present in every chosen
section; per section normalise total counts (1e4), log1p, take the top-N HVGs with scanpy
(flavor selectable); combine across sections (``intersect`` | ``union`` |
``min-sections:K``); optionally keep genes detected in at least N spots overall; optionally
keep genes in an embedding vocabulary. Every step's survivors are recorded; when a step
empties the panel, the result says which step (and which section) did it and which rule
would not.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, track

if TYPE_CHECKING:
    import anndata

__all__ = [
    "FLAVORS",
    "PanelSettings",
    "PanelRequest",
    "keep_existing_panel",
    "PanelStep",
    "PanelResult",
    "parse_rule",
    "select_panel",
    "panel_from_sections",
    "write_panel",
    "jaccard",
]

log = logging.getLogger(__name__)

#: scanpy ``highly_variable_genes`` flavors offered (seurat_v3 needs scikit-misc).
FLAVORS: tuple[str, ...] = ("seurat", "cell_ranger", "seurat_v3")
RULES_HELP = "intersect | union | min-sections:K"


@dataclass(frozen=True)
class PanelStep:
    """One row of the survival table: a step, the genes left after it, and a note."""

    step: str
    n_genes: int
    detail: str = ""


@dataclass
class PanelResult:
    """A selected panel with its per-step survival table and, if empty, the diagnosis."""

    genes: list[str]
    steps: list[PanelStep]
    sections: list[str]
    settings: dict[str, Any]
    emptied_by: str | None = None
    diagnosis: str = ""
    #: per rule (``intersect``, ``union``, ``min-sections:K``) -> final panel size with the same later steps
    alternatives: dict[str, int] = field(default_factory=dict)
    #: gene -> in how many sections it is a top-N HVG
    hvg_sections: dict[str, int] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.genes

    def table(self) -> list[dict[str, Any]]:
        """The survival table as plain rows (step, genes, detail)."""
        return [{"step": s.step, "genes": s.n_genes, "detail": s.detail} for s in self.steps]


def jaccard(a: Sequence[str], b: Sequence[str]) -> float:
    """Jaccard index |A ∩ B| / |A ∪ B| of two gene sets (case-sensitive symbols)."""
    sa, sb = set(a), set(b)
    union = sa | sb
    return len(sa & sb) / len(union) if union else 0.0


def parse_rule(rule: str, n_sections: int | None = None) -> tuple[str, int]:
    """``intersect`` -> ("min-sections", n), ``union`` -> 1, ``min-sections:K`` -> K (validated)."""
    text = rule.strip().lower()
    n = n_sections if n_sections is not None else 1
    if text in ("intersect", "intersection", "all"):
        return "intersect", n
    if text in ("union", "any"):
        return "union", 1
    m = re.fullmatch(r"min-sections:(\d+)", text)
    if not m:
        raise ConfigError(f"--rule: unknown rule {rule!r} (choose {RULES_HELP})")
    k = int(m.group(1))
    if k < 1 or (n_sections is not None and k > n_sections):
        raise ConfigError(f"--rule: K={k} must be between 1 and the number of sections ({n_sections})")
    return f"min-sections:{k}", k


@dataclass(frozen=True)
class PanelSettings:
    """How an HVG panel is selected: top-N per section, scanpy flavor, combining rule, filters."""

    top: int = 1000
    flavor: str = "seurat"
    rule: str = "intersect"
    min_spots: int | None = None
    vocab: Path | str | None = None

    def validate(self) -> None:
        """One line naming the option for each bad setting (a missing ``--vocab`` file too)."""
        if self.top < 1:
            raise ConfigError(f"--top: must be a positive number of genes, got {self.top}")
        if self.flavor not in FLAVORS:
            raise ConfigError(f"--flavor: unknown flavor {self.flavor!r} (choose {', '.join(FLAVORS)})")
        parse_rule(self.rule)
        if self.min_spots is not None and self.min_spots < 0:
            raise ConfigError(f"--min-spots: must be >= 0, got {self.min_spots}")
        if self.vocab is not None and not Path(self.vocab).is_file():
            raise DataError(at(self.vocab, "embeddings file for --vocab not found"))
        if self.flavor == "seurat_v3":
            import importlib.util

            if importlib.util.find_spec("skmisc") is None:
                raise ConfigError("--flavor: seurat_v3 needs scikit-misc (pip install scikit-misc); or use seurat, cell_ranger")


def select_panel(
    data_root: Path | str,
    dataset: str,
    settings: PanelSettings = PanelSettings(),
    *,
    sections: Sequence[str] | None = None,
    progress: Reporter | None = None,
) -> PanelResult:
    """Select an HVG panel from a prepared dataset's sections (all sections when None).

    Never raises for an empty result: the returned :class:`PanelResult` carries the
    diagnosis; :func:`write_panel` refuses to write it.
    """
    from hagekit.genes._sections import load_sections
    from hagekit.workspace import canonical_dataset

    settings.validate()
    loaded = load_sections(data_root, dataset, sections, progress=progress)
    result = panel_from_sections(loaded, settings, progress=progress)
    result.settings = {"dataset": canonical_dataset(dataset), "data_root": str(Path(data_root)), **result.settings}
    return result


@dataclass(frozen=True)
class PanelRequest:
    """The settings ``genes select`` was asked for (``sections`` None: all of the dataset's)."""

    dataset: str
    settings: PanelSettings = PanelSettings()
    sections: tuple[str, ...] | None = None

    def differences(self, stored: dict[str, Any]) -> list[str]:
        """``name: <stored> there, <asked> asked`` for every setting that differs from ``stored``."""
        from hagekit.workspace import canonical_dataset

        st = self.settings
        asked: dict[str, Any] = {
            "dataset": canonical_dataset(self.dataset), "top": st.top, "flavor": st.flavor,
            "rule": parse_rule(st.rule)[0],
            "min_spots": st.min_spots, "vocab": Path(st.vocab).name if st.vocab is not None else None,
        }
        there = dict(stored)
        there["vocab"] = Path(str(there["vocab"])).name if there.get("vocab") else None
        if self.sections is not None:
            asked["sections"], there["sections"] = ",".join(self.sections), ",".join(stored.get("sections") or [])
        return [f"{k}: {there.get(k)} there, {v} asked" for k, v in asked.items() if k in there and there.get(k) != v]


def keep_existing_panel(out: Path, request: PanelRequest) -> bool:
    """True when ``out`` exists and was selected with the settings of ``request`` (or carries no
    settings to compare); a panel selected otherwise raises one line naming the differences.
    The request is validated first, so a missing ``--vocab`` file is an error either way."""
    import json

    from hagekit.genes.embeddings import sidecar_path

    request.settings.validate()
    if not out.exists():
        return False
    side = sidecar_path(out)
    try:
        stored = json.loads(side.read_text(encoding="utf-8")).get("settings", {}) if side.is_file() else None
    except (OSError, ValueError):
        stored = None
    if not isinstance(stored, dict):
        log.warning("%s: exists without its settings (%s), kept", out, side.name)
        return True
    diff = request.differences(stored)
    if diff:
        raise ConfigError(at(out, f"exists, selected with other settings ({'; '.join(diff)}); "
                                  "pass --overwrite to select again, or --out for another file"))
    return True


def _hvg_ranking(adata: anndata.AnnData, columns: list[int], top: int, flavor: str) -> list[int]:
    """Positions (into ``columns``) of the section's top-N HVGs, best first."""
    import warnings

    import anndata as ad
    import pandas as pd
    import scanpy as sc

    from hagekit.genes._sections import NORM_SCALE

    X = adata.X[:, columns].astype(np.float32)
    sub = ad.AnnData(X=X, var=pd.DataFrame(index=pd.Index([str(i) for i in range(len(columns))])))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if flavor == "seurat_v3":
            sc.pp.highly_variable_genes(sub, n_top_genes=top, flavor="seurat_v3")
            score = sub.var["variances_norm"].to_numpy()
        else:
            sc.pp.normalize_total(sub, target_sum=NORM_SCALE)
            sc.pp.log1p(sub)
            sc.pp.highly_variable_genes(sub, n_top_genes=top, flavor=flavor)
            score = sub.var["dispersions_norm"].to_numpy()
    chosen = np.flatnonzero(sub.var["highly_variable"].to_numpy())
    order = sorted(chosen.tolist(), key=lambda i: (-np.nan_to_num(score[i], nan=-np.inf), i))
    return order


def _settings_record(settings: PanelSettings, rule_name: str, names: list[str]) -> dict[str, Any]:
    """The settings a panel's sidecar records."""
    return {
        "top": settings.top,
        "flavor": settings.flavor,
        "rule": rule_name,
        "min_spots": settings.min_spots,
        "vocab": str(settings.vocab) if settings.vocab is not None else None,
        "normalisation": "normalize_total(1e4) + log1p per section (seurat_v3: raw counts)",
        "sections": names,
    }


def _shared_genes(sections: Mapping[str, anndata.AnnData], top: int, steps: list[PanelStep]) -> list[str]:
    """Step 1: the genes present in every section (refused when fewer than ``top``)."""
    from hagekit.genes._sections import common_genes

    names = list(sections)
    sizes = {s: int(sections[s].n_vars) for s in names}
    smallest = min(names, key=lambda s: sizes[s])
    steps.append(PanelStep("genes per section", sizes[smallest], f"min {sizes[smallest]} ({smallest}), max {max(sizes.values())}"))
    if sizes[smallest] < top:
        raise ConfigError(
            f"--top: section {smallest} has only {sizes[smallest]} genes, fewer than --top {top} "
            f"(choose --top <= {sizes[smallest]})"
        )
    shared = common_genes(sections)
    steps.append(PanelStep(f"shared by all {len(names)} sections", len(shared)))
    if len(shared) < top:
        raise ConfigError(
            f"--top: only {len(shared)} genes are shared by all {len(names)} sections, fewer than --top {top} "
            f"(section {smallest} has the fewest genes, {sizes[smallest]}; choose --top <= {len(shared)})"
        )
    return shared


@dataclass
class _HvgTally:
    """Step 2's per-section HVG sets, each gene's ranks and how many spots detect it."""

    hvg_sets: list[set[str]]
    ranks: dict[str, list[int]]
    spots_of: dict[str, int]

    @property
    def hvg_count(self) -> dict[str, int]:
        return {g: len(r) for g, r in self.ranks.items()}


def _tally_hvgs(
    sections: Mapping[str, anndata.AnnData], shared: list[str], settings: PanelSettings, progress: Reporter | None
) -> _HvgTally:
    """Step 2: each section's top-N HVGs on the shared genes."""
    hvg_sets: list[set[str]] = []
    ranks: dict[str, list[int]] = {}
    spot_counts = np.zeros(len(shared), dtype=np.int64)
    for s in track(list(sections), f"HVGs ({settings.flavor}, top {settings.top})", progress=progress):
        adata = sections[s]
        pos = adata.var_names.get_indexer(shared)
        order = _hvg_ranking(adata, pos.tolist(), settings.top, settings.flavor)
        hvg_sets.append({shared[i] for i in order})
        for r, i in enumerate(order):
            ranks.setdefault(shared[i], []).append(r)
        spot_counts += np.asarray((adata.X[:, pos] > 0).sum(axis=0)).ravel()
    return _HvgTally(hvg_sets, ranks, dict(zip(shared, spot_counts.tolist(), strict=True)))


@dataclass
class _Combined:
    """Step 3's result, with who removed the most genes (and who emptied it) under ``intersect``."""

    genes: set[str]
    most_removed: tuple[str, int] | None = None
    emptied_section: str | None = None


def _intersect(names: list[str], hvg_sets: list[set[str]], top: int, steps: list[PanelStep]) -> _Combined:
    """Intersect the sections' HVG sets in order, one survival row per section."""
    out = _Combined(set(hvg_sets[0]))
    steps.append(PanelStep(f"top-{top} HVGs of {names[0]}", len(out.genes)))
    after_empty: list[str] = []
    for s, hv in zip(names[1:], hvg_sets[1:], strict=True):
        if out.emptied_section is not None or not out.genes:
            after_empty.append(s)  # nothing left to remove: one summary row below
            continue
        before = len(out.genes)
        out.genes &= hv
        removed = before - len(out.genes)
        steps.append(PanelStep(f"∩ top-{top} HVGs of {s}", len(out.genes), f"-{removed}" if removed else ""))
        if out.most_removed is None or removed > out.most_removed[1]:
            out.most_removed = (s, removed)
        if not out.genes:
            out.emptied_section = s
    if after_empty:
        span = after_empty[0] if len(after_empty) == 1 else f"{after_empty[0]}..{after_empty[-1]}"
        steps.append(PanelStep(f"∩ top-{top} HVGs of {span}", 0, f"{len(after_empty)} more sections, already empty"))
    return out


def _combine(names: list[str], tally: _HvgTally, rule: tuple[str, int], top: int, steps: list[PanelStep]) -> _Combined:
    """Step 3: combine the sections' HVGs by the rule (``intersect``, ``union``, ``min-sections:K``)."""
    rule_name, k_rule = rule
    if rule_name == "intersect":
        return _intersect(names, tally.hvg_sets, top, steps)
    if rule_name == "union":
        current: set[str] = set()
        for s, hv in zip(names, tally.hvg_sets, strict=True):
            before = len(current)
            current |= hv
            steps.append(PanelStep(f"∪ top-{top} HVGs of {s}", len(current), f"+{len(current) - before}"))
        return _Combined(current)
    hvg_count = tally.hvg_count
    combined = {g for g, c in hvg_count.items() if c >= k_rule}
    steps.append(PanelStep(f"top-{top} HVG in >= {k_rule} of {len(names)} sections", len(combined),
                           f"max {max(hvg_count.values(), default=0)} sections"))
    return _Combined(combined)


def _vocabulary(vocab: Path | str | None, shared: list[str]) -> set[str] | None:
    """The shared genes the ``--vocab`` embeddings file has (None without ``--vocab``)."""
    if vocab is None:
        return None
    from hagekit.genes.embeddings import load_gene_embeddings, match_symbols

    emb = load_gene_embeddings(vocab)
    absent = set(match_symbols(shared, emb.symbols)[1])
    symbols = {g for g in shared if g not in absent}
    log.info("%s: %d of %d shared genes in the vocabulary", vocab, len(symbols), len(shared))
    return symbols


def _filtered(genes: set[str], settings: PanelSettings, spots_of: dict[str, int], vocab_symbols: set[str] | None,
              steps: list[PanelStep] | None = None) -> set[str]:
    """Steps 4/5, the same for every rule: ``--min-spots`` then ``--vocab`` (rows added to ``steps`` if given)."""
    out = genes
    if settings.min_spots is not None:
        out = {g for g in out if spots_of[g] >= settings.min_spots}
        if steps is not None:
            steps.append(PanelStep(f"detected in >= {settings.min_spots} spots (all sections)", len(out)))
    if vocab_symbols is not None:
        out = out & vocab_symbols
        if steps is not None:
            steps.append(PanelStep(f"in the vocabulary of {Path(settings.vocab).name}", len(out)))  # type: ignore[arg-type]
    return out


def _alternatives(n: int, hvg_count: dict[str, int], later: Any) -> dict[str, int]:
    """Final panel size under each rule, with the same later filters."""
    alternatives: dict[str, int] = {"intersect": len(later({g for g, c in hvg_count.items() if c >= n}))}
    alternatives["union"] = len(later(set(hvg_count)))
    for k in range(2, n):
        alternatives[f"min-sections:{k}"] = len(later({g for g, c in hvg_count.items() if c >= k}))
    return alternatives


def panel_from_sections(
    sections: Mapping[str, anndata.AnnData],
    settings: PanelSettings = PanelSettings(),
    *,
    progress: Reporter | None = None,
) -> PanelResult:
    """Select an HVG panel from in-memory sections (name -> AnnData of raw counts)."""
    settings.validate()
    names = list(sections)
    if not names:
        raise ConfigError("--sections: no sections chosen")
    rule_name, k_rule = parse_rule(settings.rule, len(names))
    n, top = len(names), settings.top
    steps: list[PanelStep] = []
    shared = _shared_genes(sections, top, steps)
    tally = _tally_hvgs(sections, shared, settings, progress)
    hvg_count = tally.hvg_count
    combined = _combine(names, tally, (rule_name, k_rule), top, steps)
    combine_step = steps[-1].step
    vocab_symbols = _vocabulary(settings.vocab, shared)
    final = _filtered(combined.genes, settings, tally.spots_of, vocab_symbols, steps)
    alternatives = _alternatives(n, hvg_count, lambda g: _filtered(g, settings, tally.spots_of, vocab_symbols))
    genes = sorted(final, key=lambda g: (-hvg_count[g], float(np.mean(tally.ranks[g])), g))
    result = PanelResult(genes, steps, names, _settings_record(settings, rule_name, names),
                         alternatives=alternatives, hvg_sections=hvg_count)
    if not genes:
        result.emptied_by = next((st.step for st in steps if st.n_genes == 0), steps[-1].step)
        result.diagnosis = _diagnose(
            result, combine_step, rule_name, k_rule, n, top, combined.most_removed, combined.emptied_section,
            settings.min_spots, settings.vocab, combined.genes, tally.spots_of,
        )
    return result


def _suggest(result: PanelResult, top: int) -> str:
    """The strictest alternative rule that keeps at least half of ``top`` genes (or the most)."""
    alts = result.alternatives
    best_possible = max(alts.values(), default=0)
    if best_possible == 0:
        return ""
    target = min(max(1, top // 2), best_possible)
    ks = sorted(
        ((int(name.split(":")[1]) if ":" in name else (1 if name == "union" else len(result.sections)), name, count)
         for name, count in alts.items()),
        reverse=True,
    )
    for _, name, count in ks:
        if count >= target:
            return f"--rule {name} keeps {count} genes (--rule union keeps {alts['union']})"
    return f"--rule union keeps {alts['union']} genes"


def _diagnose(
    result: PanelResult,
    combine_step: str,
    rule_name: str,
    k_rule: int,
    n: int,
    top: int,
    most_removed: tuple[str, int] | None,
    emptied_section: str | None,
    min_spots: int | None,
    vocab: Path | str | None,
    combined: set[str],
    spots_of: dict[str, int],
) -> str:
    suggestion = _suggest(result, top)
    tail = f"; {suggestion}" if suggestion else ""
    if not combined:
        if rule_name == "intersect":
            who = f"section {most_removed[0]} removed the most genes (-{most_removed[1]})" if most_removed else ""
            last = f", {emptied_section} emptied it" if emptied_section else ""
            return f"the intersection of per-section top-{top} HVGs over {n} sections is empty: {who}{last}{tail}"
        most = max(result.hvg_sections.values(), default=0)
        return f"no gene is a top-{top} HVG in >= {k_rule} of {n} sections (the most is {most}){tail}"
    if min_spots is not None:
        survivors = {g for g in combined if spots_of[g] >= min_spots}
        if not survivors:
            most = max(spots_of[g] for g in combined)
            return (f"--min-spots {min_spots} removed all {len(combined)} genes of '{combine_step}' "
                    f"(the most detected is in {most} spots); lower --min-spots{tail}")
        combined = survivors
    return (f"none of the {len(combined)} candidate genes is in the vocabulary of {vocab} "
            f"(case-insensitive){tail}")


def write_panel(result: PanelResult, out: Path | str) -> Path:
    """Write ``panel.txt`` (one symbol per line) and ``panel.txt.json`` (settings, sections, table).

    Refuses an empty panel with the diagnosis; both files appear together or not at all.
    """
    import json
    from contextlib import ExitStack

    from hagekit import __version__
    from hagekit.genes.embeddings import sidecar_path
    from hagekit.io.atomic import atomic_path, jsonable

    out = Path(out)
    if result.empty:
        raise DataError(at(out, f"refusing to write an empty panel: {result.diagnosis or 'no genes survived'}"))
    sidecar = {
        "kind": "hagekit gene panel",
        "n_genes": len(result.genes),
        "sections": result.sections,
        "settings": result.settings,
        "steps": result.table(),
        "alternatives": result.alternatives,
        "hagekit_version": __version__,
    }
    with ExitStack() as stack:
        tmp = stack.enter_context(atomic_path(out))
        tmp.write_text("\n".join(result.genes) + "\n", encoding="utf-8")
        tmp_side = stack.enter_context(atomic_path(sidecar_path(out)))
        tmp_side.write_text(json.dumps(jsonable(sidecar), indent=2) + "\n", encoding="utf-8")
    return out
