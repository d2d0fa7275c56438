"""Gene embedding files: Gene2Vec text (with or without the ``_w2v`` header), ``.npy``/``.npz``
+ symbols, and ``.h5``; read, validate, match to a panel, and write with a provenance sidecar.

Gene2Vec's published ``gene2vec_dim_200_iter_9.txt`` has one gene per line (symbol, then 200
floats, space or tab separated); ``gene2vec_dim_200_iter_9_w2v.txt`` adds a first line
``count dim``. Every file hagekit writes gets a sidecar ``<file>.json`` with its provenance
(method, dataset, the sections it was trained on), so training can refuse leakage.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
from collections.abc import Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.errors import DataError, ProvenanceError, at
from hagekit.io.atomic import atomic_path
from hagekit.io.jsonfile import read_json_object

__all__ = [
    "GeneEmbeddings",
    "EMBEDDING_SUFFIXES",
    "load_gene_embeddings",
    "embeddings_for_panel",
    "embedding_training_sections",
    "read_sidecar",
    "provenance_sections",
    "sidecar_path",
    "match_symbols",
    "write_gene2vec_text",
    "write_gene_embeddings",
    "describe_provenance",
    "write_embedded_panel",
]

log = logging.getLogger(__name__)

#: Suffixes understood by :func:`load_gene_embeddings` (anything else is read as text).
EMBEDDING_SUFFIXES = (".txt", ".txt.gz", ".tsv", ".vec", ".w2v", ".npy", ".npz", ".h5", ".hdf5")
_SYMBOL_FILES = (".genes.txt", "_genes.txt", ".symbols.txt", "_symbols.txt")
_VECTOR_KEYS = ("vectors", "embeddings", "embedding", "emb", "X")
_SYMBOL_KEYS = ("symbols", "genes", "gene_names", "names", "index")


@dataclass
class GeneEmbeddings:
    """Gene vectors (n, d) float32 with their symbols, unmatched panel genes and provenance.

    When loaded against a panel, ``symbols`` are the panel's spellings in the panel's order
    (only matched genes) and ``unmatched`` lists the panel genes the file lacks.
    """

    symbols: list[str]
    vectors: np.ndarray
    unmatched: list[str] = field(default_factory=list)
    provenance: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None
    dim: int = 0

    def __post_init__(self) -> None:
        self.vectors = np.asarray(self.vectors, dtype=np.float32)
        if self.vectors.ndim != 2 or self.vectors.shape[0] != len(self.symbols):
            raise DataError(
                at(self.path or "embeddings", f"vectors {self.vectors.shape} do not match {len(self.symbols)} symbols")
            )
        self.dim = int(self.vectors.shape[1])

    def __len__(self) -> int:
        return len(self.symbols)

    def vector(self, gene: str) -> np.ndarray:
        """The vector of one gene (exact symbol, else case-insensitive); KeyError if absent."""
        idx, missing = match_symbols([gene], self.symbols)
        if missing:
            raise KeyError(gene)
        return self.vectors[idx[0]]

    def training_sections(self) -> set[str]:
        """Sections the embeddings were trained on (from the sidecar; empty if unknown)."""
        return provenance_sections(self.provenance, self.path or "embeddings")


# Matching -------------------------------------------------------------------------------


def match_symbols(genes: Sequence[str], symbols: Sequence[str]) -> tuple[list[int], list[str]]:
    """Indices into ``symbols`` for each matched gene (exact first, then case-insensitive).

    Returns ``(indices, unmatched)``: ``indices`` follow ``genes``' order, skipping genes
    not found; ``unmatched`` lists those genes in order.
    """
    exact = {s: i for i, s in reversed(list(enumerate(symbols)))}
    folded: dict[str, int] = {}
    for i, s in enumerate(symbols):
        folded.setdefault(s.casefold(), i)
    indices: list[int] = []
    unmatched: list[str] = []
    for g in genes:
        i = exact.get(g)
        if i is None:
            i = folded.get(g.casefold())
        if i is None:
            unmatched.append(g)
        else:
            indices.append(i)
    return indices, unmatched


def symbol_examples(items: Sequence[str], k: int = 5) -> str:
    shown = ", ".join(items[:k])
    return shown + (f", ... ({len(items)} in all)" if len(items) > k else "")


# Sidecar --------------------------------------------------------------------------------


def sidecar_path(path: Path | str) -> Path:
    """The provenance sidecar of an embeddings or panel file: ``<file>.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: Path | str) -> dict[str, Any]:
    """The sidecar's contents, ``{}`` when there is none; a corrupt sidecar raises DataError."""
    side = sidecar_path(path)
    if not side.is_file():
        return {}
    return read_json_object(side, what="a provenance sidecar")


