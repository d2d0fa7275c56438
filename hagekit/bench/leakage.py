"""Leakage guard for encoder benchmarks: a ``ge:`` encoder must not be scored on what it saw.

A ``ge:`` encoder's bundle config carries ``trained_sections`` / ``trained_patients`` (from its
run's ``splits.json``, or the exported file's metadata). ``bench hest`` compares them with each
fold's test samples, ``bench linear-probe`` with the section a ``data probe-set`` folder was cut
from (``probe_set.json``). A leak is refused, or with ``--allow-leak`` flagged in every table.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hagekit.errors import ProvenanceError

__all__ = ["PROBE_SET_FILE", "trained_on", "overlap", "probe_set_origin", "check_probe_leak", "leak_message"]

PROBE_SET_FILE = "probe_set.json"


def trained_on(bundle: Any) -> dict[str, list[str]]:
    """``{"sections": [...], "patients": [...]}`` an encoder was trained on ({} when not recorded)."""
    cfg = dict(getattr(bundle, "config", {}) or {})
    out = {k: [str(v) for v in cfg.get(f"trained_{k}", []) or []] for k in ("sections", "patients")}
    return out if any(out.values()) else {}


def overlap(trained: Mapping[str, Sequence[str]], sections: Iterable[str], patients: Iterable[str]) -> list[str]:
    """Test sections (``section``) and patients (``patient P``) the encoder was trained on, sorted."""
    seen_s, seen_p = set(trained.get("sections", [])), set(trained.get("patients", []))
    hits = sorted({s for s in sections if s in seen_s})
    hits += sorted({f"patient {p}" for p in patients if p in seen_p and p not in hits})
    return hits


def leak_message(encoder: str, where: str, hits: Sequence[str]) -> str:
    """The one-line refusal."""
    return (f"--encoder {encoder}: {where} tests {', '.join(hits)}, which this encoder was trained on "
            "(export another fold with `export-encoder --fold`, train without them, or pass --allow-leak "
            "to run it flagged as leaking)")


def probe_set_origin(data: Path) -> dict[str, Any] | None:
    """The ``probe_set.json`` of a ``data probe-set`` folder (``data`` or a parent up to 2 levels)."""
    for folder in (data, *list(data.resolve().parents)[:2]):
        path = folder / PROBE_SET_FILE
        if path.is_file():
            try:
                obj = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError):
                return None
            return obj if isinstance(obj, dict) else None
    return None


def check_probe_leak(data: Path, encoder: str, bundle: Any, *, allow_leak: bool) -> list[str]:
    """Sections/patients of a probe set the encoder saw; raise unless ``allow_leak``."""
    origin = probe_set_origin(Path(data))
    trained = trained_on(bundle)
    if origin is None or not trained:
        return []
    hits = overlap(trained, [str(origin.get("section", ""))], [str(origin.get("patient", ""))])
    if hits and not allow_leak:
        raise ProvenanceError(leak_message(encoder, f"probe set {data} (cut from section {origin.get('section')})", hits))
    return hits
