"""Gene lists (panels): plain text, one symbol per line; ``#`` comments and blanks ignored."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hagekit.errors import DataError, at
from hagekit.io.atomic import write_text

__all__ = ["read_gene_list", "write_gene_list", "read_text_file"]


def read_text_file(path: Path | str, what: str) -> str:
    """A UTF-8 text file's content without a leading BOM; binary files are refused by name."""
    path = Path(path)
    if path.is_dir():
        raise DataError(at(path, f"is a directory, expected a {what} file"))
    data = path.read_bytes()
    if b"\x00" in data[:65536]:
        raise DataError(at(path, f"binary file, not a {what} (expected UTF-8 text)"))
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(at(path, f"not UTF-8 text (byte {exc.start}); expected a {what}")) from None


def read_gene_list(path: Path | str) -> list[str]:
    """Read a gene panel; refuses a missing or empty file and duplicated symbols."""
    path = Path(path)
    if not path.is_file():
        raise DataError(at(path, "gene list not found"))
    genes: list[str] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(read_text_file(path, "gene list").splitlines(), start=1):
        symbol = line.split("#", 1)[0].strip()
        if not symbol:
            continue
        if len(symbol.split()) > 1:
            raise DataError(at(path, f"line {lineno}: expected one gene symbol, got {line.strip()!r}"))
        if symbol in seen:
            raise DataError(at(path, f"line {lineno}: gene {symbol} already listed on line {seen[symbol]}"))
        seen[symbol] = lineno
        genes.append(symbol)
    if not genes:
        raise DataError(at(path, "gene list is empty"))
    return genes


def write_gene_list(path: Path | str, genes: Iterable[str]) -> Path:
    """Write a gene panel atomically, one symbol per line; refuses an empty list."""
    genes = list(genes)
    if not genes:
        raise DataError(at(path, "refusing to write an empty gene list"))
    return write_text(path, "\n".join(genes) + "\n")
