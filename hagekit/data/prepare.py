"""The shared prepare driver and the pieces every reader needs.

Readers (her2st, cscc, visium, hest) find their sections and hand back
:class:`SectionSource` objects; :func:`prepare_dataset` checks them (no section named twice),
skips sections already prepared (resume) unless ``overwrite``, and writes each section
atomically, so a failure never leaves a half-written file under a final name.
"""

from __future__ import annotations

import contextlib
import gzip
import logging
import re
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, reporter_or_null

if TYPE_CHECKING:
    import anndata
    import pandas as pd
    import scipy.sparse as sp

__all__ = [
    "SectionSource",
    "PreparedSection",
    "PrepareReport",
    "CountsTable",
    "prepare_dataset",
    "prepare_layout",
    "read_counts_tsv",
    "read_table",
    "match_barcodes",
    "select_sections",
    "require_dir",
    "require_file",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SectionSource:
    """One section a reader found: its name, patient, input files and a builder of its AnnData."""

    section: str
    patient: str
    files: tuple[Path, ...]
    build: Callable[[], anndata.AnnData]
    has_image: bool = True


@dataclass(frozen=True)
class PreparedSection:
    """What happened to one section: written or kept, its summary and dropped spots."""

    section: str
    path: Path
    status: str  # "written" | "kept"
    n_spots: int
    n_genes: int
    has_image: bool
    mpp: float
    patient: str
    dropped: int = 0
    array: str = ""


@dataclass
class PrepareReport:
    """The outcome of :func:`prepare_dataset` (the CLI prints it as a table)."""

    dataset: str
    folder: Path
    sections: list[PreparedSection] = field(default_factory=list)

    @property
    def written(self) -> list[Path]:
        return [s.path for s in self.sections if s.status == "written"]

    @property
    def kept(self) -> list[Path]:
        return [s.path for s in self.sections if s.status == "kept"]


def require_dir(path: Path | str, what: str = "folder") -> Path:
    """Return ``path`` if it is a directory, else raise a one-line :class:`DataError`."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(at(path, f"{what} not found"))
    return path


def require_file(path: Path | str, what: str = "file") -> Path:
    """Return ``path`` if it is a file, else raise a one-line :class:`DataError`."""
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, f"{what} not found"))
    return path


def select_sections(found: Sequence[str], wanted: Sequence[str] | None, *, option: str = "--sections") -> list[str]:
    """Keep the ``wanted`` sections (in that order) of those ``found``; all when ``wanted`` is None."""
    if not wanted:
        return list(found)
    seen: set[str] = set()
    for name in wanted:
        if name in seen:
            raise ConfigError(f"{option}: section {name!r} named twice")
        seen.add(name)
    missing = [w for w in wanted if w not in set(found)]
    if missing:
        shown = ", ".join(list(found)[:40]) + (" ..." if len(found) > 40 else "")
        raise ConfigError(f"{option}: unknown section(s) {', '.join(missing)} (valid choices: {shown})")
    return list(wanted)


def prepare_layout(
    find: Callable[..., Sequence[SectionSource]],
    raw: Path | str,
    selection: Sequence[str] | None,
    out_root: Path | str,
    dataset: str,
    **kwargs: Any,
) -> PrepareReport:
    """``find(raw, selection, dataset=...)`` then :func:`prepare_dataset`: every published layout's
    ``prepare_*`` (her2st, cscc, hest), with the dataset name made canonical first."""
    from hagekit.workspace import canonical_dataset

    ds = canonical_dataset(dataset)
    return prepare_dataset(find(raw, selection, dataset=ds), out_root, ds, **kwargs)


def prepare_dataset(
    sources: Sequence[SectionSource],
    out_root: Path | str,
    dataset: str,
    *,
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> PrepareReport:
    """Write each source as ``<out_root>/<dataset>/<section>.h5ad``; keep finished ones unless ``overwrite``.

    Raises :class:`DataError` before writing anything if two sources share a section name.
    """
    from hagekit.data.section import section_info, write_section
    from hagekit.workspace import canonical_dataset

    ds = canonical_dataset(dataset)
    folder = Path(out_root) / ds
    by_name: dict[str, SectionSource] = {}
    for src in sources:
        if src.section in by_name:
            first = by_name[src.section].files[0] if by_name[src.section].files else "?"
            other = src.files[0] if src.files else "?"
            raise DataError(at(other, f"section {src.section!r} named twice (also {first}); rename or remove one"))
        if not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", src.section):
            raise DataError(at(src.files[0] if src.files else src.section, f"section name {src.section!r} is not a safe file name"))
        by_name[src.section] = src
    if not sources:
        raise DataError(at(out_root, "no sections to prepare"))
    report = PrepareReport(dataset=ds, folder=folder)
    rep = reporter_or_null(progress)
    task = rep.task(f"prepare {ds}", total=len(sources))
    from hagekit.io.locks import each_locked

    def one(src: SectionSource) -> None:
        path = folder / f"{src.section}.h5ad"
        if path.exists() and not overwrite:
            info = section_info(path)
            report.sections.append(
                PreparedSection(src.section, path, "kept", info.n_spots, info.n_genes, info.has_image, info.mpp, info.patient,
                                array=info.array)
            )
            log.info("%s: already prepared, kept (use --overwrite to redo)", path)
            task.advance(1, status=f"{src.section} kept")
            return
        adata = src.build()
        write_section(adata, path)
        meta = adata.uns["hagekit"]
        report.sections.append(
            PreparedSection(
                src.section,
                path,
                "written",
                int(adata.n_obs),
                int(adata.n_vars),
                bool(meta["has_image"]),
                float(meta["mpp"]),
                str(meta["patient"]),
                int(meta.get("n_dropped_spots", 0)),
                str(meta.get("array", "")),
            )
        )
        del adata
        task.advance(1, status=src.section)

    new_dirs = [d for d in (folder, *folder.parents) if not d.exists()]
    try:  # under per-section locks: two prepares into one folder write each section once
        each_locked(sources, lambda s: folder, lambda s: f".{s.section}.h5ad", one)
    except BaseException:
        for d in new_dirs:  # a failed first section leaves no empty folders (the locks made them)
            with contextlib.suppress(OSError):
                d.rmdir()
        raise
    finally:
        task.close()
    order = {s.section: i for i, s in enumerate(sources)}
    report.sections.sort(key=lambda p: order[p.section])
    return report


# Tables -----------------------------------------------------------------------------------


def _read_bytes(path: Path) -> bytes:
    """File contents, gunzipped when the file is gzip (by magic bytes, not by name)."""
    path = require_file(path)
    try:
        with path.open("rb") as fh:
            head = fh.read(2)
        if head == b"\x1f\x8b":
            with gzip.open(path, "rb") as fh:
                return fh.read()
        return path.read_bytes()
    except (OSError, EOFError, gzip.BadGzipFile) as exc:
        raise DataError(at(path, f"not a readable (gzip) text file ({exc})")) from None


def read_table(
    path: Path | str,
    *,
    required: Sequence[str] = (),
    sep: str | None = None,
    what: str = "table",
    names: Sequence[str] | None = None,
) -> pd.DataFrame:
    """Read a small TSV/CSV (gzip or plain) with pandas, checking that ``required`` columns exist.

    ``names`` reads a file without a header row under these column names.
    """
    import io

    import pandas as pd

    path = Path(path)
    raw = _read_bytes(require_file(path, what))
    if sep is None:
        first = raw.split(b"\n", 1)[0]
        sep = "\t" if first.count(b"\t") >= first.count(b",") else ","
    try:
        if names is None:
            df = pd.read_csv(io.BytesIO(raw), sep=sep)
        else:
            df = pd.read_csv(io.BytesIO(raw), sep=sep, header=None)
            if df.shape[1] != len(names):
                raise DataError(at(path, f"expected {len(names)} columns ({', '.join(names)}), found {df.shape[1]}"))
            df.columns = list(names)
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as exc:
        raise DataError(at(path, f"not a readable {what} ({exc})".replace("\n", " "))) from None
    df.columns = [str(c).strip() for c in df.columns]
    missing = [c for c in required if c not in df.columns]
    if missing:
        raise DataError(at(path, f"{what} lacks column(s) {', '.join(missing)} (has {', '.join(map(str, df.columns[:10]))})"))
    return df


@dataclass(frozen=True)
class CountsTable:
    """A spots x genes count matrix with its row (barcode) and column (gene) names."""

    barcodes: list[str]
    genes: list[str]
    counts: sp.csr_matrix
    path: Path


def read_counts_tsv(path: Path | str) -> CountsTable:
    """Read a spots x genes TSV (gzip or plain; header = genes, first column = spot id).

    Fast path: NumPy's C text parser over the numeric block (~10x pandas); on anything it
    cannot parse, a row-by-row pass finds the offending value for the error message.
    Counts must be finite, non-negative integers.
    """
    import scipy.sparse as sp

    path = Path(path)
    raw = _read_bytes(require_file(path, "counts file"))
    lines = raw.replace(b"\r\n", b"\n").split(b"\n")
    if not lines or not lines[0].strip():
        raise DataError(at(path, "counts file is empty"))
    header = lines[0].decode("utf-8", "replace").split("\t")
    genes = [g.strip().strip('"') for g in header[1:]]
    n_genes = len(genes)
    if n_genes == 0:
        raise DataError(at(path, "counts header names no genes (expected tab-separated: spot id, then genes)"))
    barcodes: list[str] = []
    rows: list[bytes] = []
    for k, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        parts = line.split(b"\t", 1)
        if len(parts) < 2 or parts[1].count(b"\t") != n_genes - 1:
            n_vals = 0 if len(parts) < 2 else parts[1].count(b"\t") + 1
            raise DataError(at(path, f"line {k} has {n_vals} values but the header names {n_genes} genes"))
        barcodes.append(parts[0].decode("utf-8", "replace").strip().strip('"'))
        rows.append(parts[1])
    if not rows:
        raise DataError(at(path, "counts file has no spots"))
    values = _parse_numeric(rows, n_genes)
    if values is None:
        values = _parse_slow(rows, n_genes, barcodes, genes, path)
    values = values.reshape(len(rows), n_genes)
    _check_counts(values, barcodes, genes, path)
    counts = sp.csr_matrix(values.astype(np.int32))
    return CountsTable(barcodes=barcodes, genes=genes, counts=counts, path=path)


def _parse_numeric(rows: list[bytes], n_genes: int) -> np.ndarray | None:
    """Parse the numeric block with NumPy's C parser: integers first (fast), then floats."""
    body = b"\t".join(rows)
    for dtype in (np.int64, np.float64):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                values = np.fromstring(body, dtype=dtype, sep="\t")  # type: ignore[call-overload]
        except (ValueError, DeprecationWarning):
            continue
        if values.size == len(rows) * n_genes:
            return values
    return None


def _parse_slow(rows: list[bytes], n_genes: int, barcodes: list[str], genes: list[str], path: Path) -> np.ndarray:
    out = np.empty((len(rows), n_genes), dtype=np.float64)
    for i, row in enumerate(rows):
        for j, tok in enumerate(row.split(b"\t")):
            try:
                out[i, j] = float(tok)
            except ValueError:
                shown = tok.decode("utf-8", "replace").strip() or "<empty>"
                raise DataError(
                    at(path, f"non-numeric count {shown!r} at spot {barcodes[i]!r}, gene {genes[j]!r} (raw integer counts expected)")
                ) from None
    return out


def _check_counts(values: np.ndarray, barcodes: Sequence[str], genes: Sequence[str], path: Path | str) -> None:
    """Raise naming the first bad value if counts are NaN/Inf, negative or not integers."""
    is_int = np.issubdtype(values.dtype, np.integer)
    problems = (
        (lambda: not is_int and not np.isfinite(values).all(), lambda: ~np.isfinite(values), "NaN or infinite count"),
        (lambda: values.min() < 0, lambda: values < 0, "negative count"),
        (lambda: not is_int and (np.mod(values, 1) != 0).any(), lambda: np.mod(values, 1) != 0, "non-integer count"),
    )
    for failed, mask, what in problems:
        with np.errstate(invalid="ignore"):
            if not failed():
                continue
            bad = np.argwhere(mask())
        i, j = bad[0]
        raise DataError(
            at(path, f"{what} {values[i, j].item()!r} at spot {barcodes[i]!r}, gene {genes[j]!r} ({len(bad)} such values; raw integer counts expected)")
        )


def match_barcodes(
    count_ids: Sequence[str], spot_ids: Sequence[str], *, counts_file: Path | str, spots_file: Path | str, warn: bool = True
) -> tuple[np.ndarray, np.ndarray, int]:
    """Pair spots present in both the counts and the positions file; warn how many are dropped
    (unless ``warn`` is False: a caller that drops more, for other reasons, says it once).

    Returns (row indices into counts, row indices into spots, number dropped). Raises if no
    spot matches (the two files describe different sections or use other id formats).
    """
    for ids, path in ((count_ids, counts_file), (spot_ids, spots_file)):
        seen: set[str] = set()
        dup = [i for i in ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
        if dup:
            raise DataError(at(path, f"{len(dup)} duplicated spot id(s), e.g. {', '.join(map(str, dup[:3]))}; "
                               "each spot must appear once"))
    spot_pos: dict[str, int] = {}
    for k, sid in enumerate(spot_ids):
        spot_pos.setdefault(sid, k)
    ci, si = [], []
    for k, cid in enumerate(count_ids):
        j = spot_pos.get(cid)
        if j is not None:
            ci.append(k)
            si.append(j)
    if not ci:
        ex_c = ", ".join(list(count_ids)[:3])
        ex_s = ", ".join(list(spot_ids)[:3])
        raise DataError(
            at(counts_file, f"no spot id matches the positions in {spots_file} (counts ids e.g. {ex_c}; position ids e.g. {ex_s})")
        )
    only_counts = len(count_ids) - len(ci)
    only_spots = len(set(spot_ids)) - len(ci)
    dropped = only_counts + only_spots
    if dropped and warn:
        log.warning(
            "%s: dropped %d spot(s) (%d with counts but no position, %d with a position but no counts; %d kept)",
            counts_file,
            dropped,
            only_counts,
            only_spots,
            len(ci),
        )
    return np.asarray(ci, dtype=np.int64), np.asarray(si, dtype=np.int64), dropped
