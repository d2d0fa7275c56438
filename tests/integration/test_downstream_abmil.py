"""AB-MIL end to end on the real slides in ``../shared/data/wsi``: tiles -> builtin features -> bags.

Only two usable real slides exist here, so the labelled set is built from tile subsets of
them (several bags per slide, labelled by their source slide, each bag its own case). This
checks that the pipeline runs on real slides and real feature files (tiling, extraction,
CV, attention, heatmap over the real thumbnail); it says nothing about accuracy.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app

runner = CliRunner()
SLIDES = ("cmu-1-small-region", "tcga-cr-7395-01a-01-ts1")
# 10x (1 um/px), 224 px tiles: a few dozen tiles, enough for bags and cheap on CPU; the TCGA
# slide has no mpp metadata, so --mpp 0.5 is given (it also overrides CMU-1's 0.499)
TILING = {"mpp": 0.5, "target_mpp": 1.0, "tile_size": 224}


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def slide_features(wsi_dir, tmp_path_factory) -> Path:
    """Builtin features of the two real slides, through hagekit extract."""
    from hagekit.bench.downstream.abmil import SlideExtraction, extract_slide_features

    out = tmp_path_factory.mktemp("wsi_features") / "builtin"
    slides = {s: wsi_dir / f"{s}.svs" for s in SLIDES}
    fdir, failed = extract_slide_features(slides, "builtin", features_dir=out,
                                          extraction=SlideExtraction(num_workers=0, device="cpu", **TILING))
    assert failed == {}
    return fdir


def make_bags(features_dir: Path, bags_dir: Path, per_slide: int = 5, seed: int = 0) -> Path:
    """Full-slide bags (named as the slides) plus ``per_slide`` random tile subsets per slide."""
    from hagekit.io.h5 import read_features, write_features

    rng = np.random.default_rng(seed)
    bags_dir.mkdir(parents=True, exist_ok=True)
    rows = ["slide_id,label,case_id"]
    for label, s in enumerate(SLIDES):
        ff = read_features(features_dir / f"{s}.h5")
        assert ff.n >= 6, f"{s}: only {ff.n} tiles"
        shutil.copy(features_dir / f"{s}.h5", bags_dir / f"{s}.h5")
        rows.append(f"{s},{'AB'[label]},{s}")
        for b in range(per_slide):
            rows_b = np.sort(rng.choice(ff.n, size=max(3, ff.n // 2), replace=False))
            write_features(
                bags_dir / f"{s}_bag{b}.h5", ff.features[rows_b], ff.coords[rows_b],
                attrs=ff.attrs, coords_attrs=ff.coords_attrs,
            )
            rows.append(f"{s}_bag{b},{'AB'[label]},{s}_bag{b}")
    (bags_dir / "labels.csv").write_text("\n".join(rows) + "\n")
    return bags_dir / "labels.csv"


def test_abmil_on_real_slide_features_with_heatmap(slide_features, wsi_dir, tmp_path):
    labels = make_bags(slide_features, tmp_path / "bags")
    out = tmp_path / "out"
    res = runner.invoke(app, [
        "bench", "abmil", "--dataset", "csv", "--labels", str(labels), "--features", f"builtin={tmp_path / 'bags'}",
        "--slides", str(wsi_dir), "--heatmap", "cmu-1-small-region", "--folds", "3", "--val-fraction", "0.25",
        "--epochs", "6", "--patience", "3", "--seed", "0", "--out", str(out),
    ])
    assert res.exit_code == 0, res.output
    summary = json.loads((out / "summary.json").read_text())
    s = summary["encoders"][0]
    assert s["encoder"] == "builtin" and len(s["folds"]) == 3
    assert all(np.isfinite(f["accuracy"]) for f in s["folds"])
    preds = (out / "builtin" / "predictions.csv").read_text().splitlines()
    assert len(preds) == 1 + 12
    heat = out / "builtin" / "heatmaps" / "cmu-1-small-region.png"
    assert heat.exists() and heat.stat().st_size > 10_000
    from hagekit.bench.downstream.abmil import read_attention

    att, coords, attrs = read_attention(out / "builtin" / "attention" / "cmu-1-small-region.h5")
    assert att.shape[0] == coords.shape[0] and float(attrs["patch_size_level0"]) == 448.0


def test_abmil_slides_mode_reuses_features_and_reports_a_broken_slide(slide_features, wsi_dir, tmp_path):
    labels = tmp_path / "labels.csv"
    labels.write_text("slide_id,label,case_id\ncmu-1-small-region,A,p1\ntcga-cr-7395-01a-01-ts1,B,p2\nbroken,A,p3\n")
    out = tmp_path / "out"
    res = runner.invoke(app, [
        "bench", "abmil", "--dataset", "csv", "--labels", str(labels), "--slides", str(wsi_dir),
        "--encoder", "builtin", "--features-root", str(slide_features.parent), "--mpp", "0.5",
        "--target-mpp", "1.0", "--tile-size", "224", "--folds", "2", "--out", str(out),
    ])
    assert res.exit_code == 2, res.output
    assert "feature extraction failed for 1 slide(s) (broken" in flat(res.output)
    assert not out.exists()
    # the good slides were reused from the cache, not recomputed
    assert sorted(p.stem for p in slide_features.glob("*.h5")) == sorted(SLIDES)