def embedding_training_sections(path: Path | str) -> set[str]:
    """Sections an embeddings file was trained on, from its sidecar (empty set if unknown).

    The published Gene2Vec file has no sidecar: it was trained on other data (GEO), so it
    cannot leak a held-out section.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "gene embeddings file not found"))
    return provenance_sections(read_sidecar(path), path)


def provenance_sections(provenance: dict[str, Any], path: Path | str) -> set[str]:
    """The ``sections`` of a sidecar as a set of names: one name (``"A1"``) is that section, not
    its letters; a value of another type is one line naming the sidecar (a leak guard must never
    misread it)."""
    sections = provenance.get("sections")
    if sections is None:
        return set()
    if isinstance(sections, str):
        return {sections}
    if isinstance(sections, list) and all(isinstance(s, (str, int)) and not isinstance(s, bool) for s in sections):
        return {str(s) for s in sections}
    raise DataError(at(sidecar_path(path), f'"sections" must be a list of section names, got {sections!r}'))


# Reading --------------------------------------------------------------------------------


def load_gene_embeddings(
    path: Path | str, genes: Sequence[str] | None = None, *, symbols_file: Path | str | None = None
) -> GeneEmbeddings:
    """Read and validate a gene embeddings file; with ``genes``, keep the panel's genes in order.

    Formats by suffix: ``.npy`` (+ a symbol list ``<stem>.genes.txt`` or ``symbols_file``),
    ``.npz`` (arrays ``vectors`` and ``symbols``), ``.h5`` (datasets ``vectors`` and
    ``symbols``), anything else Gene2Vec text (``.gz`` allowed). Symbols match
    case-insensitively when an exact match is missing.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "gene embeddings file not found"))
    suffix = path.suffix.lower()
    if suffix == ".npy":
        symbols, vectors = _read_npy(path, symbols_file)
    elif suffix == ".npz":
        symbols, vectors = _read_npz(path)
    elif suffix in (".h5", ".hdf5"):
        symbols, vectors = _read_h5(path)
    else:
        symbols, vectors = _read_text(path)
    provenance = read_sidecar(path)
    if genes is None:
        return GeneEmbeddings(symbols, vectors, [], provenance, path)
    indices, unmatched = match_symbols(list(genes), symbols)
    missing = set(unmatched)
    found = [g for g in genes if g not in missing]
    if unmatched:
        log.info("%s: %d of %d panel genes have no embedding (%s)", path, len(unmatched), len(genes), symbol_examples(unmatched))
    return GeneEmbeddings(found, vectors[indices] if indices else np.zeros((0, vectors.shape[1]), np.float32),
                          unmatched, provenance, path)


def embeddings_for_panel(path: Path | str, genes: Sequence[str]) -> np.ndarray:
    """The (G, d) float32 embedding matrix of a panel, rows in panel order.

    Raises :class:`ProvenanceError` naming the panel genes the file lacks.
    """
    emb = load_gene_embeddings(path, genes)
    if emb.unmatched:
        raise ProvenanceError(
            at(
                path,
                f"{len(emb.unmatched)} of {len(genes)} panel genes have no embedding "
                f"({symbol_examples(emb.unmatched)}); keep the panel genes that have one with "
                f"`hagekit genes check {path} --genes PANEL --out matched.txt` and train with --genes matched.txt, "
                f"or build a panel inside the vocabulary with `hagekit genes select --vocab {path}`",
            )
        )
    return emb.vectors


def _open_text(path: Path) -> Iterator[str]:
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rt", encoding="utf-8-sig") as fh:  # type: ignore[operator]  # -sig: drop a BOM
            yield from fh
    except UnicodeDecodeError:
        raise DataError(at(path, "not a text embeddings file (not UTF-8); expected Gene2Vec text, .npy, .npz or .h5")) from None
    except (OSError, EOFError) as exc:
        raise DataError(at(path, f"unreadable embeddings file ({exc})")) from None


