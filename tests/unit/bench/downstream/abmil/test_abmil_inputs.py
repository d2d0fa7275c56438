"""AB-MIL inputs: CLAM labels CSV, CLAM/TRIDENT feature files, case-grouped folds, clear errors."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
from clitext import flat
from PIL import Image
from typer.testing import CliRunner

from hagekit.bench.downstream.abmil import (
    BagStore,
    draw_attention_heatmap,
    find_feature_files,
    find_slide_files,
    make_slide_folds,
    patch_size_level0,
    read_slide_labels,
)
from hagekit.cli.main import app
from hagekit.errors import ConfigError, DataError, ProvenanceError
from hagekit.io.h5 import write_features

runner = CliRunner()


def write_csv(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_labels_csv_presets_cases_and_order(tmp_path):
    lab = read_slide_labels(
        write_csv(tmp_path / "l.csv", "case_id,slide_id,label\nTCGA-A1-0001,TCGA-A1-0001-01Z-00-DX1,IDC\n"
                  "TCGA-A1-0002,TCGA-A1-0002-01Z-00-DX1.svs,ilc\n"),
        dataset="tcga-brca",
    )
    assert lab.class_names == ["IDC", "ILC"] and lab.labels.tolist() == [0, 1]
    assert lab.slide_ids[1] == "TCGA-A1-0002-01Z-00-DX1"  # extension stripped
    no_case = read_slide_labels(
        write_csv(tmp_path / "n.csv", "slide_id,label\nTCGA-A1-0001-01Z-00-DX1,IDC\nTCGA-A1-0001-01Z-00-DX2,IDC\n"
                  "TCGA-B2-0003-01Z-00-DX1,\"Lobular carcinoma, NOS\"\n"),
        dataset="tcga-brca",
    )
    assert no_case.case_ids == ["TCGA-A1-0001", "TCGA-A1-0001", "TCGA-B2-0003"]
    assert no_case.labels.tolist() == [0, 0, 1]
    sln = read_slide_labels(write_csv(tmp_path / "s.csv", "slide_id,label\na,1\nb,0\nc,positive\nd,Normal\n"), dataset="sln-breast")
    assert sln.labels.tolist() == [1, 0, 1, 0] and sln.case_ids == ["a", "b", "c", "d"]
    gen = read_slide_labels(write_csv(tmp_path / "g.csv", "slide_id,label\na,10\nb,2\nc,2\n"))
    assert gen.class_names == ["2", "10"] and gen.labels.tolist() == [1, 0, 0]


@pytest.mark.parametrize(
    "text, dataset, message",
    [
        ("slide,label\na,IDC\n", "tcga-brca", "no 'slide_id' column"),
        ("slide_id,label\na,IDC\na,ILC\n", "tcga-brca", "duplicate slide_id a"),
        ("slide_id,label\na,IDC\nb,DCIS\n", "tcga-brca", "DCIS not valid for tcga-brca"),
        ("slide_id,label\na,IDC\nb,IDC\n", "tcga-brca", "at least 2 classes"),
        ("slide_id,label\na,\nb,x\n", "csv", "empty label"),
        ("slide_id,label\n", "csv", "no slides"),
    ],
)
def test_labels_csv_errors(tmp_path, text, dataset, message):
    with pytest.raises(DataError, match=message):
        read_slide_labels(write_csv(tmp_path / "l.csv", text), dataset=dataset)


def test_unknown_dataset_and_missing_csv(tmp_path):
    with pytest.raises(ConfigError, match="choose from tcga-brca, sln-breast, csv"):
        read_slide_labels(tmp_path / "x.csv", dataset="camelyon")
    with pytest.raises(DataError, match="labels CSV not found"):
        read_slide_labels(tmp_path / "x.csv")


def test_slide_folds_group_cases_and_hold_out_validation():
    y = np.array([0, 1] * 20)
    cases = [f"c{i // 3}" for i in range(40)]  # several slides per case
    folds = make_slide_folds(y, cases, n_folds=5, val_fraction=0.2, seed=0)
    all_test = []
    for tr, va, te in folds:
        c_tr, c_va, c_te = ({cases[i] for i in part} for part in (tr, va, te))
        assert not (c_tr & c_te) and not (c_tr & c_va) and not (c_va & c_te)
        assert va.size > 0 and tr.size > va.size
        all_test += te.tolist()
    assert sorted(all_test) == list(range(40))
    with pytest.raises(ConfigError, match="at least 5 cases"):
        make_slide_folds(y[:6], cases[:6], n_folds=5, val_fraction=0.2, seed=0)


def test_clam_and_trident_feature_files(tmp_path):
    clam = tmp_path / "clam"
    (clam / "h5_files").mkdir(parents=True)
    with h5py.File(clam / "h5_files" / "s1.h5", "w") as h5:  # CLAM: (1, N, D) + coords attrs
        h5.create_dataset("features", data=np.ones((1, 4, 8), np.float32))
        c = h5.create_dataset("coords", data=np.array([[[0, 0], [512, 0], [0, 512], [512, 512]]]))
        c.attrs["patch_size"] = 256
        c.attrs["patch_level"] = 0
        c.attrs["downsample"] = np.array([2.0, 2.0])
    files = find_feature_files(clam, ["s1"])
    store = BagStore(files)
    assert store.check() == 8
    feats, coords = store.get("s1")
    assert feats.shape == (4, 8) and coords.shape == (4, 2)
    assert patch_size_level0(store.attrs["s1"], coords) == 512.0
    trident = tmp_path / "trident"
    trident.mkdir()
    write_features(trident / "s1.h5", np.zeros((3, 8)), np.array([[0, 0], [448, 0], [0, 448]]),
                   coords_attrs={"patch_size": 224, "patch_size_level0": 448})
    st = BagStore(find_feature_files(trident, ["s1"]))
    st.get("s1")
    assert patch_size_level0(st.attrs["s1"], np.zeros((1, 2))) == 448.0
    with pytest.raises(DataError, match="no feature file for 1 of 2 slides"):
        find_feature_files(trident, ["s1", "s2"])
    assert list(find_feature_files(trident, ["s1", "s2"], allow_missing=True)) == ["s1"]


def test_mixed_encoders_are_refused(tmp_path):
    write_features(tmp_path / "a.h5", np.zeros((2, 8)), np.zeros((2, 2)), attrs={"encoder": "uni"})
    write_features(tmp_path / "b.h5", np.zeros((2, 16)), np.zeros((2, 2)), attrs={"encoder": "uni"})
    with pytest.raises(ProvenanceError, match="16-d"):
        BagStore({"a": tmp_path / "a.h5", "b": tmp_path / "b.h5"}).check()
    write_features(tmp_path / "b.h5", np.zeros((2, 8)), np.zeros((2, 2)), attrs={"encoder": "builtin"})
    with pytest.raises(ProvenanceError, match="encoder"):
        BagStore({"a": tmp_path / "a.h5", "b": tmp_path / "b.h5"}).check()


def test_heatmap_over_a_plain_image_slide(tmp_path):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(150, 255, (600, 800, 3), dtype=np.uint8)).save(tmp_path / "slideA.png")
    coords = np.array([[x, y] for y in range(0, 600, 200) for x in range(0, 800, 200)])
    att = np.linspace(0, 1, len(coords))
    with h5py.File(tmp_path / "att.h5", "w") as h5:
        h5.create_dataset("attention", data=att / att.sum())
        h5.create_dataset("coords", data=coords)
        h5.attrs["patch_size_level0"] = 200.0
        h5.attrs["label"] = "tumor"
        h5.attrs["pred"] = "tumor"
    slides = find_slide_files(tmp_path, ["slideA"])
    png = draw_attention_heatmap(slides["slideA"], tmp_path / "att.h5", tmp_path / "maps" / "slideA.png", max_size=400)
    img = np.asarray(Image.open(png))
    assert img.shape[0] > 100 and img.shape[1] > 100
    with pytest.raises(DataError, match="no slide file for 1 of 1"):
        find_slide_files(tmp_path, ["slideB"])
    # gdc-client layout: <file uuid>/<slide id>.svs
    (tmp_path / "0a1b-uuid").mkdir()
    (tmp_path / "0a1b-uuid" / "TCGA-A1-A0SB-01Z-00-DX1.B34C.svs").write_bytes(b"")
    found = find_slide_files(tmp_path, ["TCGA-A1-A0SB-01Z-00-DX1.B34C", "slideA"])
    assert found["TCGA-A1-A0SB-01Z-00-DX1.B34C"].parent.name == "0a1b-uuid"


def test_cli_bad_inputs_fail_in_one_line_without_output(tmp_path):
    feats = tmp_path / "feats"
    feats.mkdir()
    labels = write_csv(tmp_path / "l.csv", "slide_id,label,case_id\n" + "".join(f"s{i},{i % 2},c{i}\n" for i in range(6)))
    for i in range(6):
        write_features(feats / f"s{i}.h5", np.ones((3, 4)) * i, np.zeros((3, 2)))
    out = tmp_path / "out"
    cases = [
        (["--dataset", "tcga", "--labels", str(labels), "--features", str(feats)], "unknown slide dataset"),
        (["--dataset", "csv", "--labels", str(labels)], "give --slides DIR"),
        (["--dataset", "csv", "--labels", str(labels), "--features", str(feats), "--encoder", "builtin"], "not both"),
        (["--dataset", "csv", "--labels", str(labels), "--features", str(feats), "--folds", "7"], "at least 7 cases"),
        (["--dataset", "csv", "--labels", str(labels), "--features", str(tmp_path / "nope")], "features folder not found"),
        (["--dataset", "csv", "--labels", str(labels), "--features", str(feats), "--heatmap", "s9"], "s9 not in the labels CSV"),
        (["--dataset", "csv", "--labels", str(labels), "--features", str(feats), "--heatmap", "s1"], "needs --slides"),
        (["--dataset", "csv", "--labels", str(labels), "--features", str(feats), "--val-fraction", "0.7"], "--val-fraction"),
    ]
    for args, message in cases:
        res = runner.invoke(app, ["bench", "abmil", *args, "--out", str(out)])
        assert res.exit_code == 2, (args, res.output)
        assert message in flat(res.output), (args, res.output)
        assert not out.exists()


def test_empty_bag_is_refused_before_training(tmp_path):
    write_features(tmp_path / "a.h5", np.zeros((0, 8)), np.zeros((0, 2)))
    with pytest.raises(DataError, match="no tiles in this bag"):
        BagStore({"a": tmp_path / "a.h5"}).check()
