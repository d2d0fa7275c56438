"""``hagekit data``: prepare ST sections (the readers of :data:`hagekit.data.READERS`), synthesize, list, download.

Only typer/rich/stdlib at import time; the library is imported inside each command.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from hagekit.cli import _defaults as dflt
from hagekit.cli import _options as opt
from hagekit.cli._common import console, handle_errors, reporting, split_csv
from hagekit.data import READERS
from hagekit.io.atomic import check_output_dir

data_app = typer.Typer(
    help="Prepare spatial-transcriptomics sections into <root>/<dataset>/<section>.h5ad, list them, download sources.",
    no_args_is_help=True,
)
prepare_app = typer.Typer(
    help=f"Read a published raw layout ({READERS.choices()}) into hagekit sections.",
    no_args_is_help=True,
)
data_app.add_typer(prepare_app, name="prepare")

RawOpt = Annotated[Path, typer.Option("--raw", help="Folder holding the raw data in its published layout.")]
OutOpt = Annotated[
    Path | None,
    typer.Option("--out", "-o", help="Data root to write <dataset>/<section>.h5ad under (default: <workspace>/data).", show_default=False),
]
SectionsOpt = Annotated[
    str | None, typer.Option("--sections", help="Comma-separated sections to prepare (default: all found).", show_default=False)
]


def _out_root(workspace: Path | None, out: Path | None, *, output: bool = True) -> Path:
    """``--out`` (or the workspace's data root); as an output it must be a folder we can create."""
    from hagekit.workspace import Workspace

    root = out if out is not None else Workspace.resolve(workspace).data_root
    return check_output_dir(root, "--out") if output else root


def _fmt_mpp(mpp: float) -> str:
    import math

    return f"{mpp:.3f}" if math.isfinite(mpp) else "-"


#: Columns of every sections table; numbers right-aligned.
_SECTION_COLUMNS = ("section", "patient", "spots", "genes", "image", "mpp", "array")
_NUMERIC = {"spots", "genes", "mpp", "dropped"}


def _sections_table(title: str, *, before: tuple[str, ...] = (), after: tuple[str, ...] = ()) -> Any:
    from rich.table import Table

    table = Table(title=title)
    for col in (*before, *_SECTION_COLUMNS, *after):
        table.add_column(col, justify="right" if col in _NUMERIC else "left")
    return table


def _print_prepare(report: Any) -> None:
    table = _sections_table(f"{report.dataset}: {len(report.sections)} section(s) in {report.folder}", after=("dropped", "status"))
    for s in report.sections:
        table.add_row(
            s.section,
            s.patient,
            f"{s.n_spots:,}",
            f"{s.n_genes:,}",
            "yes" if s.has_image else "[yellow]no (counts only)[/]",
            _fmt_mpp(s.mpp),
            s.array or "-",
            str(s.dropped) if s.status == "written" else "",
            s.status,
        )
    console.print(table)
    n_img = sum(1 for s in report.sections if s.has_image)
    console.print(
        f"{len(report.written)} written, {len(report.kept)} kept (already prepared), "
        f"{n_img} with image, {len(report.sections) - n_img} counts only"
    )


def _prepare(prepare: Callable[..., Any], raw: Path, workspace: Path | None, out: Path | None, *args: Any,
             **kwargs: Any) -> None:
    """Run one ``prepare_*`` library function with a progress bar and print its table."""
    with reporting() as progress:
        report = prepare(raw, _out_root(workspace, out), *args, progress=progress, **kwargs)
    _print_prepare(report)


def _legacy_st_command(reader: str, default_dataset: str) -> Callable[..., None]:
    """``prepare her2st`` / ``prepare cscc``: the legacy-ST layouts share their options."""

    def command(
        raw: RawOpt,
        out: OutOpt = None,
        sections: SectionsOpt = None,
        dataset: opt.DatasetFolder = default_dataset,
        overwrite: opt.Overwrite = False,
        workspace: opt.Workspace = None,
    ) -> None:
        _prepare(READERS.get(reader), raw, workspace, out, sections=split_csv(sections), dataset=dataset, overwrite=overwrite)

    command.__name__ = f"prepare_{reader}_cmd"
    command.__doc__ = READERS.entry(reader).help
    return handle_errors(command)


prepare_her2st_cmd = prepare_app.command("her2st")(
    _legacy_st_command("her2st", "her2")
)
prepare_app.command("her2", help="Alias of `prepare her2st`.", hidden=True)(prepare_her2st_cmd)
prepare_cscc_cmd = prepare_app.command("cscc")(
    _legacy_st_command("cscc", "cscc")
)


@prepare_app.command("visium", help=READERS.entry("visium").help)
@handle_errors
def prepare_visium_cmd(
    raw: Annotated[Path, typer.Option("--raw", help="Space Ranger `outs` folder (filtered_feature_bc_matrix.h5 or filtered_feature_bc_matrix/, spatial/).")],
    name: Annotated[str, typer.Option("--name", "-n", help="Section name to write (file <name>.h5ad).")],
    image: Annotated[Path | None, typer.Option("--image", help="H&E the spots were aligned to: full-resolution, hires or lowres, recognised by its size (default: spatial/tissue_hires_image.png, else the lowres one).")] = None,
    patient: Annotated[str | None, typer.Option("--patient", help="Patient id (default: the section name).")] = None,
    out: OutOpt = None,
    dataset: opt.DatasetFolder = "visium",
    all_spots: Annotated[bool, typer.Option("--all-spots", help="Keep spots outside the tissue (default: in_tissue == 1 only).")] = False,
    overwrite: opt.Overwrite = False,
    workspace: opt.Workspace = None,
) -> None:
    """10x Visium (Space Ranger outs); pixel size = 55 µm / (spot_diameter_fullres x the image's scale factor)."""
    from hagekit.data.visium import VisiumSection

    _prepare(READERS.get("visium"), raw, workspace, out, VisiumSection(name, image, patient, in_tissue_only=not all_spots),
             dataset=dataset, overwrite=overwrite)


@prepare_app.command("stutility", help=READERS.entry("stutility").help)
@handle_errors
def prepare_stutility_cmd(
    raw: RawOpt,
    out: OutOpt = None,
    sections: SectionsOpt = None,
    gene_names: Annotated[
        Path | None,
        typer.Option("--gene-names", help="Gene id -> symbol file (id, symbol per line; a 10x features.tsv.gz works); "
                     "default: keep the counts' gene ids.", show_default=False),
    ] = None,
    dataset: opt.DatasetFolder = "stutility",
    overwrite: opt.Overwrite = False,
    workspace: opt.Workspace = None,
) -> None:
    _prepare(READERS.get("stutility"), raw, workspace, out, sections=split_csv(sections), dataset=dataset,
             gene_names=gene_names, overwrite=overwrite)


@prepare_app.command("hest", help=READERS.entry("hest").help)
@handle_errors
def prepare_hest_cmd(
    raw: Annotated[Path, typer.Option("--raw", help="HEST-1k folder (st/<id>.h5ad, wsis/<id>.tif, metadata/<id>.json).")],
    ids: Annotated[str | None, typer.Option("--ids", help="Comma-separated HEST sample ids (default: every st/<id>.h5ad).")] = None,
    out: OutOpt = None,
    dataset: opt.DatasetFolder = "hest",
    overwrite: opt.Overwrite = False,
    workspace: opt.Workspace = None,
) -> None:
    _prepare(READERS.get("hest"), raw, workspace, out, ids=split_csv(ids), dataset=dataset, overwrite=overwrite)


@data_app.command("synth")
@handle_errors
def synth_cmd(
    out: OutOpt = None,
    dataset: opt.DatasetFolder = "synth",
    sections: Annotated[int, typer.Option("--sections", help="Number of sections.")] = 4,
    spots: Annotated[int, typer.Option("--spots", help="Spots per section (grid, 100 µm pitch).")] = 300,
    genes: Annotated[int, typer.Option("--genes", help="Genes per section.")] = 200,
    patients: Annotated[int | None, typer.Option("--patients", help=f"Number of patients (default {dflt.config_default('hagekit.data.synthetic', 'SynthConfig', 'n_patients')}, sections split among them).")] = None,
    seed: opt.Seed = 0,
    overwrite: opt.Overwrite = False,
    workspace: opt.Workspace = None,
    context_dependence: Annotated[float, typer.Option(
        "--context-dependence", help="0..1: how much each spot's expression follows its 8 neighbours' tissue (0: none).")] = 0.0,
) -> None:
    """Generate a synthetic ST dataset: H&E-like images with tissue regions and NB counts learnable from them."""
    from hagekit.data.section import list_sections
    from hagekit.data.synthetic import SynthConfig, synthesize_dataset

    root = _out_root(workspace, out)
    config = SynthConfig.resolve(patients, dataset=dataset, n_sections=sections, n_spots=spots, n_genes=genes,
                                 seed=seed, context_dependence=context_dependence)
    with reporting() as progress:
        paths = synthesize_dataset(root, config, overwrite=overwrite, progress=progress)
    infos = [i for i in list_sections(root, paths[0].parent.name) if i.path in set(paths)]
    _print_list(infos, title=f"synthetic dataset in {paths[0].parent}")


def _print_list(infos: list[Any], *, title: str) -> None:
    table = _sections_table(title, before=("dataset",))
    for i in infos:
        table.add_row(
            i.dataset,
            i.section,
            i.patient,
            f"{i.n_spots:,}",
            f"{i.n_genes:,}",
            "yes" if i.has_image else "[yellow]no (counts only)[/]",
            _fmt_mpp(i.mpp),
            i.array or "-",
        )
    console.print(table)


@data_app.command("list")
@handle_errors
def list_cmd(
    root: Annotated[Path | None, typer.Argument(help="Data root holding <dataset>/<section>.h5ad (default: <workspace>/data).")] = None,
    dataset: Annotated[str | None, typer.Option("--dataset", "-d", help="Only this dataset.")] = None,
    workspace: opt.Workspace = None,
) -> None:
    """Table of prepared datasets and sections: spots, genes, image yes/no, patient, mpp, array (ST 1k/2k pitch, Visium)."""
    from hagekit.data.section import list_sections
    from hagekit.errors import DataError

    data_root = _out_root(workspace, root, output=False)
    infos = list_sections(data_root, dataset)
    if not infos:
        raise DataError(f"{data_root}: no prepared sections (<dataset>/<section>.h5ad); run `hagekit data prepare` or `hagekit data synth`")
    _print_list(infos, title=f"{len(infos)} section(s) under {data_root}")
    datasets = sorted({i.dataset for i in infos})
    console.print(
        ", ".join(
            f"{d}: {sum(1 for i in infos if i.dataset == d)} sections, "
            f"{sum(1 for i in infos if i.dataset == d and i.has_image)} with image"
            for d in datasets
        )
    )


@data_app.command("probe-set")
@handle_errors
def probe_set_cmd(
    section: Annotated[str, typer.Option("--section", "-s", help="Section name (under --data-root/--dataset) or a .h5ad path.")],
    genes: Annotated[str, typer.Option("--genes", help="Comma-separated genes; one high/low set per gene (split at its median).")],
    out: Annotated[Path, typer.Option("--out", "-o", help="Output folder: <out>/<gene>/{high,low}/*.png.")],
    dataset: Annotated[str, typer.Option("--dataset", "-d", help="Dataset of --section.")] = "her2",
    data_root: opt.DataRoot = None,
    patch_um: Annotated[float, typer.Option("--patch-um", help="Patch side in microns around each spot centre.")] = 112.0,
    size: Annotated[int, typer.Option("--size", help="Patch side in pixels.")] = 224,
    workspace: opt.Workspace = None,
    overwrite: opt.Overwrite = False,
) -> None:
    """Spot patches of one section in class folders high/low by a gene's expression (for bench linear-probe)."""
    from hagekit.bench.downstream.probe_set import GROUP_REGEX, build_probe_set

    path = Path(section)
    if not (path.suffix == ".h5ad" and path.is_file()):
        path = (data_root or _out_root(workspace, None)) / dataset / f"{section}.h5ad"
    with reporting() as progress:
        res = build_probe_set(path, split_csv(genes) or [], out, patch_um=patch_um, size=size,
                              overwrite=overwrite, progress=progress)
    for g, d in res.genes.items():
        c = res.counts[g]
        console.print(f"{g}: {c['high']} high / {c['low']} low (median {res.medians[g]:.3f}) -> {d}", highlight=False)
    console.print(f"probe with: hagekit bench linear-probe --dataset folder --data {out}/<gene> "
                  f"--group-regex '{GROUP_REGEX}' --encoder ...", highlight=False)


@data_app.command("download")
@handle_errors
def download_cmd(
    name: Annotated[str | None, typer.Argument(help="Manifest name (her2st, cscc, pcam, skincancer, tcga-brca, sln-breast, hest, uni, gene2vec).")] = None,
    out: Annotated[Path | None, typer.Option("--out", "-o", help="Folder to download into (default: <workspace>/raw/<name>).")] = None,
    files: Annotated[str | None, typer.Option("--files", help="Comma-separated file names from the manifest (default: all).")] = None,
    manifest: Annotated[Path | None, typer.Option("--manifest", help="A manifest YAML file instead of a built-in name.")] = None,
    extract: Annotated[bool, typer.Option("--extract/--no-extract", help="Unpack archives the manifest marks for extraction.")] = True,
    show: Annotated[bool, typer.Option("--list", help="List the built-in manifests and exit.")] = False,
    workspace: opt.Workspace = None,
) -> None:
    """Download a dataset or weight file listed in data_manifests/, resuming partial files; each file is
    checked against its published sha256, else against the sha256 pinned on its first download."""
    from hagekit.data.download import download
    from hagekit.data.manifests import list_manifests, load_manifest
    from hagekit.errors import ConfigError
    from hagekit.io.paths import child_path
    from hagekit.workspace import Workspace

    if show or (name is None and manifest is None):
        _print_manifests(list_manifests())
        if not show:
            raise ConfigError("NAME: give a manifest name (listed above) or --manifest FILE")
        return
    man = load_manifest(manifest if manifest is not None else name)  # type: ignore[arg-type]
    dest = out if out is not None else child_path(Workspace.resolve(workspace).root / "raw", man.name, what="manifest name")
    with reporting() as progress:
        result = download(man, dest, files=split_csv(files), extract=extract, progress=progress)
    _print_download(result)


def _print_manifests(manifests: list[Any]) -> None:
    from rich.table import Table

    table = Table(title="built-in manifests (hagekit/data_manifests)")
    for col in ("name", "kind", "files", "licence", "access"):
        table.add_column(col)
    for m in manifests:
        table.add_row(m.name, m.kind, str(len(m.files)), m.licence, m.access)
    console.print(table)


def _print_download(result: Any) -> None:
    from rich.table import Table

    table = Table(title=f"{result.name} -> {result.folder}")
    for col, justify in (("file", "left"), ("bytes", "right"), ("sha256", "left"), ("status", "left"), ("check", "left")):
        table.add_column(col, justify=justify)  # type: ignore[arg-type]
    for f in result.files:
        table.add_row(f.name, f"{f.size:,}", f.sha256[:16] + "…", f.status, f.check_text)
    console.print(table)
    if result.unverified:
        console.print(
            f"[yellow]{len(result.unverified)} file(s) have no published checksum: their sha256 is pinned in "
            f"{result.lock} and every later download into this folder is verified against it[/]"
        )


def register(app: typer.Typer) -> None:
    """Add the ``data`` command group to the root app."""
    app.add_typer(data_app, name="data")


def _register_hest_bench_task() -> None:
    from hagekit.cli.bench_hest import hest_bench_task

    data_app.command("hest-bench-task", no_args_is_help=True)(hest_bench_task)


_register_hest_bench_task()