def _read_text(path: Path) -> tuple[list[str], np.ndarray]:
    """Gene2Vec text: ``SYMBOL v1 .. vd`` per line, optional ``count dim`` first line."""
    symbols: list[str] = []
    rows: list[np.ndarray] = []
    first_line: dict[str, int] = {}
    header: tuple[int, int] | None = None
    dim: int | None = None
    dim_line = 0
    n_dupes = 0
    seen_content = False
    for lineno, line in enumerate(_open_text(path), start=1):
        tokens = line.split()
        if not tokens:
            continue
        if not seen_content:
            seen_content = True
            if len(tokens) == 2 and all(_is_int(t) for t in tokens):
                header = (int(tokens[0]), int(tokens[1]))
                if header[0] < 0 or header[1] <= 0:
                    raise DataError(at(path, f"line {lineno}: bad header {line.strip()!r} (expected 'count dim')"))
                dim, dim_line = header[1], lineno
                continue
        symbol, values = tokens[0], tokens[1:]
        if not values:
            raise DataError(at(path, f"line {lineno}: gene {symbol} has no values"))
        if dim is None:
            dim, dim_line = len(values), lineno
        elif len(values) != dim:
            where = "the header" if header is not None else f"line {dim_line}"
            raise DataError(at(path, f"line {lineno}: gene {symbol} has {len(values)} values, expected {dim} (as {where})"))
        try:
            row = np.array(values, dtype=np.float64)
        except ValueError:
            bad = next(v for v in values if not _is_float(v))
            col = values.index(bad) + 2
            raise DataError(at(path, f"line {lineno}: non-numeric value {bad!r} in column {col} (gene {symbol})")) from None
        if not np.isfinite(row).all():
            col = int(np.flatnonzero(~np.isfinite(row))[0]) + 2
            raise DataError(at(path, f"line {lineno}: NaN or Inf in column {col} (gene {symbol})"))
        if symbol in first_line:
            prev = first_line[symbol]
            if not np.array_equal(rows[symbols.index(symbol)], row):
                raise DataError(at(path, f"line {lineno}: gene {symbol} repeated (first on line {prev}) with a different vector"))
            n_dupes += 1
            continue
        first_line[symbol] = lineno
        symbols.append(symbol)
        rows.append(row)
    if not rows:
        raise DataError(at(path, "no gene vectors found (expected 'SYMBOL v1 ... vd' lines)"))
    if header is not None and header[0] != len(rows) + n_dupes:
        raise DataError(at(path, f"header says {header[0]} genes but the file has {len(rows) + n_dupes}"))
    if n_dupes:
        log.warning("%s: %d repeated genes with identical vectors ignored", path, n_dupes)
    return symbols, np.vstack(rows).astype(np.float32)


def _parses(token: str, kind: type) -> bool:
    """Whether ``kind(token)`` (``int`` or ``float``) accepts the token."""
    try:
        kind(token)
    except ValueError:
        return False
    return True


def _is_int(token: str) -> bool:
    return _parses(token, int)


def _is_float(token: str) -> bool:
    return _parses(token, float)


def _check_matrix(path: Path, symbols: list[str], vectors: np.ndarray, unit: str) -> tuple[list[str], np.ndarray]:
    """Validate array-format embeddings; ``unit`` names a row ('row')."""
    if vectors.ndim != 2 or vectors.shape[1] == 0:
        raise DataError(at(path, f"vectors must be a 2-D (genes, dim) array, got shape {vectors.shape}"))
    if not np.issubdtype(vectors.dtype, np.number):
        raise DataError(at(path, f"vectors must be numeric, got dtype {vectors.dtype}"))
    if len(symbols) != vectors.shape[0]:
        raise DataError(at(path, f"{len(symbols)} symbols for {vectors.shape[0]} vectors"))
    vectors = vectors.astype(np.float32)
    bad = ~np.isfinite(vectors).all(axis=1)
    if bad.any():
        r = int(np.flatnonzero(bad)[0])
        raise DataError(at(path, f"{unit} {r + 1}: NaN or Inf (gene {symbols[r]})"))
    first: dict[str, int] = {}
    keep: list[int] = []
    for r, s in enumerate(symbols):
        if not s or len(s.split()) != 1:
            raise DataError(at(path, f"{unit} {r + 1}: invalid gene symbol {s!r}"))
        if s in first:
            if not np.array_equal(vectors[first[s]], vectors[r]):
                raise DataError(at(path, f"{unit} {r + 1}: gene {s} repeated (first at {unit} {first[s] + 1}) with a different vector"))
            continue
        first[s] = r
        keep.append(r)
    if len(keep) < len(symbols):
        log.warning("%s: %d repeated genes with identical vectors ignored", path, len(symbols) - len(keep))
    return [symbols[r] for r in keep], vectors[keep]


