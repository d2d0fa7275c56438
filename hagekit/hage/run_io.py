"""Reading a trained HAGE run folder: settings, gene panel, feature provenance, model folders.

Below both its users (``hagekit.predict`` and the ``ge:`` encoder in
:mod:`hagekit.hage.ge_encoder`) so that neither imports the other.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hagekit.errors import DataError, at

__all__ = ["RunInfo", "load_run"]


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


def load_run(run: Path | str) -> RunInfo:
    """Read a HAGE run folder (``config.json``, ``genes.txt``, ``<fold>/trial<k>/model.safetensors``)."""
    from hagekit.io.atomic import visible_files
    from hagekit.io.genelist import read_gene_list
    from hagekit.io.jsonfile import read_json_object

    run = Path(run)
    hint = "not a run folder (no config.json); train one with `hagekit train`"
    config = read_json_object(run / "config.json", missing=hint)
    protocol = config.get("protocol", {})
    if protocol.get("method", "hage") != "hage":
        raise DataError(at(run, f"run of method {protocol.get('method')!r}, not a HAGE run"))
    genes = read_gene_list(run / "genes.txt")
    models: dict[tuple[str, int], Path] = {}
    for weights in visible_files(run, "*/trial*/model.safetensors"):
        m = re.fullmatch(r"trial(\d+)", weights.parent.name)
        if m:
            models[(weights.parent.parent.name, int(m.group(1)))] = weights.parent
    if not models:
        raise DataError(at(run, "no trained models (<fold>/trial<k>/model.safetensors); is training finished?"))
    return RunInfo(run, config, genes, dict(protocol.get("features", {})),
                   str(protocol.get("target", "log1p_norm")), models)
