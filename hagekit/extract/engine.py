"""The extraction loop: DataLoader workers read and transform patches while the model runs.

Batches go to the device through pinned memory (``non_blocking``), the forward runs under
``inference_mode`` and, on CUDA, ``autocast`` (bf16 by default); features come back with one
``.cpu()`` per batch, in dataset order, into one preallocated (N, D) float32 array
(:func:`run_encoder`) or to a callback that writes them out, keeping none (:func:`stream_encoder`).
The model side of the loop is an :class:`EncoderSetup` (bundle, device, precision).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from hagekit.device import (
    PRECISIONS,
    default_num_workers,
    resolve_device,
    resolve_precision,
    usable_cpus,
)
from hagekit.errors import ConfigError
from hagekit.extract.summary import per_second
from hagekit.progress import Reporter, Task, reporter_or_null

if TYPE_CHECKING:
    import torch

    from hagekit.encoders import EncoderBundle

__all__ = [
    "EncoderSetup",
    "RunStats",
    "resolve_device",
    "resolve_precision",
    "default_num_workers",
    "run_encoder",
    "stream_encoder",
    "encode_images",
    "PRECISIONS",
]

log = logging.getLogger(__name__)


@dataclass
class EncoderSetup:
    """An encoder built once per run, on its device, with its autocast precision."""

    spec: str  #: the encoder spec string recorded in feature files
    bundle: EncoderBundle
    device: torch.device
    precision: str = "fp32"

    @classmethod
    def of(cls, bundle: EncoderBundle, device: torch.device | str = "cpu", precision: str = "fp32") -> EncoderSetup:
        """A bundle whose model is already on ``device`` (its name as the spec string)."""
        import torch

        return cls(bundle.name, bundle, torch.device(device), precision)


@dataclass
class RunStats:
    """Timing of one extraction run: patches, wall seconds, and seconds inside the model."""

    n: int
    seconds: float = 0.0
    forward_seconds: float = 0.0

    @property
    def patches_per_s(self) -> float:
        """Patches per wall second (reading, transforms, model and copies together)."""
        return per_second(self.n, self.seconds)


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)


def _loader(dataset: Any, *, batch_size: int | None, num_workers: int, pin: bool) -> Any:
    import multiprocessing

    import torch

    kwargs: dict[str, Any] = {}
    if num_workers > 0:
        kwargs["worker_init_fn"] = _worker_init
        kwargs["prefetch_factor"] = 4
        if "fork" in multiprocessing.get_all_start_methods():
            # fork shares a decoded section image with workers instead of pickling it
            kwargs["multiprocessing_context"] = "fork"
    return torch.utils.data.DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=num_workers,
        pin_memory=pin,
        drop_last=False,
        **kwargs,
    )


def _row_count(dataset: Any, n_rows: int | None, batch_size: int, num_workers: int) -> int:
    """Rows the run will produce (validating the options first)."""
    if batch_size < 1:
        raise ConfigError(f"--batch-size: must be >= 1, got {batch_size}")
    if num_workers < 0:
        raise ConfigError(f"--num-workers: must be >= 0, got {num_workers}")
    return len(dataset) if n_rows is None else int(n_rows)


def run_encoder(
    setup: EncoderSetup,
    dataset: Any,
    *,
    batch_size: int = 64,
    num_workers: int = 0,
    task: Task | None = None,
    on_batch: Callable[[Any], None] | None = None,
    n_rows: int | None = None,
) -> tuple[np.ndarray, RunStats]:
    """Encode every item of ``dataset`` (items: a (3, S, S) tensor, or a tuple whose first
    element is one) with ``setup``; return features (N, D) float32 in dataset order and timings.

    ``on_batch`` receives each batch's remaining tuple elements (e.g. raw patches to dump).
    With ``n_rows``, every item of ``dataset`` is already a whole batch (read and decoded
    together in a worker, e.g. one h5 slice) and ``n_rows`` is the total row count. To write
    features as they come (a cache) without holding all N rows, use :func:`stream_encoder`.
    """
    out = np.zeros((_row_count(dataset, n_rows, batch_size, num_workers), setup.bundle.dim), dtype=np.float32)
    filled = 0

    def keep(feats: np.ndarray, rest: Any) -> None:
        nonlocal filled
        out[filled : filled + len(feats)] = feats
        filled += len(feats)
        if rest is not None and on_batch is not None:
            on_batch(rest)

    stats = stream_encoder(setup, dataset, on_features=keep, batch_size=batch_size, num_workers=num_workers,
                           task=task, n_rows=n_rows)
    return out, stats


def stream_encoder(
    setup: EncoderSetup,
    dataset: Any,
    *,
    on_features: Callable[[np.ndarray, Any], None],
    batch_size: int = 64,
    num_workers: int = 0,
    task: Task | None = None,
    n_rows: int | None = None,
) -> RunStats:
    """Encode every item of ``dataset`` like :func:`run_encoder`, but hand each batch's features
    (B, D) float32, in dataset order, with the batch's remaining tuple elements (or ``None``) to
    ``on_features`` and keep none: memory stays one batch whatever N."""
    import torch

    n = _row_count(dataset, n_rows, batch_size, num_workers)
    device = torch.device(setup.device)
    start = time.perf_counter()
    if n == 0:
        return RunStats(0)
    pin = device.type == "cuda"
    n_batches = len(dataset) if n_rows is not None else -(-n // batch_size)
    workers = num_workers if n_batches > 1 else 0  # one batch: workers only cost start-up
    loader = _loader(dataset, batch_size=None if n_rows is not None else batch_size, num_workers=workers, pin=pin)
    threads = torch.get_num_threads()
    if device.type == "cpu" and workers > 0:  # leave the readers their cores
        torch.set_num_threads(max(1, min(threads, usable_cpus() - workers)))
    try:
        forward = _encode_loop(setup.bundle, loader, on_features, device=device, precision=setup.precision, task=task)
    finally:
        torch.set_num_threads(threads)
    return RunStats(n, time.perf_counter() - start, forward)


def _encode_loop(
    bundle: EncoderBundle,
    loader: Any,
    on_features: Callable[[np.ndarray, Any], None],
    *,
    device: torch.device,
    precision: str,
    task: Task | None,
) -> float:
    """Run the model over ``loader``, each batch's features to ``on_features``; return the seconds in the model."""
    import torch

    forward = 0.0
    model = bundle.model
    autocast_dtype = {"bf16": torch.bfloat16, "fp16": torch.float16}.get(precision)
    use_autocast = device.type == "cuda" and autocast_dtype is not None
    # CUDA: the next batch is copied on a side stream while the current one runs
    copy_stream = torch.cuda.Stream(device=device) if device.type == "cuda" else None

    def stage(batch: Any) -> tuple[Any, Any]:
        x, rest = (batch[0], batch[1:]) if isinstance(batch, (list, tuple)) else (batch, None)
        if copy_stream is None:
            return x.to(device), rest
        with torch.cuda.stream(copy_stream):
            return x.to(device, non_blocking=True), rest

    it = iter(loader)
    first = next(it, None)
    staged = stage(first) if first is not None else None
    with torch.inference_mode():
        while staged is not None:
            x, rest = staged
            t0 = time.perf_counter()
            if copy_stream is not None:
                current = torch.cuda.current_stream(device)
                current.wait_stream(copy_stream)
                x.record_stream(current)
            if use_autocast:
                with torch.autocast(device_type="cuda", dtype=autocast_dtype):
                    feats_t = model(x)
            else:
                feats_t = model(x)
            forward += time.perf_counter() - t0
            nxt = next(it, None)  # the loader's next batch while the device computes
            staged = stage(nxt) if nxt is not None else None
            t1 = time.perf_counter()
            feats = feats_t.float().cpu().numpy()  # one device->host copy per batch (syncs)
            forward += time.perf_counter() - t1
            b = feats.shape[0]
            if feats.ndim != 2 or feats.shape[1] != bundle.dim:
                raise ConfigError(f"encoder {bundle.name}: model returned shape {tuple(feats.shape)}, expected (B, {bundle.dim})")
            on_features(feats, rest)
            if task is not None:
                task.advance(b)
    return forward


