"""A tiny ST dataset in the real file formats (sections .h5ad, feature .h5, panel, embeddings),
shared by the HAGE train/predict tests and tests/e2e."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hagekit.data.section import SectionImage, SectionLabels, make_section, write_section
from hagekit.genes.embeddings import write_gene2vec_text
from hagekit.io.genelist import write_gene_list
from hagekit.io.h5 import write_features

GENES = [f"G{i}" for i in range(12)]
SECTIONS = (("A1", "A"), ("A2", "A"), ("B1", "B"))


def make_toy(tmp: Path, *, n: int = 64, dim: int = 16, encoder: str = "toy", sha: str = "0" * 64,
             emb_sections: tuple[str, ...] = ("X9",), random_weights: bool = False,
             ) -> tuple[Path, Path, Path, Path]:
    """Write 3 sections (2 patients) whose expression is a noisy function of the features.

    Returns ``(data_root, features_dir, panel, embeddings)``; the embeddings' sidecar says
    they were trained on ``emb_sections``.
    """
    root, feats = tmp / "data", tmp / "feats"
    load = np.random.default_rng(100).normal(scale=0.7, size=(3, len(GENES)))
    side = int(np.ceil(np.sqrt(n)))
    for i, (name, patient) in enumerate(SECTIONS):
        rng = np.random.default_rng(i)
        latent = rng.normal(size=(n, 3))
        counts = rng.poisson(np.exp(1.5 + latent @ load))
        barcodes = [f"{k // side}x{k % side}" for k in range(n)]
        xy = np.array([[40 + 20 * (k % side), 40 + 20 * (k // side)] for k in range(n)], float)
        thumb = np.full((64, 64, 3), 230, np.uint8)
        ad = make_section(counts, barcodes, GENES, xy,
            SectionLabels(dataset="toy", section=name, patient=patient),
            image=SectionImage(path=tmp / "img.jpg", mpp=1.0, spot_diameter_um=10.0, thumbnail=thumb, thumbnail_scale=0.25))
        write_section(ad, root / "toy" / f"{name}.h5ad")
        f = np.concatenate([latent, rng.normal(scale=0.3, size=(n, dim - 3))], axis=1)
        write_features(feats / f"{name}.h5", f, xy, barcodes=barcodes,
                       attrs={"encoder": encoder, "encoder_weights_sha256": sha, "section": name,
                              "patch_size_um": 20.0, "random_weights": random_weights})
    panel = write_gene_list(tmp / "panel.txt", GENES)
    vec = np.random.default_rng(5).normal(size=(len(GENES), 8)).astype(np.float32)
    emb = write_gene2vec_text(tmp / "emb.txt", GENES, vec,
                              provenance={"method": "test", "sections": list(emb_sections)})
    return root, feats, panel, emb


#: Small, fast HAGE settings for the tests.
FAST = {"d": 16, "n_heads": 4, "k1": 3, "k2": 2, "epochs": 3, "batch_size": 32, "lr": 1e-3, "trials": 1}
