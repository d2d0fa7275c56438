"""Linear probe on frozen embeddings: the paper's patch-classification protocol.

One linear layer trained with cross-entropy and Adam for 10 epochs on z-scored frozen
embeddings, 5-fold cross-validation (grouped by slide/patient when the dataset gives
groups, via ``StratifiedGroupKFold``); Accuracy, AUC and macro Recall, mean ± std.
Embeddings are cached per (dataset, encoder, weights sha256) in an h5 file, filled
incrementally, so a second encoder, a rerun or an interrupted run costs only what is missing.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hagekit.bench.downstream.patch_datasets import PatchDataset
from hagekit.bench.downstream.report import (
    DownstreamResult,
    EncoderScores,
    classification_metrics,
    write_downstream_report,
)
from hagekit.errors import ConfigError, DataError, at
from hagekit.progress import Reporter, reporter_or_null
from hagekit.training.splits import trial_seed
from hagekit.workspace import encoder_slug

__all__ = [
    "ProbeConfig", "LinearProbe", "make_probe_folds", "fit_linear_probe", "probe_embeddings",
    "subsample_indices", "embedding_cache_path", "EmbedSettings", "embed_patch_dataset", "split_ge_bundle",
    "apply_head", "ProbeRunOptions", "run_linear_probe",
]

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ProbeConfig:
    """Linear-probe settings; defaults follow the paper (10 epochs, CE, 5 folds)."""

    epochs: int = 10
    lr: float = 1e-3
    weight_decay: float = 0.0
    batch_size: int = 128
    folds: int = 5
    seed: int = 0
    standardize: bool = True
    device: str = "auto"

    def validate(self) -> ProbeConfig:
        """Self, or one line naming the first option out of range."""
        limits = (("--epochs", self.epochs, 1), ("--folds", self.folds, 2), ("--lr", self.lr, None),
                  ("--batch-size", self.batch_size, 1))
        for option, value, least in limits:
            if least is None and value <= 0:
                raise ConfigError(f"{option}: must be > 0, got {value}")
            if least is not None and value < least:
                raise ConfigError(f"{option}: must be >= {least}, got {value}")
        return self


@dataclass
class LinearProbe:
    """A fitted probe: z-score (``mean``, ``scale``) then ``x @ weight.T + bias``."""

    weight: np.ndarray  # (C, D)
    bias: np.ndarray  # (C,)
    mean: np.ndarray  # (D,)
    scale: np.ndarray  # (D,)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """Class probabilities (N, C) for embeddings ``x`` (N, D)."""
        z = (np.asarray(x, dtype=np.float64) - self.mean) / self.scale
        logits = z @ self.weight.T.astype(np.float64) + self.bias
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        return p / p.sum(axis=1, keepdims=True)


def make_probe_folds(
    y: np.ndarray, groups: np.ndarray | None, *, n_folds: int, seed: int
) -> list[tuple[np.ndarray, np.ndarray]]:
    """Stratified (and, with ``groups``, group-disjoint) K folds as (train, test) index pairs."""
    from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

    y = np.asarray(y)
    counts = np.bincount(y) if y.size else np.zeros(0, dtype=int)
    if (counts > 0).sum() < 2:
        raise DataError(f"need at least 2 classes for a probe, found {(counts > 0).sum()}")
    if y.size < n_folds:
        raise ConfigError(f"--folds: {n_folds} folds for {y.size} items; lower --folds")
    splitter: Any
    if groups is not None:
        n_groups = len(set(groups.tolist()))
        if n_groups < n_folds:
            raise ConfigError(
                f"--folds: {n_folds} grouped folds need at least {n_folds} slides/patients, found {n_groups}; lower --folds"
            )
        splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed % (2**32))
        split_iter = splitter.split(np.zeros(y.size), y, groups)
    else:
        splitter = StratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed % (2**32))
        split_iter = splitter.split(np.zeros(y.size), y)
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        try:
            folds = [(np.sort(tr), np.sort(te)) for tr, te in split_iter]
        except ValueError as exc:
            raise ConfigError(f"--folds: cannot make {n_folds} folds ({exc})") from None
    return folds


def fit_linear_probe(
    x: np.ndarray, y: np.ndarray, n_classes: int, config: ProbeConfig = ProbeConfig(), *, seed: int = 0
) -> LinearProbe:
    """Train one linear layer (zero init) with Adam + cross-entropy for ``config.epochs`` epochs,
    on the shared loop (:func:`hagekit.learn.loop.train_loop`; no validation, last weights)."""
    import torch

    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if config.standardize:
        mean = x.mean(axis=0)
        scale = x.std(axis=0)
        scale = np.where(scale > 1e-6, scale, 1.0).astype(np.float32)
    else:
        mean = np.zeros(x.shape[1], dtype=np.float32)
        scale = np.ones(x.shape[1], dtype=np.float32)
    from hagekit.device import resolve_device

    device = resolve_device(config.device)
    from hagekit.learn.loop import LoopConfig, train_loop

    xt = torch.from_numpy((x - mean) / scale).to(device)
    yt = torch.from_numpy(y).to(device)
    layer = torch.nn.Linear(x.shape[1], n_classes).to(device)
    with torch.no_grad():
        layer.weight.zero_()
        layer.bias.zero_()
    opt = torch.optim.Adam(layer.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    loss_fn = torch.nn.CrossEntropyLoss()
    loop = LoopConfig(epochs=config.epochs, batch_size=config.batch_size, seed=seed, precision="fp32",
                      description="linear probe")
    train_loop(layer, opt, lambda idx: loss_fn(layer(xt[idx]), yt[idx]), n=int(xt.shape[0]), config=loop)
    return LinearProbe(
        weight=layer.weight.detach().cpu().numpy().astype(np.float64),
        bias=layer.bias.detach().cpu().numpy().astype(np.float64),
        mean=mean.astype(np.float64),
        scale=scale.astype(np.float64),
    )


def probe_embeddings(
    x: np.ndarray,
    y: np.ndarray,
    *,
    groups: np.ndarray | None = None,
    n_classes: int | None = None,
    config: ProbeConfig = ProbeConfig(),
    encoder: str = "embeddings",
    progress: Reporter | None = None,
) -> EncoderScores:
    """K-fold linear probe of embeddings ``x`` (N, D) for labels ``y`` (N,); per-fold metrics."""
    config.validate()
    x = np.asarray(x, dtype=np.float32)
    y = np.asarray(y, dtype=np.int64)
    if x.ndim != 2 or x.shape[0] != y.shape[0]:
        raise DataError(f"embeddings {x.shape} and labels {y.shape} do not match")
    if not np.isfinite(x).all():
        raise DataError(f"{encoder}: embeddings contain NaN or Inf")
    n_classes = int(n_classes if n_classes is not None else y.max() + 1)
    folds = make_probe_folds(y, groups, n_folds=config.folds, seed=config.seed)
    task = reporter_or_null(progress).task(f"probe {encoder}", total=len(folds))
    rows = []
    try:
        for k, (tr, te) in enumerate(folds):
            probe = fit_linear_probe(x[tr], y[tr], n_classes, config, seed=trial_seed(config.seed, "probe", k))
            scores = classification_metrics(y[te], probe.predict_proba(x[te]))
            rows.append({"fold": k, "n_train": int(tr.size), "n_test": int(te.size), **scores})
            task.advance(1, status=f"auc {scores['auc']:.3f}")
    finally:
        task.close()
    return EncoderScores(encoder=encoder, folds=rows)


def subsample_indices(labels: np.ndarray, limit: int | None, *, seed: int) -> np.ndarray:
    """Sorted indices of a class-stratified random subset of at most ``limit`` items (all if None)."""
    n = int(labels.shape[0])
    if limit is None or limit >= n:
        return np.arange(n)
    if limit < 1:
        raise ConfigError(f"--limit: must be >= 1, got {limit}")
    rng = np.random.default_rng(trial_seed(seed, "subsample", 0))
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.floor(counts / n * limit).astype(int)
    quota = np.maximum(quota, np.minimum(counts, 1))
    while quota.sum() > limit:
        quota[np.argmax(quota)] -= 1
    out = [rng.choice(np.flatnonzero(labels == c), size=q, replace=False) for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(out))


# Embedding cache ---------------------------------------------------------------------------


def _weights_key(bundle: Any) -> str:
    sha = str(getattr(bundle, "weights_sha256", "") or "")
    if sha:
        return sha[:12]
    digest = hashlib.sha256(repr(getattr(bundle, "config", "")).encode()).hexdigest()[:12]
    return f"noweights-{digest}"


def embedding_cache_path(cache_dir: Path, dataset: PatchDataset, bundle: Any, fingerprint: str | None = None) -> Path:
    """``<cache>/<dataset>-<fingerprint12>/<encoder>-<weights sha12>.h5``."""
    fp = (fingerprint or dataset.fingerprint())[:12]
    return Path(cache_dir) / f"{dataset.name}-{fp}" / f"{encoder_slug(str(bundle.name))}-{_weights_key(bundle)}.h5"


def _open_cache(path: Path, n: int, dim: int | None, attrs: Mapping[str, Any]):  # -> h5py.File | None
    import h5py

    if path.exists():
        try:
            h5 = h5py.File(path, "a")
            ok = (
                "features" in h5
                and "done" in h5
                and h5["features"].shape[0] == n
                and all(str(h5.attrs.get(k, "")) == str(v) for k, v in attrs.items())
            )
            if ok:
                return h5
            h5.close()
            logger.warning("%s: embedding cache does not match this dataset/encoder; rebuilding it", path)
        except OSError as exc:
            if "lock" in str(exc).lower():
                raise DataError(at(path, "embedding cache is in use by another run (wait, or pass another --cache-dir)")) from None
            logger.warning("%s: unreadable embedding cache (interrupted write?); rebuilding it", path)
        path.unlink()
    if dim is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    h5 = h5py.File(path, "w")
    h5.create_dataset("features", shape=(n, dim), dtype="float32", chunks=(min(max(n, 1), 1024), dim))
    h5.create_dataset("done", shape=(n,), dtype="bool")
    for k, v in attrs.items():
        h5.attrs[k] = str(v)
    return h5


class _PatchBatches:
    """Batches of a :class:`PatchDataset` for a DataLoader: item ``b`` is batch ``b`` read (one
    h5 slice, or the image files decoded) and transformed inside a worker process."""

    def __init__(self, dataset: PatchDataset, indices: np.ndarray, transform: Any, batch_size: int) -> None:
        self.dataset, self.indices, self.transform, self.batch_size = dataset, indices, transform, batch_size

    def __len__(self) -> int:
        return -(-int(self.indices.size) // self.batch_size)

    def __getitem__(self, b: int) -> Any:
        import torch

        part = self.indices[b * self.batch_size : (b + 1) * self.batch_size]
        images = self.dataset.read(part)
        x = torch.stack([self.transform(np.asarray(im)) for im in images])
        return x, torch.from_numpy(part)


def _encode_rows(
    dataset: PatchDataset, bundle: Any, rows: np.ndarray, *, batch_size: int, device: str, num_workers: int,
    on_features: Any, progress: Reporter | None,
) -> None:
    """Encode ``rows`` of ``dataset`` through one DataLoader (decoding in its workers)."""
    from hagekit.device import resolve_device, resolve_precision
    from hagekit.extract.engine import EncoderSetup, stream_encoder

    dev = resolve_device(device)
    bundle.model.to(dev)
    task = reporter_or_null(progress).task(f"embed {bundle.name}", total=int(rows.size))
    try:
        stream_encoder(
            EncoderSetup.of(bundle, dev, resolve_precision(None, dev, bundle.precision)),
            _PatchBatches(dataset, rows, bundle.transform, batch_size), on_features=on_features,
            batch_size=batch_size, num_workers=num_workers, task=task, n_rows=int(rows.size),
        )
    finally:
        task.close()


@dataclass(frozen=True)
class EmbedSettings:
    """How patches are encoded: batch size, device, DataLoader workers, cache flush interval (rows)."""

    batch_size: int = 64
    device: str = "auto"
    num_workers: int = 0
    chunk: int = 4096


class _CacheWriter:
    """Receives encoded batches: into the h5 cache (opened at the first batch, flushed every
    ``chunk`` rows) or, without a cache, into memory."""

    def __init__(self, path: Path | None, attrs: dict[str, Any], n: int, chunk: int, encoder: str) -> None:
        self.path, self.attrs, self.n, self.chunk, self.encoder = path, attrs, n, chunk, encoder
        self.h5 = _open_cache(path, n, None, attrs) if path is not None else None
        self.since = 0
        self.rows: dict[int, np.ndarray] = {}

    def missing(self, idx: np.ndarray) -> np.ndarray:
        """The requested rows not yet encoded."""
        if self.h5 is None:
            return np.unique(idx)
        done = np.asarray(self.h5["done"][:], dtype=bool)
        return np.unique(idx[~done[idx]])

    def __call__(self, feats: np.ndarray, rest: Any) -> None:
        part = rest[0].numpy()
        if feats.shape[0] != part.size:
            raise DataError(f"encoder {self.encoder} returned {feats.shape[0]} rows for {part.size} images")
        if self.path is None:
            self.rows.update(zip(part.tolist(), feats.copy(), strict=True))
            return
        if self.h5 is None:
            self.h5 = _open_cache(self.path, self.n, int(feats.shape[1]), self.attrs)
        order = np.argsort(part)  # h5py writes need increasing indices
        self.h5["features"][part[order]] = feats[order]
        self.h5["done"][part[order]] = True
        self.since += part.size
        if self.since >= self.chunk:
            self.h5.flush()
            self.since = 0

    def features(self, idx: np.ndarray) -> np.ndarray:
        """Rows ``idx`` (in order, repeats allowed) as float32."""
        if self.h5 is not None:
            uniq, inverse = np.unique(idx, return_inverse=True)
            return np.asarray(self.h5["features"][uniq], dtype=np.float32)[inverse]
        if not self.rows:
            raise DataError("no items to embed")
        return np.stack([self.rows[int(i)] for i in idx]).astype(np.float32)

    def close(self) -> None:
        if self.h5 is not None:
            self.h5.close()


def embed_patch_dataset(
    dataset: PatchDataset,
    bundle: Any,
    indices: np.ndarray | None = None,
    *,
    cache_dir: Path | None = None,
    settings: EmbedSettings = EmbedSettings(),
    progress: Reporter | None = None,
) -> np.ndarray:
    """Embeddings (len(indices), D) of ``dataset`` items by encoder ``bundle``, through the cache.

    Only items not yet in the cache are encoded, in one pass of one DataLoader whose workers
    read and decode the images; the cache records finished rows (flushed every
    ``settings.chunk`` rows), so an interrupted run resumes. Random-weight encoders are never cached.
    """
    idx = np.arange(dataset.n) if indices is None else np.asarray(indices, dtype=np.int64)
    use_cache = cache_dir is not None and not bool(getattr(bundle, "random_weights", False))
    fp = dataset.fingerprint()
    attrs = {
        "dataset": dataset.name,
        "dataset_fingerprint": fp,
        "encoder": str(bundle.name),
        "encoder_weights_sha256": str(getattr(bundle, "weights_sha256", "") or ""),
        "n_items": dataset.n,
    }
    path = embedding_cache_path(Path(cache_dir), dataset, bundle, fp) if use_cache else None
    writer = _CacheWriter(path, attrs, dataset.n, settings.chunk, str(bundle.name))
    try:
        missing = writer.missing(idx)
        if missing.size:
            _encode_rows(dataset, bundle, missing, batch_size=settings.batch_size, device=settings.device,
                         num_workers=settings.num_workers, on_features=writer, progress=progress)
        return writer.features(idx)
    finally:
        writer.close()


def split_ge_bundle(bundle: Any) -> tuple[Any, Any] | None:
    """``(base bundle, GE head)`` of a ``ge:`` encoder, so the base runs once for several heads; else None."""
    from hagekit.encoders.registry import EncoderBundle

    model, cfg = bundle.model, dict(getattr(bundle, "config", {}) or {})
    if not (hasattr(model, "base") and hasattr(model, "head") and "base_encoder" in cfg):
        return None
    base = EncoderBundle(
        name=str(cfg["base_encoder"]), model=model.base, transform=bundle.transform, dim=int(model.head.d_in),
        input_size=bundle.input_size, weights_sha256=str(cfg.get("base_weights_sha256", "")),
        random_weights=bool(bundle.random_weights), precision=bundle.precision,
        config={"spec": str(cfg["base_encoder"])},
    )
    return base, model.head


def base_key(bundle: Any) -> tuple[str, str, bool]:
    """What identifies an image encoder's output: its spec, weights sha256 and random flag."""
    cfg = dict(getattr(bundle, "config", {}) or {})
    return str(cfg.get("spec", bundle.name)), str(bundle.weights_sha256), bool(bundle.random_weights)