class _ImageListDataset:
    """A dataset over an (N, H, W, 3) uint8 array or a sequence of H x W x 3 arrays."""

    def __init__(self, images: Any, transform: Callable[[Any], Any]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> Any:
        return self.transform(np.asarray(self.images[i]))


def encode_images(
    bundle: EncoderBundle,
    images: np.ndarray | Sequence[np.ndarray],
    *,
    batch_size: int = 64,
    device: str = "auto",
    num_workers: int = 0,
    precision: str | None = None,
    progress: Reporter | None = None,
) -> np.ndarray:
    """Features (N, D) float32 of RGB uint8 images (N, H, W, 3) through ``bundle``.

    Images are resized to the encoder's input size by its transform (e.g. 96 px PCAM
    patches -> 224 px for UNI). The bundle's model is moved to ``device``.
    """
    dev = resolve_device(device)
    if isinstance(images, np.ndarray) and (images.ndim != 4 or images.shape[-1] != 3):
        raise ConfigError(f"images: expected (N, H, W, 3) uint8, got shape {images.shape}")
    bundle.model.to(dev)
    prec = resolve_precision(precision, dev, bundle.precision)
    task = reporter_or_null(progress).task("encode", total=len(images))
    try:
        feats, _ = run_encoder(
            EncoderSetup.of(bundle, dev, prec),
            _ImageListDataset(images, bundle.transform),
            batch_size=batch_size,
            num_workers=num_workers,
            task=task,
        )
    finally:
        task.close()
    return feats
