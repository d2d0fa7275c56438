"""Embeddings of a HEST-Bench sample's stored patches, cached per (encoder, sample).

The cache is the linear probe's (:func:`hagekit.bench.downstream.linear_probe.embed_patch_dataset`):
``<cache>/<sample>-<fingerprint12>/<encoder>-<weights sha12>.h5`` with ``features``, ``done``
flags (resumable) and provenance attributes (sample, fingerprint, encoder, weights sha256).
A ``ge:`` encoder is split into its base encoder and GE head: the base runs once per patch and
every head reuses its features (:func:`~hagekit.bench.downstream.linear_probe.split_ge_bundle`).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.bench.hest.tasks import HestSample, read_patch_index
from hagekit.progress import Reporter

__all__ = ["HestPatches", "EncoderPlan", "plan_encoder", "embed_sample"]


@dataclass
class HestPatches:
    """A sample's patches h5 as the embedding cache reads it (``name``, ``n``, ``fingerprint``, ``read``)."""

    sample: HestSample
    barcodes: np.ndarray
    n: int
    task: str = ""

    @classmethod
    def open(cls, sample: HestSample, task: str = "") -> HestPatches:
        barcodes, n = read_patch_index(sample.patches)
        return cls(sample, barcodes, n, task)

    @property
    def name(self) -> str:
        """``<task>-<sample>``: the cache folder's name (tasks may reuse sample ids)."""
        return f"{self.task}-{self.sample.sample_id}" if self.task else self.sample.sample_id

    def fingerprint(self) -> str:
        """Sample id, file size, barcodes and the bytes of the first, middle and last patch:
        a changed patch file gets a new cache entry."""
        h = hashlib.sha256(f"{self.name}|{self.sample.patches.stat().st_size}|{self.n}\n".encode())
        h.update("\n".join(self.barcodes.tolist()).encode())
        if self.n:
            h.update(self.read(sorted({0, self.n // 2, self.n - 1})).tobytes())
        return h.hexdigest()

    def read(self, indices: Any) -> np.ndarray:
        """Patches (B, H, W, 3) uint8 at ``indices`` (read in one sorted slice)."""
        import h5py

        idx = np.asarray(indices, dtype=np.int64)
        order = np.argsort(idx)
        with h5py.File(self.sample.patches, "r") as h5:
            block = np.asarray(h5["img"][idx[order]], dtype=np.uint8)
        out = np.empty_like(block)
        out[order] = block
        return out


@dataclass
class EncoderPlan:
    """One ``--encoder``: its bundle, the base bundle that embeds patches, and the GE head (or None)."""

    spec: str
    bundle: Any
    base: Any
    head: Any = None
    trained: dict[str, list[str]] = field(default_factory=dict)


def plan_encoder(spec: str, *, weights: Path | None = None, device: str = "cpu") -> EncoderPlan:
    """Build ``spec`` and split a ``ge:`` encoder into base + head; record what it was trained on."""
    from hagekit.bench.downstream.linear_probe import split_ge_bundle
    from hagekit.encoders import create_encoder

    bundle = create_encoder(spec, weights=weights, device=device)
    split = split_ge_bundle(bundle)
    base, head = split if split is not None else (bundle, None)
    from hagekit.bench.leakage import trained_on

    return EncoderPlan(spec, bundle, base, head, trained_on(bundle))


def embed_sample(patches: HestPatches, base: Any, *, cache_dir: Path | None, batch_size: int, device: str,
                 num_workers: int = 0, progress: Reporter | None = None) -> np.ndarray:
    """Base-encoder embeddings (N, D) of every patch of a sample, through the cache."""
    from hagekit.bench.downstream.linear_probe import EmbedSettings, embed_patch_dataset

    settings = EmbedSettings(batch_size=batch_size, device=device, num_workers=num_workers)
    return embed_patch_dataset(patches, base, cache_dir=cache_dir, settings=settings,  # type: ignore[arg-type]
                               progress=progress)
