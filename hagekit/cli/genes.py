"""``hagekit genes``: gene panels (``select``) and gene embeddings (``embed``, ``check``).

Only typer/rich/stdlib at import time; the library is imported inside each command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from hagekit.cli import _defaults as dflt
from hagekit.cli import _options as opt
from hagekit.cli._common import console, err_console, handle_errors, reporting, split_csv
from hagekit.io.atomic import check_output_file

genes_app = typer.Typer(
    help="Gene panels (HVG selection) and gene embeddings (Gene2Vec files or co-expression training).",
    no_args_is_help=True,
)

ThresholdOpt = Annotated[float | None, typer.Option("--threshold", help=f"Training: Pearson r above which two genes are co-expressed in a section (default {dflt.module_constant('hagekit.genes.coexpression', 'DEFAULT_THRESHOLD')}).")]
EvalThresholdOpt = Annotated[float | None, typer.Option("--eval-threshold", help=f"AUC: mean Pearson r over the evaluation sections that makes a pair co-expressed (default {dflt.module_constant('hagekit.genes.quality', 'DEFAULT_EVAL_THRESHOLD')}).")]


def _data_root(workspace: Path | None, data_root: Path | None) -> Path:
    from hagekit.workspace import Workspace

    return data_root if data_root is not None else Workspace.resolve(workspace).data_root


def _default_panel(workspace: Path | None, dataset: str, genes: Path | None, *, required: bool) -> Path | None:
    from hagekit.errors import ConfigError
    from hagekit.workspace import Workspace

    if genes is not None:
        return genes
    path = Workspace.resolve(workspace).panel_path(dataset)
    if path.is_file():
        return path
    if required:
        raise ConfigError(f"--genes: no panel given and none at {path}; run `hagekit genes select` or pass --genes FILE")
    return None


def _steps_table(result: Any) -> Any:
    from rich.table import Table

    table = Table(title="genes surviving each step", show_lines=False)
    table.add_column("step")
    table.add_column("genes", justify="right")
    table.add_column("change / note", style="dim")
    for row in result.steps:
        table.add_row(row.step, f"{row.n_genes:,}", row.detail)
    return table


@genes_app.command("select")
@handle_errors
def select(
    dataset: opt.Dataset,
    data_root: opt.DataRoot = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Comma-separated sections (default: all sections of the dataset).")] = None,
    top: Annotated[int, typer.Option("--top", help="Highly variable genes taken per section.")] = 1000,
    flavor: Annotated[str, typer.Option("--flavor", help="scanpy HVG flavor: seurat, cell_ranger, seurat_v3.")] = "seurat",
    rule: Annotated[str, typer.Option("--rule", help="Combine sections: intersect | union | min-sections:K (HVG in >= K sections).")] = "intersect",
    min_spots: Annotated[int | None, typer.Option("--min-spots", help="Keep genes detected in >= N spots over all chosen sections.")] = None,
    vocab: Annotated[Path | None, typer.Option("--vocab", help="Keep only genes this embeddings file has (case-insensitive).")] = None,
    compare: Annotated[Path | None, typer.Option("--compare", help="A published panel to report the Jaccard index against.")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Panel file (default: <workspace>/genes/<dataset>/panel.txt).")] = None,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Select an HVG panel and print how many genes survive each step (never writes an empty panel)."""
    from hagekit.genes.panel import (
        PanelRequest,
        PanelSettings,
        keep_existing_panel,
        select_panel,
        write_panel,
    )
    from hagekit.workspace import Workspace

    out = check_output_file(out if out is not None else Workspace.resolve(workspace).panel_path(dataset), "--out")
    chosen = split_csv(sections)
    request = PanelRequest(dataset, PanelSettings(top, flavor, rule, min_spots, vocab), tuple(chosen) if chosen else None)
    if not overwrite and keep_existing_panel(out, request):  # other settings: one line naming them, exit 2
        err_console.print(f"{out}: exists with these settings, kept (pass --overwrite to select again)")
        return
    reference = None
    if compare is not None:
        from hagekit.io.genelist import read_gene_list

        reference = read_gene_list(compare)
    with reporting() as progress:
        result = select_panel(_data_root(workspace, data_root), dataset, request.settings, sections=chosen,
                              progress=progress)
    console.print(_steps_table(result))
    write_panel(result, out)  # an empty panel raises with the diagnosis: one red line, exit 2
    console.print(f"panel: [bold]{len(result.genes)}[/] genes from {len(result.sections)} sections -> {out}")
    if reference is not None:
        from hagekit.genes.panel import jaccard

        shared = len(set(result.genes) & set(reference))
        console.print(
            f"vs {compare}: Jaccard {jaccard(result.genes, reference):.3f} "
            f"({shared} shared, {len(result.genes) - shared} only here, {len(reference) - shared} only there)"
        )


