"""A run folder, written by the cross-validation protocol and read back by ``predict``,
``export-encoder``, ``export-features``, ``ge:`` and ``report``: one class for both sides, so
the layout is stated once.

Layout::

    config.json                   {"protocol": settings and inputs digest, "config": method settings}
    genes.txt                     the gene panel, one symbol a line
    <fold>/trial<k>/metrics.json  {"rows": [...], "per_gene_pcc": {section: [...]}}
    <fold>/trial<k>/...           the trial's saved model (e.g. model.safetensors), if any
    <fold>/.trial<k>.lock         held while a process trains that trial
    metrics.csv                   one row per test section x trial
    splits.json                   folds, trials, seeds and train/validation sizes
    summary.json                  method, dataset, split and the summary statistics

A rerun resumes: :meth:`RunFolder.start` refuses a folder recorded with other settings
(compared by content, see :meth:`RunFolder.differences`), and finished trials are read back.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, ProvenanceError, at
from hagekit.io.atomic import atomic_dir, visible_files, write_json, write_text
from hagekit.io.jsonfile import read_json_object
from hagekit.io.locks import ItemLock, LockInfo, try_lock

__all__ = ["RunFolder", "PATH_KEYS", "NEUTRAL_SETTINGS", "INERT_SETTINGS"]

PATH_KEYS = frozenset({"data_root", "features_dir", "genes_path", "path", "per_fold_cache", "cache_dir", "files",
                       "trained", "image_path"})
"""Recorded input locations: never part of a run's identity (a moved or copied workspace
resumes), because what they held is compared by content (``protocol.inputs``, embedding sha256)."""

NEUTRAL_SETTINGS: dict[str, Any] = {"context": "none"}
"""Settings added after runs were first recorded, at the value that reproduces the older
behaviour: a run recorded without the key equals one recorded with it at this value."""

INERT_SETTINGS: dict[str, tuple[str, Any]] = {"context_radius": ("context", "none")}
"""Settings that change nothing while another setting has a given value (no context: no radius)."""

_TRIAL = re.compile(r"trial(\d+)")


@dataclass(frozen=True)
class RunFolder:
    """The files of one run (see the module docstring for the layout)."""

    path: Path

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))

    # -- layout ------------------------------------------------------------------------------

    @property
    def config_path(self) -> Path:
        return self.path / "config.json"

    @property
    def genes_path(self) -> Path:
        return self.path / "genes.txt"

    @property
    def splits_path(self) -> Path:
        return self.path / "splits.json"

    @property
    def metrics_path(self) -> Path:
        return self.path / "metrics.csv"

    @property
    def summary_path(self) -> Path:
        return self.path / "summary.json"

    @staticmethod
    def trial_name(trial: int) -> str:
        """The folder name of trial ``trial`` (``trial<k>``)."""
        return f"trial{trial}"

    @staticmethod
    def trial_number(name: str) -> int | None:
        """The trial a folder name stands for, or ``None`` when it is not a trial folder."""
        m = _TRIAL.fullmatch(name)
        return int(m.group(1)) if m else None

    def trial_dir(self, fold: str, trial: int) -> Path:
        return self.path / fold / self.trial_name(trial)

    # -- writing -----------------------------------------------------------------------------

    def start(self, record: Mapping[str, Any], genes: Sequence[str], *, overwrite: bool) -> None:
        """Begin (or resume) a run: refuse a folder recorded with other settings unless
        ``overwrite`` (which forgets its finished trials), then write config.json and genes.txt.

        ``record`` is ``{"protocol": ..., "config": ...}``; ``genes`` the run's panel."""
        full = json.loads(json.dumps(dict(record), default=str))
        if self.config_path.is_file() and not overwrite:
            try:
                old = self.read_config()
            except DataError as exc:
                raise DataError(f"{exc}; is this a run folder? use another --out or --overwrite") from None
            keys = self.differences(old, full, genes)
            if keys:
                raise ProvenanceError(
                    at(self.path, f"existing run has other settings ({', '.join(keys)}); its finished trials "
                       "would not match: use --overwrite to redo it, or another --out")
                )
        self.path.mkdir(parents=True, exist_ok=True)
        if overwrite:
            for old_metrics in self.path.glob("*/trial*/metrics.json"):
                old_metrics.unlink()
        write_json(self.config_path, full)
        write_text(self.genes_path, "\n".join(genes) + "\n")

    def try_lock_trial(self, fold: str, trial: int) -> ItemLock | LockInfo:
        """Take ``<fold>/.trial<k>.lock``: an :class:`~hagekit.io.locks.ItemLock`, or the holder's
        :class:`~hagekit.io.locks.LockInfo` when another live process has it."""
        return try_lock(self.path / fold, f".{self.trial_name(trial)}")

    def write_trial(self, fold: str, trial: int, result: Mapping[str, Any],
                    save_model: Callable[[Path], Any] | None = None) -> Path:
        """Write a finished trial at once (its model via ``save_model(folder)``, then metrics.json)."""
        tdir = self.trial_dir(fold, trial)
        with atomic_dir(tdir) as tmp:
            if save_model is not None:
                save_model(tmp)
            write_json(tmp / "metrics.json", dict(result))
        return tdir

    def write_tables(self, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *,
                     splits: Mapping[str, Any], summary: Mapping[str, Any]) -> None:
        """Write metrics.csv (``columns`` of every row), splits.json and summary.json."""
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(columns))
        writer.writeheader()
        for r in rows:
            writer.writerow({k: r.get(k) for k in columns})
        write_text(self.metrics_path, buf.getvalue())
        write_json(self.splits_path, dict(splits))
        write_json(self.summary_path, dict(summary))

    # -- reading -----------------------------------------------------------------------------

    def read_config(self, *, missing: str | None = None) -> dict[str, Any]:
        """config.json; ``missing``: the hint when there is none."""
        return read_json_object(self.config_path, missing=missing, what="a run's config")

    def read_genes(self) -> list[str]:
        from hagekit.io.genelist import read_gene_list

        return read_gene_list(self.genes_path)

    def read_splits(self) -> dict[str, Any] | None:
        """splits.json (written when the run finished), or ``None`` while it is still training."""
        return read_json_object(self.splits_path) if self.splits_path.is_file() else None

    def read_trial(self, fold: str, trial: int) -> dict[str, Any] | None:
        """A finished trial's metrics.json, or ``None`` when it has none; unreadable: DataError."""
        path = self.trial_dir(fold, trial) / "metrics.json"
        if not path.exists():
            return None
        try:
            return read_json_object(path, what="a trial's metrics")
        except OSError as exc:
            raise DataError(at(path, f"unreadable ({exc.strerror or exc})")) from None

    def trials_with(self, filename: str) -> dict[tuple[str, int], Path]:
        """``(fold, trial) -> trial folder`` for every trial folder holding ``filename``."""
        out: dict[tuple[str, int], Path] = {}
        for path in visible_files(self.path, f"*/trial*/{filename}"):
            trial = self.trial_number(path.parent.name)
            if trial is not None:
                out[(path.parent.parent.name, trial)] = path.parent
        return out

    def metrics_rows(self) -> list[dict[str, str]]:
        """metrics.csv's rows (as text), or none when the run has not finished."""
        if not self.metrics_path.is_file():
            return []
        with self.metrics_path.open(newline="", encoding="utf-8") as fh:
            return list(csv.DictReader(fh))

    # -- identity ----------------------------------------------------------------------------

    def differences(self, old: Mapping[str, Any], new: Mapping[str, Any], genes: Sequence[str]) -> list[str]:
        """What differs between the recorded config.json ``old`` and this run's ``new``, by content
        (see docs/resume.md). A run recorded before inputs were digested is compared on what it
        has: settings, its section list and its genes.txt (against ``genes``, this run's panel),
        not its file contents, which it did not record."""
        diffs: list[str] = []
        for part in ("protocol", "config"):
            a, b = (_identity(x.get(part)) if isinstance(x.get(part), dict) else {} for x in (old, new))
            if part == "protocol" and "inputs" not in a:  # an older run: the genes from its genes.txt
                b = {k: v for k, v in b.items() if k != "inputs"}
                recorded = self._recorded_genes()
                if recorded is not None and "\n".join(recorded) != "\n".join(genes):
                    diffs.append("inputs.genes")
            diffs.extend(_differing_keys(a, b))
        return _grouped(diffs)

    def _recorded_genes(self) -> list[str] | None:
        """The panel in genes.txt as an older run (no ``inputs`` digest) recorded it."""
        try:
            return [g for g in self.genes_path.read_text(encoding="utf-8").splitlines() if g]
        except (OSError, UnicodeDecodeError):
            return None


