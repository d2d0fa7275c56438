"""Linear probe with several ``ge:`` heads: the base encoder runs once over the dataset, and each
head applied to the cached base features gives the ``ge:`` encoder's own embeddings."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
from toys import hage_toy as toy
from toys.patches import he_crops

import hagekit.bench.downstream.linear_probe as lp

pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.mark.slow  # a few seconds: nox -s tests runs it, the fast lane does not
def test_base_encoder_runs_once_for_every_ge_head(tmp_path, monkeypatch):
    from hagekit.bench.downstream.patch_datasets import read_image_folder
    from hagekit.encoders import create_encoder
    from hagekit.extract import encode_images
    from hagekit.study import StudyInputs
    from hagekit.training.run import train_run

    base = create_encoder("builtin")
    root, feats, panel, emb = toy.make_toy(tmp_path, dim=base.dim, encoder="builtin", sha=base.weights_sha256)
    run = tmp_path / "run"
    train_run(inputs=StudyInputs(root, "toy", feats, panel, emb),
              out=run, overrides={**toy.FAST, "folds": "A1,B1"})
    images = tmp_path / "crops"
    for i, img in enumerate(he_crops(20)):
        cls, pic = ("as_cut", img) if i % 2 == 0 else ("swapped", img[..., ::-1])
        (images / cls).mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.ascontiguousarray(pic)).save(images / cls / f"p{i // 4}_{i}.png")
    ds = read_image_folder(images, group_regex=r"^(p\d+)_")

    calls: list[str] = []
    real = lp._encode_rows

    def counting(dataset, bundle, rows, **kw):
        calls.append(str(bundle.name))
        return real(dataset, bundle, rows, **kw)

    monkeypatch.setattr(lp, "_encode_rows", counting)
    # a 2-epoch toy run collapses; forced, since this test is about caching, not quality
    specs = ["builtin", f"ge:{run}:A1:0:force", f"ge:{run}:B1:0:force"]
    result = lp.run_linear_probe(ds, specs, out_dir=tmp_path / "out",
                                 config=lp.ProbeConfig(folds=2, epochs=2, device="cpu"),
                                 options=lp.ProbeRunOptions(cache_dir=tmp_path / "cache", num_workers=1))
    assert calls == ["builtin"]  # one pass of the base encoder for three encoders
    assert [s.info["base_encoder"] for s in result.scores] == [None, "builtin", "builtin"]
    # each head over the cached base features == the ge: encoder end to end
    x_base = lp.embed_patch_dataset(ds, base, cache_dir=tmp_path / "cache")
    for spec in specs[1:]:
        ge = create_encoder(spec)
        split = lp.split_ge_bundle(ge)
        assert split is not None and lp.base_key(split[0]) == lp.base_key(base)
        direct = encode_images(ge, ds.read(np.arange(ds.n)))
        np.testing.assert_allclose(lp.apply_head(split[1], x_base, device="cpu"), direct, rtol=1e-4, atol=1e-5)
    assert lp.split_ge_bundle(base) is None
