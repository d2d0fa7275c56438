"""Decompression bombs and absurd patch sizes get one line, before any large allocation (issue 19,
item 13): a PNG of a few hundred bytes that declares 60,000 x 60,000 px is refused by
``data prepare visium`` and ``extract``, and ``extract --patch-um 1e9`` is refused."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import pytest
from clitext import flat
from toys.raw_formats import make_visium
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.errors import DataError
from hagekit.slides.reader import MAX_IMAGE_PIXELS, open_slide


def bomb_png(path: Path, width: int = 60_000, height: int = 60_000) -> Path:
    """A valid PNG header (IHDR: 8-bit RGB) declaring ``width`` x ``height`` with one tiny IDAT."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (1 + 3 * 64))  # the first row's start: the rest is missing
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b""))
    return path


def _one_line(res, *needles: str) -> None:
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    for n in needles:
        assert n in flat(res.stderr), res.stderr


def test_bomb_is_small_and_refused_before_decoding(tmp_path: Path) -> None:
    png = bomb_png(tmp_path / "bomb.png")
    assert png.stat().st_size < 400
    with pytest.raises(DataError, match=r"bomb.png: declares [0-9,x ]+ px \(3.6 Gpx\), more than the 1.5 Gpx"):
        open_slide(png)
    with pytest.raises(DataError, match=r"mid.png: declares 45,000 x 40,000 px \(1.8 Gpx\)"):  # between ours and PIL's
        open_slide(bomb_png(tmp_path / "mid.png", 45_000, 40_000))
    under = bomb_png(tmp_path / "fine.png", 30_000, 30_000)  # 0.9 Gpx: a real full-resolution Visium image size
    assert 30_000 * 30_000 <= MAX_IMAGE_PIXELS
    with pytest.raises(DataError) as info:
        open_slide(under)
    assert "declares" not in str(info.value)  # passes the size check; fails only as a truncated file


def test_prepare_visium_refuses_the_bomb(tmp_path: Path) -> None:
    outs, _ = make_visium(tmp_path / "outs")
    png = bomb_png(tmp_path / "bomb.png")
    res = CliRunner().invoke(app, ["-q", "data", "prepare", "visium", "--raw", str(outs), "--image", str(png),
                                   "--name", "S1", "--out", str(tmp_path / "data")])
    _one_line(res, str(png), "declares", "(3.6 Gpx)")
    assert not list((tmp_path / "data").rglob("*.h5ad")) if (tmp_path / "data").exists() else True


@pytest.fixture
def prepared(tmp_path: Path) -> tuple[Path, Path]:
    """A prepared Visium section in a workspace, and its image path."""
    import anndata as ad

    from hagekit.data.section import section_image_path

    outs, image = make_visium(tmp_path / "outs")
    ws = tmp_path / "ws"
    res = CliRunner().invoke(app, ["-q", "data", "prepare", "visium", "--raw", str(outs), "--image", str(image),
                                   "--name", "S1", "--workspace", str(ws)])
    assert res.exit_code == 0, res.output
    sec = ws / "data" / "visium" / "S1.h5ad"
    return ws, Path(section_image_path(ad.read_h5ad(sec), sec))


def test_extract_refuses_a_bomb_swapped_in_after_prepare(prepared: tuple[Path, Path], one_torch_thread) -> None:
    ws, image = prepared
    bomb_png(image)  # same path, now a bomb
    res = CliRunner().invoke(app, ["-q", "extract", "--dataset", "visium", "--encoder", "builtin", "--device", "cpu",
                                   "--workspace", str(ws)])
    assert res.exit_code != 0
    failed = [ln for ln in flat(res.stderr).split(" failed ") if "S1.h5ad" in ln]
    assert failed and "(3.6 Gpx), more than the 1.5 Gpx" in failed[0], res.stderr
    assert "Traceback" not in res.output + res.stderr


@pytest.mark.parametrize("value", ["1e9", "2001", "0", "-5"])
def test_extract_patch_um_bounds(prepared: tuple[Path, Path], value: str) -> None:
    ws, _ = prepared
    res = CliRunner().invoke(app, ["-q", "extract", "--dataset", "visium", "--encoder", "builtin", "--device", "cpu",
                                   "--workspace", str(ws), "--patch-um", value])
    _one_line(res, "--patch-um")
    assert not (ws / "features").exists() or not list((ws / "features").rglob("*.h5"))


@pytest.mark.parametrize("tile", ["1000000", "4097", "4"])
def test_extract_tile_size_bounds(tmp_path: Path, tile: str) -> None:
    from toys.raw_formats import write_pyramid_tiff

    slides = tmp_path / "slides"
    slides.mkdir()
    write_pyramid_tiff(slides / "s.tif")
    res = CliRunner().invoke(app, ["-q", "extract", "--slides", str(slides), "--encoder", "builtin", "--device", "cpu",
                                   "--out", str(tmp_path / "out"), "--tile-size", tile])
    _one_line(res, "--tile-size: must be 8 to 4096 px")
    assert not (tmp_path / "out").exists() or not list((tmp_path / "out").rglob("*.h5"))
