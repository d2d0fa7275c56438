"""``genes embed``'s library side: which sections train and evaluate, and AB-MIL's source checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hagekit.bench.downstream.abmil import FeatureSources
from hagekit.data.section import SectionImage, SectionLabels, make_section, write_section
from hagekit.errors import ConfigError
from hagekit.genes.embed_job import choose_sections


@pytest.fixture
def mixed_root(tmp_path: Path) -> Path:
    """Sections A1, A2 without an image and B1, B2 with one."""
    image = tmp_path / "he.png"
    image.write_bytes(b"not read here")
    for name in ("A1", "A2", "B1", "B2"):
        img = SectionImage(path=image, mpp=1.0) if name.startswith("B") else SectionImage()
        adata = make_section(np.ones((3, 2), int), ["s0", "s1", "s2"], ["G1", "G2"], np.zeros((3, 2)),
                             SectionLabels("toy", name, name[0]), image=img)
        write_section(adata, tmp_path / "data" / "toy" / f"{name}.h5ad")
    return tmp_path / "data"


def test_default_trains_on_image_less_sections_and_evaluates_on_the_others(mixed_root: Path) -> None:
    chosen = choose_sections(mixed_root, "toy", None, None)
    assert sorted(chosen.train) == ["A1", "A2"] and chosen.held_out == ["B1", "B2"] and not chosen.trains_on_all
    named = choose_sections(mixed_root, "toy", ["A1", "B1"], " B2 , A2")
    assert named.train == ["A1", "B1"] and named.held_out == ["B2", "A2"]
    assert choose_sections(mixed_root, "toy", ["A1"], "None").held_out == []
    with pytest.raises(ConfigError, match=r"--eval-sections: unknown section\(s\) Z9"):
        choose_sections(mixed_root, "toy", None, "B1,Z9")


def test_all_sections_train_when_none_lacks_an_image(tmp_path: Path) -> None:
    image = tmp_path / "he.png"
    image.write_bytes(b"x")
    adata = make_section(np.ones((3, 2), int), ["s0", "s1", "s2"], ["G1", "G2"], np.zeros((3, 2)),
                         SectionLabels("toy", "B1", "B"), image=SectionImage(path=image, mpp=1.0))
    write_section(adata, tmp_path / "toy" / "B1.h5ad")
    chosen = choose_sections(tmp_path, "toy", None, None)
    assert chosen.train == ["B1"] and chosen.held_out == [] and chosen.trains_on_all


@pytest.mark.parametrize(
    ("sources", "message"),
    [
        (FeatureSources(features=("f",), encoders=("uni",)), "not both"),
        (FeatureSources(), "give --slides DIR"),
        (FeatureSources(slides=Path("s")), "--encoder: give at least one encoder"),
    ],
)
def test_feature_sources_refuse_impossible_combinations(sources: FeatureSources, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        sources.check()
    FeatureSources(features=("f",)).check()
    FeatureSources(slides=Path("s"), encoders=("uni",)).check()