@genes_app.command("embed")
@handle_errors
def embed(
    dataset: opt.Dataset,
    data_root: opt.DataRoot = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Training sections (default: the sections without an image, so image sections stay unseen).")] = None,
    genes: opt.Panel = None,
    dim: Annotated[int, typer.Option("--dim", help="Embedding dimension (Gene2Vec: 200).")] = 200,
    threshold: ThresholdOpt = None,
    epochs: Annotated[int | None, typer.Option("--epochs", help="Word2Vec passes over the pairs (default: enough for ~5M pair updates, 10..100).", show_default=False)] = None,
    min_partners: Annotated[int | None, typer.Option("--min-partners", help=f"Strongest partners per gene and section always kept (default {dflt.module_constant('hagekit.genes.coexpression', 'DEFAULT_MIN_PARTNERS')}).")] = None,
    eval_sections: Annotated[str | None, typer.Option("--eval-sections", help="Sections for the held-out AUC (default: the dataset's other sections; 'none' skips).")] = None,
    eval_threshold: EvalThresholdOpt = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Embeddings file, Gene2Vec text (default: <workspace>/genes/<dataset>/embeddings.txt).")] = None,
    seed: opt.Seed = 0,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Train Gene2Vec-style embeddings from co-expression in your sections, and report their AUC."""
    from hagekit.genes.coexpression import (
        DEFAULT_MIN_PARTNERS,
        DEFAULT_THRESHOLD,
        GeneEmbeddingSettings,
    )
    from hagekit.genes.embed_job import match_panel, plan_embedding, train_and_evaluate
    from hagekit.genes.embeddings import write_gene_embeddings
    from hagekit.io.locks import wait_lock
    from hagekit.workspace import Workspace

    ws = Workspace.resolve(workspace)
    out = check_output_file(out if out is not None else ws.embeddings_path(dataset), "--out")
    # one writer at a time: a second `genes embed` to this file waits, then finds it made (kept)
    with wait_lock(out.parent, f".{out.name}",
                   on_wait=lambda info: err_console.print(f"{out}: {info.describe()} is writing it; waiting")):
        if out.exists() and not overwrite:
            err_console.print(f"{out}: exists, kept (pass --overwrite to train again)")
            return
        root = _data_root(workspace, data_root)
        panel_path: Path = _default_panel(workspace, dataset, genes, required=True)  # type: ignore[assignment]
        settings = GeneEmbeddingSettings(
            dim=dim, threshold=DEFAULT_THRESHOLD if threshold is None else threshold, seed=seed, epochs=epochs,
            min_partners=DEFAULT_MIN_PARTNERS if min_partners is None else min_partners,
        )
        inputs = plan_embedding(root, dataset, panel_path, split_csv(sections), eval_sections)
        if inputs.sections.trains_on_all:
            err_console.print("[yellow]no section lacks an image: training on all sections (no unseen section left)[/]")
        with reporting() as progress:
            emb, quality = train_and_evaluate(inputs, settings, eval_threshold, progress)
        write_gene_embeddings(out, emb.symbols, emb.vectors, provenance=emb.provenance)
        console.print(
            f"embeddings: [bold]{len(emb.symbols)}[/] genes x {emb.dim} from {len(inputs.sections.train)} sections "
            f"({emb.provenance['n_pairs']:,} co-expressed pairs, {emb.provenance['epochs']} epochs) -> {out}"
        )
        _print_panel_match(match_panel(panel_path, emb, explicit=genes is not None, embeddings_path=out), len(emb.symbols))
        if quality is not None:
            _print_quality(quality)


def _print_panel_match(match: Any, n_embedded: int) -> None:
    """Say which panel genes got no vector and where the matching panel now is."""
    if match is None:
        return
    if match.dropped:
        shown = ", ".join(match.dropped[:10]) + (" ..." if len(match.dropped) > 10 else "")
        console.print(f"[yellow]{len(match.dropped)} panel genes got no vector[/] (no co-expression partner in the "
                      f"training sections): {shown}")
    if match.replaced:
        console.print(f"dropped them from the workspace panel {match.written} ({n_embedded} genes, matching the "
                      f"embeddings; the full panel is kept as {match.written.with_name('panel_full.txt')})")
    else:
        console.print(f"panel of the embedded genes: {match.written}; train with --genes {match.written}")


def _print_quality(q: dict[str, Any]) -> None:
    sections = q["sections"]
    console.print(
        f"held-out AUC (co-expressed vs random pairs, cosine) on {len(sections)} sections "
        f"({', '.join(sections[:8])}{', ...' if len(sections) > 8 else ''}): [bold]{q['auc']:.3f}[/] "
        f"(random embedding {q['auc_random']:.3f}; {q['n_pos']:,} pairs with mean r > {q['threshold']}, {q['n_genes']} genes)"
    )
    if q.get("overlap"):
        console.print(f"[yellow]warning: {', '.join(q['overlap'])} were used for training: this AUC is optimistic[/]")


@genes_app.command("check")
@handle_errors
def check(
    embeddings: Annotated[Path, typer.Argument(help="Embeddings file: Gene2Vec text (_w2v too), .npy (+ .genes.txt), .npz or .h5.")],
    genes: opt.Panel = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Dataset for the held-out AUC (skipped when not given).")] = None,
    data_root: opt.DataRoot = None,
    sections: Annotated[str | None, typer.Option("--sections", help="Sections for the AUC (default: the dataset's sections the embeddings were not trained on).")] = None,
    eval_threshold: EvalThresholdOpt = None,
    seed: opt.Seed = 0,
    workspace: opt.Workspace = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Write the matched panel (panel genes that have an embedding, " "in panel order), e.g. the 785-gene HER2+ panel -> Gene2Vec's 771.")] = None,
) -> None:
    """Validate an embeddings file, match it to a panel, and measure its co-expression AUC."""
    from rich.table import Table

    if out is not None:
        check_output_file(out, "--out")

    from hagekit.genes._sections import section_names_of
    from hagekit.genes.embeddings import describe_provenance, load_gene_embeddings
    from hagekit.genes.quality import DEFAULT_EVAL_THRESHOLD, coexpression_auc
    from hagekit.io.genelist import read_gene_list

    full = load_gene_embeddings(embeddings)
    table = Table(title=str(embeddings), show_header=False)
    table.add_row("genes", f"{len(full.symbols):,}")
    table.add_row("dimension", str(full.dim))
    table.add_row("provenance", describe_provenance(full.provenance))
    panel_path = _default_panel(workspace, dataset, genes, required=False) if dataset else genes
    emb = full
    if panel_path is not None:
        panel = read_gene_list(panel_path)
        emb = load_gene_embeddings(embeddings, panel)
        table.add_row("panel", f"{panel_path}: {len(emb.symbols)} of {len(panel)} matched")
        if emb.unmatched:
            shown = ", ".join(emb.unmatched[:12]) + (" ..." if len(emb.unmatched) > 12 else "")
            table.add_row("unmatched", f"{len(emb.unmatched)}: {shown}")
    if out is not None:
        from hagekit.errors import ConfigError
        from hagekit.io.genelist import write_gene_list

        if panel_path is None:
            raise ConfigError("--out: needs a panel (--genes, or --dataset with a workspace panel)")
        write_gene_list(out, emb.symbols)
        table.add_row("matched panel", f"{out} ({len(emb.symbols)} genes)")
    console.print(table)
    if dataset is None:
        return
    root = _data_root(workspace, data_root)
    trained_on = full.training_sections()
    chosen = split_csv(sections) or [s for s in section_names_of(root, dataset) if s not in trained_on]
    if not chosen:
        err_console.print("[yellow]every section was used for training: no held-out AUC[/]")
        return
    threshold = DEFAULT_EVAL_THRESHOLD if eval_threshold is None else eval_threshold
    with reporting() as progress:
        q = coexpression_auc(emb, root, dataset, chosen, threshold=threshold, seed=seed, progress=progress)
    _print_quality(q)


def register(app: typer.Typer) -> None:
    """Add the ``genes`` group to the root app."""
    app.add_typer(genes_app, name="genes")
