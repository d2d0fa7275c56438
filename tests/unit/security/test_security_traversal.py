"""Names from data or flags never lead a path out of its folder (issue 19, item 12).

Each case plants one hostile name (an AB-MIL labels row, an encoder name, a gene symbol, a spot
barcode, a section name, ``train --name``, a manifest's file or dataset name), runs the command
and checks: exit code 2, one line naming the name, and - listing the whole temporary tree before
and after - nothing written outside the output folder. Outputs sit five folders deep so that a
``..`` escape would still land inside the listed tree.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import yaml
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.io.h5 import write_features
from hagekit.io.paths import child_path, name_problem

DEEP = Path("d1/d2/d3/d4/d5")


@pytest.fixture(scope="module")
def synth(tmp_path_factory) -> Path:
    from hagekit.data.synthetic import SynthConfig, synthesize_dataset

    root = tmp_path_factory.mktemp("traversal_synth")
    synthesize_dataset(root, SynthConfig.resolve(n_sections=1, n_spots=36, n_genes=40, seed=3))
    return root


def _tree(root: Path) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def _abmil_case(tmp: Path, *, slide: str = "s0", encoder: str = "enc") -> tuple[list[str], Path]:
    feats, out = tmp / DEEP / "feats", tmp / DEEP / "out"
    rows = ["slide_id,label,case_id"]
    rng = np.random.default_rng(0)
    for i in range(8):
        sid = slide if i == 0 else f"s{i}"
        target = feats / f"{sid}.h5"
        target.parent.mkdir(parents=True, exist_ok=True)  # a planted file outside --features, when sid escapes
        write_features(target, rng.normal(size=(6, 4)).astype(np.float32), np.arange(12).reshape(6, 2) * 256,
                       attrs={"encoder": "toy", "patch_size_px": 256})
        rows.append(f"{sid},{i % 2},case{i}")
    labels = tmp / DEEP / "labels.csv"
    labels.write_text("\n".join(rows) + "\n")
    return ["bench", "abmil", "--dataset", "csv", "--labels", str(labels), "--features", f"{encoder}={feats}",
            "--folds", "2", "--epochs", "1", "--min-epochs", "1", "--device", "cpu", "--pack", "none",
            "--out", str(out)], out


def _section_case(tmp: Path, synth: Path, edit: Callable) -> tuple[list[str], Path, str]:
    import anndata as ad

    root = tmp / DEEP / "data"
    shutil.copytree(synth, root)
    sec = root / "synth" / "A1.h5ad"
    adata = ad.read_h5ad(sec)
    gene = edit(adata)
    adata.write_h5ad(sec)
    out = tmp / DEEP / "probe"
    return ["data", "probe-set", "--section", str(sec), "--genes", gene, "--out", str(out), "--size", "16"], out, gene


def _first_varying_gene(adata) -> str:
    x = adata.X.toarray() if hasattr(adata.X, "toarray") else np.asarray(adata.X)
    return str(adata.var_names[int(np.argmax(x.std(axis=0)))])


def _gene_named(adata) -> str:
    names = list(adata.var_names)
    names[names.index(_first_varying_gene(adata))] = "../../x"
    adata.var_names = names
    return "../../x"


def _barcode_named(adata) -> str:
    names = list(adata.obs_names)
    names[0] = "x/../../../../../y"
    adata.obs_names = names
    return _first_varying_gene(adata)


def _section_named(adata) -> str:
    meta = dict(adata.uns.get("hagekit", {}))
    meta["section"] = "../../../z"
    adata.uns["hagekit"] = meta
    return _first_varying_gene(adata)


def _manifest_case(tmp: Path, *, file_name: str = "a.bin", name: str = "mini", out: bool = True) -> tuple[list[str], Path]:
    man = tmp / DEEP / "m.yaml"
    man.parent.mkdir(parents=True, exist_ok=True)
    man.write_text(yaml.safe_dump({"name": name, "kind": "dataset", "title": "t", "licence": "l", "citation": "c",
                                   "files": [{"name": file_name, "url": "http://127.0.0.1:9/a.bin"}]}))
    ws, dest = tmp / DEEP / "ws", tmp / DEEP / "dl"
    args = ["data", "download", "--manifest", str(man), "--workspace", str(ws)]
    return ([*args, "--out", str(dest)], dest) if out else (args, ws / "raw")


CASES = {
    "abmil labels row ../../../x": (lambda tmp, s: _abmil_case(tmp, slide="../../../x"), "slide_id '../../../x'"),
    "abmil encoder name ..": (lambda tmp, s: _abmil_case(tmp, encoder=".."), "encoder name '..'"),
    "probe-set gene ../../x": (lambda tmp, s: _section_case(tmp, s, _gene_named)[:2], "gene symbol '../../x'"),
    "probe-set spot barcode": (lambda tmp, s: _section_case(tmp, s, _barcode_named)[:2], "spot barcode"),
    "probe-set section name": (lambda tmp, s: _section_case(tmp, s, _section_named)[:2], "section name '../../../z'"),
    "train --name ../../../../x": (
        lambda tmp, s: (["train", "--workspace", str(tmp / DEEP / "ws"), "--dataset", "synth", "--name", "../../../../x"],
                        tmp / DEEP / "ws" / "runs"),
        "--name '../../../../x'",
    ),
    "manifest file .": (lambda tmp, s: _manifest_case(tmp, file_name="."), "files[0].name '.'"),
    "manifest file ..": (lambda tmp, s: _manifest_case(tmp, file_name=".."), "files[0].name '..'"),
    "manifest file a/../../x": (lambda tmp, s: _manifest_case(tmp, file_name="a/../../x"), "files[0].name 'a/../../x'"),
    "manifest file absolute": (lambda tmp, s: _manifest_case(tmp, file_name=str(tmp / "abs.bin")), "files[0].name"),
    "manifest name ../../x": (lambda tmp, s: _manifest_case(tmp, name="../../x", out=False), "name '../../x'"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_traversal_is_refused_in_one_line(case: str, tmp_path: Path, synth: Path, one_torch_thread) -> None:
    make, expected = CASES[case]
    args, out = make(tmp_path, synth)
    before = _tree(tmp_path)
    res = CliRunner().invoke(app, ["-q", *args])
    after = _tree(tmp_path)
    out_rel = str(out.relative_to(tmp_path))
    outside = sorted(p for p in after - before if not (p == out_rel or p.startswith(out_rel + "/")))
    assert outside == [], f"written outside {out_rel}: {outside}\nwhole tree:\n" + "\n".join(sorted(after))
    assert res.exit_code == 2, res.output
    assert len(res.stderr.strip().splitlines()) == 1, res.stderr
    assert expected in flat(res.stderr), res.stderr


@pytest.mark.parametrize(
    ("name", "nested", "ok"),
    [("a", False, True), ("TCGA-A1-0001", False, True), ("a.b-c_d", False, True), ("sub/a.bin", True, True),
     ("", False, False), (".", False, False), ("..", False, False), ("a/b", False, False), ("/abs", True, False),
     ("a/../b", True, False), ("a//b", True, False), ("a\\b", False, False), ("a\x00b", False, False),
     ("./a", True, False)],
)
def test_name_problem_table(name: str, nested: bool, ok: bool, tmp_path: Path) -> None:
    assert (name_problem(name, nested=nested) is None) is ok
    if ok:
        assert child_path(tmp_path, name, what="x", nested=nested) == tmp_path / name