def _identity(value: Any) -> Any:
    """A recorded setting as compared on resume: no locations, and an unset (None) setting
    equals an absent one (older runs may record keys newer ones omit), as does a setting added
    later at its neutral value (:data:`NEUTRAL_SETTINGS`, :data:`INERT_SETTINGS`)."""
    if isinstance(value, dict):
        def inert(k: str) -> bool:
            if k in NEUTRAL_SETTINGS and value.get(k) == NEUTRAL_SETTINGS[k]:
                return True
            other = INERT_SETTINGS.get(k)
            return other is not None and value.get(other[0], NEUTRAL_SETTINGS.get(other[0])) == other[1]

        return {k: _identity(v) for k, v in value.items()
                if v is not None and k not in PATH_KEYS and not (k == "gene_embeddings" and isinstance(v, str))
                and not inert(k)}
    return value


def _differing_keys(a: Any, b: Any, prefix: str = "") -> list[str]:
    """Dotted keys where two recorded settings differ (nested tables are descended)."""
    if isinstance(a, dict) and isinstance(b, dict):
        out: list[str] = []
        for k in sorted(set(a) | set(b), key=str):
            out.extend(_differing_keys(a.get(k), b.get(k), f"{prefix}{k}."))
        return out
    return [] if a == b else [prefix.rstrip(".")]


def _grouped(keys: list[str]) -> list[str]:
    """``inputs.sections.A1.features``, ``...A2.features`` -> ``inputs.sections.{A1,A2}.features``."""
    out: list[str] = []
    by_field: dict[str, list[str]] = {}
    for key in keys:
        parts = key.split(".")
        if len(parts) == 4 and parts[:2] == ["inputs", "sections"]:
            by_field.setdefault(parts[3], []).append(parts[2])
        else:
            out.append(key)
    for fld, secs in by_field.items():
        out.append(f"inputs.sections.{secs[0]}.{fld}" if len(secs) == 1
                   else f"inputs.sections.{{{','.join(secs)}}}.{fld}")
    return sorted(out)
