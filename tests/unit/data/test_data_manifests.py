"""The built-in manifests parse and say what the issue asks: sources, files, licence, citation, layout."""

from __future__ import annotations

from pathlib import Path

import pytest
from clitext import flat
from typer.testing import CliRunner

from hagekit.cli.main import app
from hagekit.data.manifests import list_manifests, load_manifest, manifests_dir
from hagekit.errors import ConfigError, DataError

EXPECTED = {"her2st", "cscc", "pcam", "skincancer", "tcga-brca", "sln-breast", "hest", "uni", "gene2vec"}


def test_every_expected_manifest_is_there_and_valid() -> None:
    manifests = {m.name: m for m in list_manifests()}
    assert set(manifests) == EXPECTED
    for name, m in manifests.items():
        assert m.path is not None and m.path.stem == name
        assert m.licence and m.citation and m.homepage.startswith("https://")
        assert m.layout.strip(), name
        # a manifest without direct files must explain how to get the data
        assert m.files or len(m.notes) > 50, name
    assert manifests["uni"].kind == "weights" and manifests["uni"].access == "gated"
    assert manifests["gene2vec"].files[0].name == "gene2vec_dim_200_iter_9.txt"


def test_top_level_folder_is_the_package_data() -> None:
    top = Path(__file__).resolve().parents[3] / "data_manifests"
    assert top.is_dir()
    assert {p.name for p in top.glob("*.yaml")} == {p.name for p in manifests_dir().glob("*.yaml")}


def test_unknown_name_lists_choices() -> None:
    with pytest.raises(ConfigError, match=r"NAME: unknown manifest 'foo' \(valid choices: cscc, gene2vec, her2st"):
        load_manifest("foo")


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("name: x\nkind: model\ntitle: t\nlicence: l\ncitation: c\n", "kind 'model' is not valid"),
        ("name: x\nkind: dataset\ntitle: t\nlicence: l\n", "'citation' is missing"),
        ("name: x\nkind: dataset\ntitle: t\nlicence: l\ncitation: c\nfiles:\n  - {name: ../a, url: 'https://a'}\n", "without '..'"),
        ("name: x\nkind: dataset\ntitle: t\nlicence: l\ncitation: c\nfiles:\n  - {name: a, url: 'https://a', sha256: abc}\n", "64 hex digits"),
        ("name: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_manifest_files(tmp_path: Path, text: str, match: str) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(DataError, match=match):
        load_manifest(path)


def test_cli_lists_manifests() -> None:
    result = CliRunner().invoke(app, ["data", "download", "--list"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    for name in EXPECTED:
        assert name in flat(result.output)


def test_cli_manifest_without_files(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["data", "download", "tcga-brca", "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "lists no downloadable files" in flat(result.stderr)
