"""``genes embed`` as library calls: which sections train and which evaluate, training with the
held-out AUC, and the panel made to match the genes that got a vector.

Image sections are the ones a model is later tested on, so by default the embeddings learn
only from sections without an image and are evaluated on the others.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from hagekit.errors import ConfigError

if TYPE_CHECKING:
    from hagekit.genes.coexpression import GeneEmbeddingSettings
    from hagekit.genes.embeddings import GeneEmbeddings
    from hagekit.progress import Reporter

__all__ = ["SectionChoice", "choose_sections", "EmbedInputs", "plan_embedding", "train_and_evaluate", "PanelMatch", "match_panel"]


@dataclass(frozen=True)
class SectionChoice:
    """Sections to train on and to measure the held-out AUC on."""

    train: list[str]
    held_out: list[str]
    #: no section lacks an image, so all train and none stays unseen
    trains_on_all: bool = False


def _image_less_sections(data_root: Path, dataset: str) -> tuple[list[str], list[str]]:
    """(sections without an image, sections with one) of a prepared dataset."""
    from hagekit.data.section import list_sections

    infos = list_sections(data_root, dataset)
    without = [i.path.stem if i.path else i.section for i in infos if not i.has_image]
    with_img = [i.path.stem if i.path else i.section for i in infos if i.has_image]
    return without, with_img


def choose_sections(
    data_root: Path, dataset: str, train: Sequence[str] | None, eval_sections: str | None
) -> SectionChoice:
    """``train`` (default: the image-less sections, else all) and the evaluation sections
    (``eval_sections``: comma-separated, ``none``, or None for the dataset's other sections)."""
    without, with_img = _image_less_sections(data_root, dataset)
    everything = without + with_img
    all_train = False
    if train is None:
        all_train = not without
        train = without if without else everything
    train = list(train)
    if eval_sections is not None and eval_sections.strip().lower() == "none":
        held_out: list[str] = []
    else:
        named = [s.strip() for s in (eval_sections or "").split(",") if s.strip()]
        held_out = named or [s for s in sorted(everything) if s not in set(train)]
    unknown = [s for s in held_out if s not in set(everything)]
    if unknown:
        raise ConfigError(f"--eval-sections: unknown section(s) {', '.join(unknown)} (available: {', '.join(everything)})")
    return SectionChoice(train, held_out, all_train)


@dataclass(frozen=True)
class EmbedInputs:
    """What ``genes embed`` trains from: the prepared dataset, the chosen sections and the panel file."""

    data_root: Path
    dataset: str
    sections: SectionChoice
    panel_path: Path
    panel: list[str]


def plan_embedding(
    data_root: Path, dataset: str, panel_path: Path, train: Sequence[str] | None, eval_sections: str | None
) -> EmbedInputs:
    """Read the panel, then choose the sections (:func:`choose_sections`)."""
    from hagekit.io.genelist import read_gene_list

    panel = read_gene_list(panel_path)
    return EmbedInputs(data_root, dataset, choose_sections(data_root, dataset, train, eval_sections), panel_path, panel)


def train_and_evaluate(
    inputs: EmbedInputs,
    settings: GeneEmbeddingSettings,
    eval_threshold: float | None = None,
    progress: Reporter | None = None,
) -> tuple[GeneEmbeddings, dict[str, Any] | None]:
    """Train on ``inputs.sections.train``; the AUC on the held-out sections (None when there are none).

    The provenance records the panel file and the AUC, as the embeddings file keeps them.
    """
    from hagekit.genes.coexpression import train_gene_embeddings
    from hagekit.genes.quality import DEFAULT_EVAL_THRESHOLD, coexpression_auc

    if eval_threshold is not None and not -1.0 <= eval_threshold < 1.0:
        raise ConfigError(f"--eval-threshold: a Pearson r in [-1, 1), got {eval_threshold}")
    emb = train_gene_embeddings(inputs.data_root, inputs.dataset, settings,
                                sections=inputs.sections.train, genes=inputs.panel, progress=progress)
    emb.provenance["panel"] = str(inputs.panel_path)
    if not inputs.sections.held_out:
        return emb, None
    quality = coexpression_auc(
        emb, inputs.data_root, inputs.dataset, inputs.sections.held_out, seed=settings.seed, progress=progress,
        option="--eval-sections", threshold=DEFAULT_EVAL_THRESHOLD if eval_threshold is None else eval_threshold,
    )
    emb.provenance["quality"] = quality
    return emb, quality


@dataclass(frozen=True)
class PanelMatch:
    """The panel rewritten to the embedded genes: where, which genes were dropped, and whether it
    replaced the workspace panel (else it is ``<embeddings stem>.panel.txt``)."""

    written: Path
    dropped: list[str]
    replaced: bool


def match_panel(panel_path: Path, emb: GeneEmbeddings, *, explicit: bool, embeddings_path: Path) -> PanelMatch | None:
    """Make a panel that ``train`` accepts with these embeddings, or None when none is needed.

    The workspace panel (``explicit`` False) is rewritten only when genes got no vector (the full
    one kept as ``panel_full.txt``); an explicit ``--genes`` panel always gets its own matched copy.
    """
    from hagekit.genes.embeddings import write_embedded_panel

    if not emb.unmatched and not explicit:
        return None
    written, dropped = write_embedded_panel(panel_path, emb.symbols, replace=not explicit,
                                            embeddings_path=embeddings_path)
    return PanelMatch(written, dropped, not explicit)