def _symbol_file_for(path: Path, symbols_file: Path | str | None) -> Path:
    if symbols_file is not None:
        return Path(symbols_file)
    stem = path.with_suffix("")
    for suffix in _SYMBOL_FILES:
        candidate = stem.with_name(stem.name + suffix)
        if candidate.is_file():
            return candidate
    raise DataError(
        at(path, f"no symbol list beside the .npy (expected {stem.name}.genes.txt, one symbol per line)")
    )


def _read_npy(path: Path, symbols_file: Path | str | None) -> tuple[list[str], np.ndarray]:
    from hagekit.io.genelist import read_text_file

    sym_path = _symbol_file_for(path, symbols_file)
    if not sym_path.is_file():
        raise DataError(at(sym_path, "symbol list not found"))
    symbols = [ln.strip() for ln in read_text_file(sym_path, "symbol list").splitlines() if ln.strip()]
    try:
        vectors = np.load(path, allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise DataError(at(path, f"not a readable .npy array ({exc})")) from None
    return _check_matrix(path, symbols, vectors, "row")


def _pick(keys: Sequence[str], wanted: Sequence[str], path: Path, what: str) -> str:
    for k in wanted:
        if k in keys:
            return k
    raise DataError(at(path, f"no {what} array (looked for {', '.join(wanted)}; found {', '.join(keys) or 'none'})"))


def _decode(values: np.ndarray) -> list[str]:
    return [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()]


def _read_npz(path: Path) -> tuple[list[str], np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as npz:
            keys = list(npz.files)
            vectors = npz[_pick(keys, _VECTOR_KEYS, path, "vectors")]
            symbols = _decode(npz[_pick(keys, _SYMBOL_KEYS, path, "symbols")])
    except (ValueError, OSError) as exc:
        raise DataError(at(path, f"not a readable .npz archive ({exc})")) from None
    return _check_matrix(path, symbols, vectors, "row")


def _read_h5(path: Path) -> tuple[list[str], np.ndarray]:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            keys = list(f.keys())
            vectors = np.asarray(f[_pick(keys, _VECTOR_KEYS, path, "vectors")][()])
            symbols = _decode(np.asarray(f[_pick(keys, _SYMBOL_KEYS, path, "symbols")][()]))
    except OSError as exc:
        raise DataError(at(path, f"not a readable .h5 file ({exc})")) from None
    return _check_matrix(path, symbols, vectors, "row")


# Writing --------------------------------------------------------------------------------


def _validated(symbols: Sequence[str], vectors: np.ndarray, path: Path) -> tuple[list[str], np.ndarray]:
    symbols = [str(s) for s in symbols]
    vectors = np.asarray(vectors, dtype=np.float32)
    if not symbols:
        raise DataError(at(path, "refusing to write empty gene embeddings"))
    if len(set(symbols)) != len(symbols):
        raise DataError(at(path, "duplicated gene symbols"))
    if any(not s or len(s.split()) != 1 for s in symbols):
        raise DataError(at(path, "gene symbols must be non-empty and contain no whitespace"))
    if vectors.ndim != 2 or vectors.shape[0] != len(symbols) or vectors.shape[1] == 0:
        raise DataError(at(path, f"vectors {vectors.shape} do not match {len(symbols)} symbols"))
    if not np.isfinite(vectors).all():
        raise DataError(at(path, "vectors contain NaN or Inf"))
    return symbols, vectors


def _write_with_sidecar(path: Path, provenance: dict[str, Any] | None, write_main) -> Path:
    """Write the main file and its sidecar via temporaries; rename both only on success."""
    from hagekit.io.atomic import jsonable

    side = sidecar_path(path)
    with ExitStack() as stack:
        tmp_main = stack.enter_context(atomic_path(path))
        write_main(tmp_main)
        if provenance is not None:
            tmp_side = stack.enter_context(atomic_path(side))
            tmp_side.write_text(json.dumps(jsonable(provenance), indent=2) + "\n", encoding="utf-8")
    if provenance is None and side.exists():
        os.unlink(side)  # a stale sidecar would describe other vectors
    return path


def write_gene2vec_text(
    path: Path | str,
    symbols: Sequence[str],
    vectors: np.ndarray,
    *,
    provenance: dict[str, Any] | None = None,
    header: bool = False,
) -> Path:
    """Write Gene2Vec text (``SYMBOL v1 .. vd``, ``header`` adds the ``_w2v`` ``count dim`` line).

    Atomic; values with 9 significant digits so float32 vectors round-trip exactly. The
    sidecar ``<file>.json`` gets ``provenance``.
    """
    path = Path(path)
    symbols, vectors = _validated(symbols, vectors, path)

    def write(tmp: Path) -> None:
        with open(tmp, "w", encoding="utf-8") as fh:
            if header:
                fh.write(f"{len(symbols)} {vectors.shape[1]}\n")
            for s, row in zip(symbols, vectors, strict=True):
                fh.write(s + " " + " ".join(f"{v:.9g}" for v in row.tolist()) + "\n")

    return _write_with_sidecar(path, provenance, write)


def write_gene_embeddings(
    path: Path | str,
    symbols: Sequence[str],
    vectors: np.ndarray,
    *,
    provenance: dict[str, Any] | None = None,
) -> Path:
    """Write embeddings in the format the suffix names (text, ``_w2v`` text, .npy, .npz, .h5)."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".npy":
        symbols, vectors = _validated(symbols, vectors, path)
        sym_path = path.with_suffix("").with_name(path.with_suffix("").name + ".genes.txt")

        def write_npy(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.save(fh, vectors)
            with atomic_path(sym_path) as tmp_sym:
                tmp_sym.write_text("\n".join(symbols) + "\n", encoding="utf-8")

        return _write_with_sidecar(path, provenance, write_npy)
    if suffix == ".npz":
        symbols, vectors = _validated(symbols, vectors, path)

        def write_npz(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, vectors=vectors, symbols=np.array(symbols, dtype=str))

        return _write_with_sidecar(path, provenance, write_npz)
    if suffix in (".h5", ".hdf5"):
        import h5py

        symbols, vectors = _validated(symbols, vectors, path)

        def write_h5(tmp: Path) -> None:
            with h5py.File(tmp, "w") as f:
                f.create_dataset("vectors", data=vectors)
                f.create_dataset("symbols", data=np.array(symbols, dtype=object), dtype=h5py.string_dtype())
                f.attrs["provenance"] = json.dumps(provenance or {})

        return _write_with_sidecar(path, provenance, write_h5)
    header = path.stem.lower().endswith("_w2v") or suffix == ".w2v"
    return write_gene2vec_text(path, symbols, vectors, provenance=provenance, header=header)


def describe_provenance(provenance: dict[str, Any]) -> str:
    """One line about where embeddings came from (for CLI summaries)."""
    if not provenance:
        return "no sidecar (external file, e.g. published Gene2Vec)"
    provenance_sections(provenance, "embeddings")  # of the right type
    sections = provenance.get("sections") or []
    sections = [sections] if isinstance(sections, str) else sections
    parts = [str(provenance.get("method", "unknown method"))]
    if provenance.get("dataset"):
        parts.append(f"dataset {provenance['dataset']}")
    if sections:
        parts.append(f"{len(sections)} sections ({symbol_examples([str(s) for s in sections], 6)})")
    if provenance.get("seed") is not None:
        parts.append(f"seed {provenance['seed']}")
    return ", ".join(parts)


def write_embedded_panel(
    panel_path: Path | str, embedded: Sequence[str], *, replace: bool, embeddings_path: Path | str
) -> tuple[Path, list[str]]:
    """The panel restricted to the genes that got a vector, so ``train`` accepts the pair.

    ``replace``: rewrite ``panel_path`` itself (the workspace panel), keeping the original as
    ``panel_full.txt`` (+ its sidecar); else write ``<embeddings stem>.panel.txt`` beside the
    embeddings. Returns (the panel written, the genes dropped), in panel order.
    """
    import shutil

    from hagekit.io.genelist import read_gene_list, write_gene_list

    panel_path, embeddings_path = Path(panel_path), Path(embeddings_path)
    panel = read_gene_list(panel_path)
    have = {g.upper() for g in embedded}
    kept = [g for g in panel if g.upper() in have]
    dropped = [g for g in panel if g.upper() not in have]
    if not replace:
        target = embeddings_path.with_name(embeddings_path.stem + ".panel.txt")
        return write_gene_list(target, kept), dropped
    full = panel_path.with_name("panel_full.txt")
    if not full.exists():
        shutil.copyfile(panel_path, full)
        if sidecar_path(panel_path).is_file():
            shutil.copyfile(sidecar_path(panel_path), sidecar_path(full))
    write_gene_list(panel_path, kept)
    side = read_sidecar(panel_path)
    side.update({"dropped_without_embedding": dropped, "embeddings": str(embeddings_path), "full_panel": str(full)})
    from hagekit.io.atomic import write_text

    write_text(sidecar_path(panel_path), json.dumps(side, indent=2) + "\n")
    return panel_path, dropped
