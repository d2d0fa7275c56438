"""All 36 real HER2ST sections prepare; C2..C6 carry images; spot counts match the files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.section import list_sections, read_section

SECTIONS = [f"{p}{i}" for p in "ABCD" for i in range(1, 7)] + [f"{p}{i}" for p in "EFGH" for i in range(1, 4)]
WITH_IMAGE = {"C2", "C3", "C4", "C5", "C6"}


def _ids_in_counts(path: Path) -> list[str]:
    with gzip.open(path, "rb") as fh:
        lines = fh.read().split(b"\n")[1:]
    return [ln.split(b"\t", 1)[0].decode() for ln in lines if ln.strip()]


def test_all_36_sections_prepare(her2_root: Path) -> None:
    infos = list_sections(her2_root, "her2st")
    assert sorted(i.section for i in infos) == sorted(SECTIONS)
    assert {i.section for i in infos if i.has_image} == WITH_IMAGE
    assert {i.patient for i in infos} == set("ABCDEFGH")
    for i in infos:
        if i.has_image:
            # 200 µm array pitch over ~290 px: ~0.69 µm/px (see hagekit/data/her2st.py)
            assert 0.66 < i.mpp < 0.72, (i.section, i.mpp)
            assert Path(i.image_path).is_file()
        else:
            assert np.isnan(i.mpp)
        assert 170 <= i.n_spots <= 720 and i.n_genes > 14000


def test_spot_counts_match_the_files(her2_root: Path, her2st_raw: Path) -> None:
    data = her2st_raw / "data"
    for info in list_sections(her2_root, "her2"):
        s = info.section
        counts_ids = set(_ids_in_counts(data / "ST-cnts" / f"{s}.tsv.gz"))
        spots = pd.read_csv(data / "ST-spotfiles" / f"{s}_selection.tsv", sep="\t")
        spot_ids = {f"{x}x{y}" for x, y in zip(spots["x"], spots["y"], strict=True)}
        assert info.n_spots == len(counts_ids & spot_ids), s


def test_values_pixels_and_labels_match_the_sources(her2_root: Path, her2st_raw: Path) -> None:
    data = her2st_raw / "data"
    a = read_section(her2_root / "her2" / "C2.h5ad")
    df = pd.read_csv(data / "ST-cnts" / "C2.tsv.gz", sep="\t", index_col=0)
    np.testing.assert_array_equal(a.X.toarray(), df.loc[list(a.obs_names), list(a.var_names)].to_numpy())
    spots = pd.read_csv(data / "ST-spotfiles" / "C2_selection.tsv", sep="\t")
    spots.index = [f"{x}x{y}" for x, y in zip(spots["x"], spots["y"], strict=True)]
    np.testing.assert_allclose(a.obsm["spatial"], spots.loc[list(a.obs_names), ["pixel_x", "pixel_y"]].to_numpy())
    thumb = a.uns["spatial"]["C2"]["images"]["lowres"]
    assert max(thumb.shape[:2]) == 600
    a1 = read_section(her2_root / "her2" / "A1.h5ad")
    assert (a1.obs["label"] != "").sum() == a1.n_obs
    assert "invasive cancer" in set(a1.obs["label"])


def test_list_shows_counts_only_sections(her2_root: Path) -> None:
    result = CliRunner().invoke(app, ["data", "list", str(her2_root)], env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "36 section(s)" in flat(result.output)
    assert flat(result.output).count("no (counts only)") == 31
    assert "her2: 36 sections, 5 with image" in flat(result.output)
