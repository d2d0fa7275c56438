"""``hagekit extract``: frozen patch features for ST spots (``--dataset``) or whole slides
(``--slides``), batched and resumable, into CLAM/TRIDENT-compatible h5 files."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from hagekit.cli import _options as opt
from hagekit.cli._common import console, fail, handle_errors, reporting, split_csv

_SPOT = "Spots (--dataset)"
_SLIDE = "Whole slides (--slides)"
_ENC = "Encoder and speed"
_SCALE = "Many jobs (torchrun ranks or --shard)"


def _spot(*names: str, help: str):
    return typer.Option(*names, help=help, rich_help_panel=_SPOT)


def _slide(*names: str, help: str, **kw):
    return typer.Option(*names, help=help, rich_help_panel=_SLIDE, **kw)


def _enc(*names: str, help: str):
    return typer.Option(*names, help=help, rich_help_panel=_ENC)


def _scale(*names: str, help: str):
    return typer.Option(*names, help=help, rich_help_panel=_SCALE)


_Dataset = Annotated[str | None, _spot("--dataset", "-d", help="Dataset of prepared sections (e.g. her2).")]
_DataRoot = Annotated[Path | None, _spot("--data-root", help="Folder holding <dataset>/<section>.h5ad (default <workspace>/data).")]
_Sections = Annotated[str | None, _spot("--sections", help="Comma-separated sections (default: all with an image).")]
_PatchUm = Annotated[float, _spot("--patch-um", help="Spot patch side in µm (112 = 224 px at 0.5 µm/px, as HEST).")]
_DumpPatches = Annotated[bool, _spot("--dump-patches", help="Also write the patches (HEST layout) to <out>/patches/.")]
_Slides = Annotated[list[Path] | None, _slide("--slides", help="Slide files or a folder of slides (repeatable).")]
_Mpp = Annotated[float | None, _slide("--mpp", help="Level-0 µm/px of the slides (overrides/supplies missing metadata).")]
_TargetMpp = Annotated[float | None, _slide("--target-mpp", help="Tile resolution in µm/px (default: 0.5, i.e. 20x).")]
_Magnification = Annotated[float | None, _slide("--magnification", help="Tile magnification (20 = 0.5 µm/px); excludes --target-mpp.")]
_TileSize = Annotated[int | None, _slide(
    "--tile-size", help="Tile side in px at the target resolution (default: 256; with --coords, the file's patch_size).",
    show_default=False)]
_Overlap = Annotated[int, _slide("--overlap", help="Tile overlap in px at the target resolution.")]
_MinTissue = Annotated[float, _slide("--min-tissue", help="Keep tiles with at least this tissue fraction.")]
_Coords = Annotated[Path | None, _slide("--coords", help="Folder of CLAM/TRIDENT coords h5 to use instead of tiling.")]
_Preview = Annotated[bool, _slide("--preview", help="Write <out>/previews/<slide>.png with mask and tiles.")]
_Encoder = Annotated[str, _enc("--encoder", "-e", help="Encoder (see `hagekit encoders list`).")]
_Weights = Annotated[Path | None, _enc("--weights", help="Encoder weights (.bin/.pth/.safetensors).")]
_RandomWeights = Annotated[bool, _enc("--random-weights", help="Random encoder weights (speed tests only; recorded).")]
_Device = Annotated[str, _enc("--device", help="auto, cpu or cuda.")]
_Precision = Annotated[str | None, _enc("--precision", help="fp32, bf16 or fp16 autocast on CUDA (default: bf16 on CUDA).")]
_BatchSize = Annotated[int, _enc("--batch-size", help="Patches per forward pass.")]
_NumWorkers = Annotated[int | None, _enc("--num-workers", help="DataLoader reader workers (default: auto).")]
_Shard = Annotated[str | None, _scale(
    "--shard", help="K/N: this job's deterministic share (Slurm array: $SLURM_ARRAY_TASK_ID/16); per-item locks keep jobs sharing --out apart.")]
_LockTimeout = Annotated[float, _scale(
    "--lock-timeout", help="Seconds without heartbeat after which another job's item lock is stale and reclaimed.")]
_SummaryJson = Annotated[Path | None, _scale("--summary-json", help="Also write the run's summary (items, per-rank patches/s) as JSON.")]
_Out = Annotated[Path | None, typer.Option(
    "--out", "-o", help="Output folder (default: <workspace>/features/<dataset>/<encoder>, or features/slides/<encoder> for --slides).")]
_Layout = Annotated[str, typer.Option(
    "--layout", help="flat (<out>/<name>.h5, TRIDENT-style) or clam (also <out>/h5_files/ + <out>/pt_files/).")]


@handle_errors
def extract_cmd(
    dataset: _Dataset = None,
    data_root: _DataRoot = None,
    sections: _Sections = None,
    patch_um: _PatchUm = 112.0,
    dump_patches: _DumpPatches = False,
    slides: _Slides = None,
    mpp: _Mpp = None,
    target_mpp: _TargetMpp = None,
    magnification: _Magnification = None,
    tile_size: _TileSize = None,
    overlap: _Overlap = 0,
    min_tissue: _MinTissue = 0.25,
    coords: _Coords = None,
    preview: _Preview = False,
    encoder: _Encoder = "builtin",
    weights: _Weights = None,
    random_weights: _RandomWeights = False,
    device: _Device = "auto",
    precision: _Precision = None,
    batch_size: _BatchSize = 64,
    num_workers: _NumWorkers = None,
    shard: _Shard = None,
    lock_timeout: _LockTimeout = 600.0,
    out: _Out = None,
    summary_json: _SummaryJson = None,
    layout: _Layout = "flat",
    overwrite: opt.Overwrite = False,
    workspace: opt.Workspace = None,
) -> None:
    """Extract patch features for ST spots (--dataset) or whole slides (--slides).

    Runs as one process, as `torchrun --nproc_per_node N -m hagekit extract ...` (one rank per
    GPU, slides dealt by tile count; rank 0 prints the summary), or as one of N --shard jobs.
    """
    from hagekit.distributed import is_main_process
    from hagekit.extract import (
        EncoderSpec,
        ExtractionSpec,
        TilingSpec,
        extract_sections,
        extract_slides,
    )
    from hagekit.io.atomic import check_output_dir

    tiling = TilingSpec(mpp, target_mpp, magnification, tile_size, overlap, min_tissue, coords, preview)
    spec = ExtractionSpec(out, patch_um, dump_patches, tiling, overwrite, shard, lock_timeout)
    enc = EncoderSpec(encoder, weights, random_weights, device, precision, batch_size, num_workers)
    _check_mode(dataset, slides, spec, layout, spot_inputs={"--sections": sections, "--data-root": data_root})
    if out is not None:
        check_output_dir(out, "--out")
    main = is_main_process()  # under torchrun only rank 0 draws progress and prints
    with reporting(enabled=main) as progress:
        if dataset is not None:
            summary = extract_sections(data_root, dataset, encoder=enc, spec=spec, sections=split_csv(sections),
                                       progress=progress, workspace=workspace)
        else:
            summary = extract_slides(list(slides or []), encoder=enc, spec=spec, progress=progress, workspace=workspace)
    if not main:  # rank 0 prints and exports for all ranks (every rank got the merged summary)
        raise typer.Exit(code=0 if summary.ok else 1)
    _print_summary(summary)
    _write_extras(summary, summary_json, layout, overwrite)
    if not summary.ok:
        raise typer.Exit(code=1)


def _check_mode(dataset: str | None, slides: list[Path] | None, spec, layout: str, *, spot_inputs: dict) -> None:
    """One mode (--dataset xor --slides), and no option of the other mode."""
    if (dataset is None) == (not slides):
        raise fail("give either --dataset (ST spots) or --slides (whole slides)")
    if layout not in ("flat", "clam"):
        raise fail(f"--layout: unknown {layout!r} (valid: flat, clam)")
    if spec.tiling.target_mpp is not None and spec.tiling.magnification is not None:
        raise fail("--target-mpp and --magnification exclude each other")
    if dataset is not None:
        bad, mode = spec.tiling.options_given(), "--slides"
    else:
        bad, mode = [k for k, v in spot_inputs.items() if v is not None] + spec.spot_options_given(), "--dataset"
    if bad:
        raise fail(f"{', '.join(bad)}: only apply with {mode}")


def _write_extras(summary, summary_json: Path | None, layout: str, overwrite: bool) -> None:
    """The summary as JSON and the CLAM layout, when asked for."""
    if summary_json is not None:
        from hagekit.io.atomic import write_json

        write_json(summary_json, summary.to_dict())
    if layout == "clam" and any(i.status != "failed" for i in summary.items):
        from hagekit.io.clam import export_clam

        res = export_clam(summary.out_dir, summary.out_dir, overwrite=overwrite)
        console.print(f"CLAM layout: {len(res.written)} written to {summary.out_dir}/h5_files and pt_files")


def _print_summary(summary) -> None:
    from rich.table import Table

    table = Table(title=f"extract · {summary.encoder} -> {summary.out_dir}", header_style="bold")
    for col, justify in (("item", "left"), ("status", "left"), ("patches", "right"), ("s", "right"), ("patches/s", "right"), ("note", "left")):
        table.add_column(col, justify=justify, overflow="fold")  # type: ignore[arg-type]
    style = {"done": "green", "skipped": "yellow", "failed": "red"}
    for item in summary.items:
        rate = f"{item.patches_per_s:,.1f}" if item.status == "done" and item.seconds > 0 else "-"
        table.add_row(
            item.name, f"[{style[item.status]}]{item.status}[/]", str(item.n_patches) if item.status == "done" else "-",
            f"{item.seconds:.1f}" if item.status == "done" else "-", rate, item.reason,
        )
    console.print(table)
    if len(summary.ranks) > 1:
        ranks = Table(title="per rank", header_style="bold")
        for col in ("rank", "host", "device", "done", "patches", "busy s", "patches/s", "batch"):
            ranks.add_column(col, justify="left" if col in ("host", "device") else "right")
        for r in summary.ranks:
            rate = f"{r.patches_per_s:,.1f}" if r.busy_seconds > 0 else "-"
            ranks.add_row(str(r.rank), r.host, r.device, str(r.n_done), str(r.n_patches), f"{r.busy_seconds:.1f}",
                          rate, str(r.batch_size))
        console.print(ranks)
    rate = summary.patches_per_s
    console.print(
        f"{len(summary.done)} done, {len(summary.skipped)} skipped, {len(summary.failed)} failed · "
        f"{summary.n_patches} patches" + (f" at {rate:,.1f} patches/s" if rate == rate else "")
        + f" · {summary.device} {summary.precision} · {summary.seconds:.1f}s"
        + (f" · {len(summary.ranks)} ranks" if len(summary.ranks) > 1 else "")
        + (f" · shard {summary.shard}" if summary.shard else ""),
        highlight=False,
    )


def register(app: typer.Typer) -> None:
    app.command("extract", no_args_is_help=True)(extract_cmd)
