"""Contract tests, parametrized over every registry (timm's tests/test_models.py style).

Each entry is built from its own metadata (``test_params``): every method fits, predicts,
clones, saves (and loads, where its class has ``load``) and repeats itself under one seed; every
encoder gives its declared width; every ST reader reads its fixture; every dataset entry
resolves its loader and manifest; every benchmark is a command. A new entry is tested here
without an edit, except a reader, which must add its fixture to ``READER_FIXTURES``.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pytest
from sklearn.base import clone
from toys.raw_formats import make_cscc, make_her2st, make_hest, make_stutility, make_visium

from hagekit.baselines import METHODS, make_method, method_accepts, method_search_space
from hagekit.bench.downstream.datasets import PATCH_DATASETS, SLIDE_DATASETS
from hagekit.data import READERS
from hagekit.encoders import ENCODERS, create_encoder
from hagekit.errors import ConfigError
from hagekit.registry import Registry

pytestmark = pytest.mark.usefixtures("one_torch_thread_module")

GENES, DIM = 5, 6
EMB = np.random.default_rng(3).normal(size=(GENES, 4)).astype(np.float32)


def _toy(seed: int = 0, side: int = 5) -> dict[str, np.ndarray]:
    """Two sections of side x side spots on a 100 px grid: features, targets, positions, groups."""
    rng = np.random.default_rng(seed)
    xx, yy = np.meshgrid(np.arange(side) * 100.0, np.arange(side) * 100.0)
    S = np.vstack([np.stack([xx.ravel(), yy.ravel()], axis=1)] * 2).astype(np.float32)
    X = rng.normal(size=(len(S), DIM)).astype(np.float32)
    Y = np.log1p(np.exp(X @ rng.normal(size=(DIM, GENES)))).astype(np.float32)
    groups = np.repeat(["A1", "B1"], side * side)
    return {"X": X, "Y": Y, "S": S, "groups": groups}


def _build(name: str, seed: int = 0):
    entry = METHODS.entry(name)
    context = {"random_state": seed}
    if method_accepts(name, "gene_embeddings"):
        context["gene_embeddings"] = EMB
    return make_method(name, context=context, **dict(entry.test_params or {}))


def _fit_predict(est, d: dict[str, np.ndarray]) -> np.ndarray:
    train = d["groups"] == "A1"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tiny data: constant-gene warnings
        est.fit(d["X"][train], d["Y"][train], X_val=d["X"][~train], Y_val=d["Y"][~train],
                spatial=d["S"][train], spatial_val=d["S"][~train], groups=d["groups"][train])
        return est.predict(d["X"][~train], spatial=d["S"][~train])


# -- methods -------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", METHODS.names())
def test_method_fits_predicts_clones_saves_and_repeats(name: str, tmp_path: Path) -> None:
    d = _toy()
    est = _build(name)
    for key, value in METHODS.entry(name).params.items():  # a variant's fixed settings hold
        assert est.get_params(deep=True)[key] == value
    twin = clone(est)
    assert type(twin) is type(est) and repr(twin.get_params(deep=False)) == repr(est.get_params(deep=False))
    pred = _fit_predict(est, d)
    assert pred.shape == (len(d["X"]) // 2, GENES) and np.isfinite(pred).all()
    np.testing.assert_array_equal(_fit_predict(twin, d), pred)  # same seed, same numbers
    saved = Path(est.save(tmp_path / "model"))
    folder = saved if saved.is_dir() else saved.parent
    assert (folder / "model.safetensors").is_file()
    if hasattr(type(est), "load"):
        back = type(est).load(folder)
        np.testing.assert_allclose(back.predict(d["X"][d["groups"] == "B1"], spatial=d["S"][d["groups"] == "B1"]),
                                   pred, rtol=1e-5, atol=1e-6)
    else:  # the parameters written beside the arrays rebuild the estimator
        params = json.loads((folder / "estimator.json").read_text())
        assert all(params[k] == v for k, v in est.get_params(deep=False).items() if isinstance(v, (int, str, bool)))


@pytest.mark.parametrize("name", METHODS.names())
def test_method_search_space_names_its_own_parameters(name: str) -> None:
    valid = _build(name).get_params(deep=True)
    space = method_search_space(name)
    assert set(space) <= set(valid), set(space) - set(valid)
    assert all(len(values) >= 1 for values in space.values())


def test_method_variant_applies_its_settings_on_top_of_the_run_config() -> None:
    from hagekit.hage.model import HAGEConfig

    est = make_method("hage-ctx", config=HAGEConfig(d=8, n_heads=2, epochs=3))
    assert (est.config.context, est.config.d, est.config.epochs) == ("mean", 8, 3)
    assert method_accepts("hage-ctx", "gene_embeddings") and "hage-ctx" not in METHODS.names(default_only=True)
    assert make_method("hage").get_params()["config__context"] == "none"


# -- encoders ------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ENCODERS.names())
def test_encoder_gives_its_declared_width(name: str) -> None:
    import torch

    entry = ENCODERS.entry(name)
    if entry.test_params is None:
        pytest.skip(f"{name}: no tiny build without its weights ({entry.info.weights})")
    params = dict(entry.test_params)
    spec = name + params.pop("arg", "")
    bundle = create_encoder(spec, device="cpu", **params)
    images = np.random.default_rng(0).integers(0, 256, size=(2, 64, 64, 3), dtype=np.uint8)
    with torch.inference_mode():
        out = bundle.model(torch.stack([bundle.transform(im) for im in images]))
    assert tuple(out.shape) == (2, bundle.dim)
    if entry.info.dim is not None:
        assert bundle.dim == entry.info.dim
    assert torch.isfinite(out).all()


# -- ST readers ----------------------------------------------------------------------------------


def _visium(tmp: Path) -> tuple[Path, dict]:
    from hagekit.data.visium import VisiumSection

    outs, image = make_visium(tmp / "outs")
    return outs, {"section": VisiumSection("S1", image)}


#: reader -> builder of a tiny raw folder in the published layout, and the reader's keywords.
READER_FIXTURES = {
    "her2st": lambda tmp: (make_her2st(tmp / "her2st"), {}),
    "cscc": lambda tmp: (make_cscc(tmp / "GSE144240_RAW"), {}),
    "stutility": lambda tmp: (make_stutility(tmp / "stutility"), {}),
    "visium": _visium,
    "hest": lambda tmp: (make_hest(tmp / "hest"), {}),
}


@pytest.mark.parametrize("name", READERS.names())
def test_reader_reads_its_fixture(name: str, tmp_path: Path) -> None:
    from hagekit.data.section import read_section

    assert name in READER_FIXTURES, f"reader {name!r} has no fixture in READER_FIXTURES"
    raw, kwargs = READER_FIXTURES[name](tmp_path)
    report = READERS.get(name)(raw, tmp_path / "data", **kwargs)
    assert report.sections and len(report.written) == len(report.sections)
    for path in report.written:
        a = read_section(path)
        assert a.n_obs > 0 and a.n_vars > 0 and a.obsm["spatial"].shape == (a.n_obs, 2)


# -- datasets, manifests, benchmarks -------------------------------------------------------------


def _with_manifest(*registries: Registry) -> list[tuple[str, str]]:
    return [(r.kind, n) for r in registries for n, e in r.items() if e.manifest]


@pytest.mark.parametrize(("kind", "name"), _with_manifest(READERS, PATCH_DATASETS, SLIDE_DATASETS))
def test_manifest_of_each_dataset_resolves(kind: str, name: str) -> None:
    from hagekit.data.manifests import load_manifest

    registry = {r.kind: r for r in (READERS, PATCH_DATASETS, SLIDE_DATASETS)}[kind]
    manifest = load_manifest(registry.entry(name).manifest)
    assert manifest.name == registry.entry(name).manifest and manifest.kind == "dataset"


@pytest.mark.parametrize("name", PATCH_DATASETS.names())
def test_patch_dataset_opener_resolves_and_refuses_a_missing_folder(name: str, tmp_path: Path) -> None:
    from hagekit.errors import DataError

    opener = PATCH_DATASETS.get(name)
    assert callable(opener)
    with pytest.raises((DataError, ConfigError)):
        opener(tmp_path / "absent")


@pytest.mark.parametrize("name", SLIDE_DATASETS.names())
def test_slide_dataset_reads_labels_in_its_label_set(name: str, tmp_path: Path) -> None:
    from hagekit.bench.downstream.abmil import read_slide_labels

    classes = SLIDE_DATASETS.get(name).classes or ("x", "y")
    rows = [f"s{i},{classes[i % 2]}" for i in range(4)]
    (tmp_path / "labels.csv").write_text("slide_id,label\n" + "\n".join(rows) + "\n")
    labels = read_slide_labels(tmp_path / "labels.csv", dataset=name)
    assert labels.labels.tolist() == [0, 1, 0, 1] and labels.class_names == list(classes)


def test_benchmarks_are_commands_with_help() -> None:
    from typer.testing import CliRunner

    from hagekit.cli.bench import BENCHMARKS
    from hagekit.cli.main import app

    for name in BENCHMARKS.names():
        assert (BENCHMARKS.get(name).__doc__ or "").strip(), name
        assert CliRunner().invoke(app, ["bench", name, "--help"]).exit_code == 0, name


# -- the registry type itself --------------------------------------------------------------------


def test_registry_refuses_duplicates_and_unknown_names_and_loads_lazily() -> None:
    reg: Registry = Registry("widget", option="--widget")
    reg.register("json-dumps", "json:dumps", help="lazy target")

    @reg.register("twice", default=False)
    def twice(x: int) -> int:
        return 2 * x

    assert reg.names() == ["json-dumps", "twice"] and reg.names(default_only=True) == ["json-dumps"]
    assert reg.get("JSON-dumps") is json.dumps and reg.get("twice")(3) == 6
    with pytest.raises(ConfigError, match="widget 'twice' is already registered"):
        reg.register("twice", twice)
    reg.register("twice", json.loads, replace=True)
    assert reg.get("twice") is json.loads
    with pytest.raises(ConfigError, match=r"^--widget: unknown widget 'nope' \(choose from json-dumps, twice\)$"):
        reg.get("nope")
    with pytest.raises(ConfigError, match="module:Class"):
        reg.register("bad", "no_colon")
    with pytest.raises(ConfigError, match="use letters"):
        reg.register("a b", twice)


def test_registry_reads_its_entry_point_group_on_first_lookup(tmp_path: Path, monkeypatch, caplog) -> None:
    """``"module:attr"`` values register under the entry's name; module values are imported
    (their decorators register); a broken plugin is a warning, not a failure."""
    import sys

    from toys.plugins import fake_distribution

    fake_distribution(tmp_path, "hagekit-widget-plugin",
                      "[hagekit.test_widgets]\nloads = json:loads\nmod = hagekit_widget_plugin\nbroken = hagekit_widget_missing\n")
    (tmp_path / "hagekit_widget_registry.py").write_text(
        "from hagekit.registry import Registry\nWIDGETS = Registry('widget', entry_points='hagekit.test_widgets')\n"
    )
    (tmp_path / "hagekit_widget_plugin.py").write_text(
        "from hagekit_widget_registry import WIDGETS\nWIDGETS.register('from-module', len)\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    import hagekit_widget_registry

    reg = hagekit_widget_registry.WIDGETS
    try:
        assert sorted(reg.names()) == ["from-module", "loads"]
        assert reg.get("loads") is json.loads and reg.get("from-module") is len
        assert "hagekit_widget_missing" in caplog.text
    finally:
        sys.modules.pop("hagekit_widget_plugin", None)
        sys.modules.pop("hagekit_widget_registry", None)
