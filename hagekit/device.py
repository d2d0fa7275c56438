"""One device resolver for every command: ``auto`` means CUDA when present, else CPU.

Also the autocast precision rule and the DataLoader worker count, so that extraction,
training and benchmarks make the same choice from the same inputs. Under ``torchrun``
(``LOCAL_RANK`` set) ``auto``/``cuda`` mean this rank's own GPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING

from hagekit.errors import ConfigError

if TYPE_CHECKING:
    import torch

__all__ = ["PRECISIONS", "resolve_device", "resolve_precision", "default_num_workers", "usable_cpus", "torch_threads"]

log = logging.getLogger(__name__)

PRECISIONS = ("fp32", "bf16", "fp16")


def _local_rank() -> int | None:
    value = os.environ.get("LOCAL_RANK")
    try:
        return int(value) if value not in (None, "") else None
    except ValueError:
        return None


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``auto``/None -> CUDA when present (this rank's GPU under torchrun), else CPU.

    ``cuda`` without a GPU, or an unknown name, is a ConfigError that lists the valid choices.
    """
    import torch

    if isinstance(device, torch.device):
        name = str(device)
    else:
        name = (str(device) if device is not None else "auto").strip().lower() or "auto"
    rank = _local_rank()
    if name == "auto":
        if not torch.cuda.is_available():
            return torch.device("cpu")
        name = "cuda"
    if name == "cuda" and rank is not None and torch.cuda.is_available():
        return torch.device("cuda", rank % max(1, torch.cuda.device_count()))
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: no CUDA device is available (valid here: auto, cpu)")
        try:
            return torch.device(name)
        except RuntimeError:
            raise ConfigError(f"--device: unknown device {device!r} (valid: auto, cpu, cuda, cuda:N)") from None
    if name == "cpu":
        return torch.device("cpu")
    raise ConfigError(f"--device: unknown device {device!r} (valid: auto, cpu, cuda, cuda:N)")


def resolve_precision(precision: str | None, device: torch.device, default: str = "bf16") -> str:
    """The autocast precision: ``precision`` if given, else ``default`` on CUDA and fp32 on CPU.

    Autocast runs on CUDA only; asking for bf16/fp16 on CPU logs a warning and uses fp32.
    """
    if precision is not None and precision not in PRECISIONS:
        raise ConfigError(f"--precision: unknown {precision!r} (valid: {', '.join(PRECISIONS)})")
    if device.type != "cuda":
        if precision not in (None, "fp32"):
            log.warning("--precision %s: autocast runs on CUDA only; using fp32 on %s", precision, device)
        return "fp32"
    return precision or (default if default in PRECISIONS else "fp32")


def usable_cpus() -> int:
    """CPUs this process may run on (its affinity mask on Linux)."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def default_num_workers(device: torch.device) -> int:
    """Reader workers: up to 8 on CUDA; on CPU none below 8 cores.

    On a small CPU box a reader process preempts the model's own threads and costs more than
    it hides (measured on 2 cores: end-to-end/bare 0.76 with one worker, 0.95 without).
    """
    cpus = usable_cpus()
    if device.type == "cuda":
        return max(1, min(8, cpus - 1))
    return 0 if cpus < 8 else min(4, cpus // 8)


@contextlib.contextmanager
def torch_threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch CPU threads, then restore the previous count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)
