"""The downstream datasets: patch datasets (``bench linear-probe``) and slide datasets
(``bench abmil``), each a :class:`~hagekit.registry.Registry`.

This module stays light (no numpy) so that the CLI's ``--help`` lists the names from here.
A patch dataset is an opener ``(root, *, splits, group_regex, groups_csv) -> PatchDataset``
(:mod:`hagekit.bench.downstream.patch_datasets`); a slide dataset is the label set its CSV must use.
A new one is one ``register`` line here (its opener in its own module), or an entry point in
the ``hagekit.patch_datasets`` / ``hagekit.slide_datasets`` group of an installed package.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from hagekit.registry import Registry

__all__ = ["PATCH_DATASETS", "SLIDE_DATASETS", "SlideLabelSet", "choices_help"]


@dataclass(frozen=True)
class SlideLabelSet:
    """A slide dataset's labels: class names in label order (``None``: any labels, sorted) and
    other spellings accepted for each (lower case)."""

    classes: tuple[str, ...] | None
    aliases: Mapping[str, str] = field(default_factory=dict)


PATCH_DATASETS: Registry = Registry("patch dataset", option="--dataset", entry_points="hagekit.patch_datasets")
PATCH_DATASETS.register("pcam", "hagekit.bench.downstream.patch_datasets:open_pcam", manifest="pcam", help="published h5 files")
PATCH_DATASETS.register("skincancer", "hagekit.bench.downstream.patch_datasets:open_skincancer", manifest="skincancer",
                        help="heiDATA tiles")
PATCH_DATASETS.register("folder", "hagekit.bench.downstream.patch_datasets:open_image_folder", help="one subfolder per class")

SLIDE_DATASETS: Registry = Registry("slide dataset", option="--dataset", entry_points="hagekit.slide_datasets")
SLIDE_DATASETS.register(
    "tcga-brca",
    SlideLabelSet(
        ("IDC", "ILC"),
        {  # also GDC primary_diagnosis and TCGA clinical histological_type spellings
            "infiltrating ductal carcinoma": "IDC", "infiltrating duct carcinoma": "IDC",
            "infiltrating duct carcinoma, nos": "IDC", "infiltrating lobular carcinoma": "ILC",
            "lobular carcinoma": "ILC", "lobular carcinoma, nos": "ILC",
        },
    ),
    manifest="tcga-brca",
    help="IDC/ILC",
)
SLIDE_DATASETS.register(
    "sln-breast",
    SlideLabelSet(
        ("negative", "positive"),
        {"neg": "negative", "normal": "negative", "pos": "positive", "tumor": "positive",
         "metastasis": "positive", "metastatic": "positive"},
    ),
    manifest="sln-breast",
    help="negative/positive",
)
SLIDE_DATASETS.register("csv", SlideLabelSet(None), help="any labels")


def choices_help(registry: Registry) -> str:
    """``a (help), b (help) or c (help)``: the names and help of a dataset registry, for ``--help``."""
    parts = [f"{name} ({entry.help})" if entry.help else name for name, entry in registry.items()]
    return ", ".join(parts[:-1]) + f" or {parts[-1]}" if len(parts) > 1 else "".join(parts)