def apply_head(head: Any, features: np.ndarray, *, device: str = "auto", batch_size: int = 4096) -> np.ndarray:
    """A GE head over cached base features (N, d_in) -> (N, d), in batches on ``device``."""
    import torch

    from hagekit.device import resolve_device

    dev = resolve_device(device)
    head = head.to(dev).eval()
    out = []
    with torch.inference_mode():
        for start in range(0, features.shape[0], batch_size):
            x = torch.from_numpy(np.ascontiguousarray(features[start : start + batch_size])).to(dev)
            out.append(head(x).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros((0, head.dim), np.float32)


# The whole benchmark -----------------------------------------------------------------------


@dataclass(frozen=True)
class ProbeRunOptions:
    """What a linear-probe run reads besides the probe settings: the embedding cache, encoder
    weights, a subsample, how patches are encoded, and whether a leaking ``ge:`` encoder is allowed."""

    cache_dir: Path | str | None = None
    weights: Mapping[str, Path] | None = None
    random_weights: bool = False
    limit: int | None = None
    embed_batch_size: int = 64
    num_workers: int = 0
    allow_leak: bool = False


def _check_request(encoders: Sequence[str], weights: Mapping[str, Path], out: Path, overwrite: bool) -> None:
    """One line naming the option for an empty or repeated ``--encoder``, existing results, stray ``--weights``."""
    if not encoders:
        raise ConfigError("--encoder: give at least one encoder")
    if len(set(encoders)) != len(encoders):
        raise ConfigError(f"--encoder: duplicate encoders in {', '.join(encoders)}")
    if (out / "summary.json").exists() and not overwrite:
        raise ConfigError(at(out, "results already exist; pass --overwrite to replace them"))
    unknown = set(weights) - set(encoders)
    if unknown:
        raise ConfigError(f"--weights: {', '.join(sorted(unknown))} is not among --encoder ({', '.join(encoders)})")


@dataclass
class _ProbeData:
    """The probed items: their indices, labels and (optional) groups."""

    idx: np.ndarray
    y: np.ndarray
    groups: np.ndarray | None


def _probe_encoder(
    spec: str, dataset: PatchDataset, data: _ProbeData, run: tuple[ProbeConfig, ProbeRunOptions, str],
    base_features: dict[tuple[str, str, bool], np.ndarray], progress: Reporter | None,
) -> EncoderScores:
    """Embed with one encoder (its base encoder once per run, through the cache) and probe it."""
    from hagekit.bench.leakage import check_probe_leak
    from hagekit.encoders import create_encoder

    config, options, device = run
    weights = dict(options.weights or {})
    bundle = create_encoder(spec, weights=weights.get(spec), random_weights=options.random_weights, device=device)
    leaked = check_probe_leak(dataset.root, spec, bundle, allow_leak=options.allow_leak)
    split = split_ge_bundle(bundle)
    base, head = split if split is not None else (bundle, None)
    key = base_key(base)
    if key not in base_features:
        embed = EmbedSettings(batch_size=options.embed_batch_size, device=device, num_workers=options.num_workers)
        base_features[key] = embed_patch_dataset(
            dataset, base, data.idx, cache_dir=Path(options.cache_dir) if options.cache_dir else None,
            settings=embed, progress=progress,
        )
    else:
        logger.info("%s: reusing the %s embeddings of this run", spec, key[0])
    x = base_features[key] if head is None else apply_head(head, base_features[key], device=device)
    label = f"{spec} †leak" if leaked else spec  # flagged in every table and figure
    s = probe_embeddings(x, data.y, groups=data.groups, n_classes=dataset.n_classes, config=config, encoder=label,
                         progress=progress)
    s.info = {
        "encoder_name": str(bundle.name),
        "weights_sha256": str(getattr(bundle, "weights_sha256", "") or ""),
        "random_weights": bool(getattr(bundle, "random_weights", False)),
        "dim": int(x.shape[1]),
        "base_encoder": key[0] if head is not None else None,
        **({"leak": leaked} if leaked else {}),
    }
    return s


def _run_config(dataset: PatchDataset, encoders: Sequence[str], data: _ProbeData, config: ProbeConfig,
                options: ProbeRunOptions) -> dict[str, Any]:
    """The ``config.json`` of a linear-probe run."""
    groups = data.groups
    return {
        "task": "linear-probe",
        "dataset": dataset.name,
        "data_root": str(dataset.root),
        "dataset_meta": dataset.meta,
        "n_items": int(data.idx.size),
        "n_items_total": dataset.n,
        "limit": options.limit,
        "class_names": dataset.class_names,
        "class_counts": np.bincount(data.y, minlength=dataset.n_classes).tolist(),
        "grouped": groups is not None,
        "n_groups": int(len(set(groups.tolist()))) if groups is not None else None,
        "encoders": list(encoders),
        "weights": {k: str(v) for k, v in dict(options.weights or {}).items()},
        "cache_dir": str(options.cache_dir) if options.cache_dir else None,
        "probe": asdict(config),
    }


def run_linear_probe(
    dataset: PatchDataset,
    encoders: Sequence[str],
    *,
    out_dir: Path | str,
    config: ProbeConfig = ProbeConfig(),
    options: ProbeRunOptions = ProbeRunOptions(),
    overwrite: bool = False,
    progress: Reporter | None = None,
) -> DownstreamResult:
    """Embed ``dataset`` with each encoder (cached), probe it, write table/CSV/figure to ``out_dir``.
    A ``ge:`` encoder trained on the section a probe set was cut from is refused unless
    ``options.allow_leak``."""
    from hagekit.device import resolve_device

    config.validate()
    device = str(resolve_device(config.device))
    out = Path(out_dir)
    _check_request(encoders, dict(options.weights or {}), out, overwrite)
    idx = subsample_indices(dataset.labels, options.limit, seed=config.seed)
    data = _ProbeData(idx, dataset.labels[idx], dataset.groups[idx] if dataset.groups is not None else None)
    make_probe_folds(data.y, data.groups, n_folds=config.folds, seed=config.seed)  # fail before embedding
    base_features: dict[tuple[str, str, bool], np.ndarray] = {}  # each base encoder runs once
    scores = [_probe_encoder(spec, dataset, data, (config, options, device), base_features, progress)
              for spec in encoders]
    result = DownstreamResult(task="linear-probe", dataset=dataset.name, scores=scores,
                              config=_run_config(dataset, encoders, data, config, options))
    write_downstream_report(result, out)  # every computation is done: no partial output on errors
    result.out_dir = out
    return result
