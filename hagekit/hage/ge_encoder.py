"""The gene-informed encoder of a trained HAGE run as an image encoder (``ge:`` in the registry).

Registered with :func:`~hagekit.encoders.registry.register_encoder` like every encoder; the
registry imports this module through the ``hagekit.encoders`` entry point (pyproject.toml).

``ge:<run>[:fold:trial]`` or ``ge:<file.safetensors>`` (from :func:`export_encoder`): the run's
base encoder (the one its features came from), then the trained GE module (feature
standardisation, W_x, cross-attention over the panel's gene embeddings, MLP) -> z^i (d).
Without ``:fold:trial`` the first fold (sorted by name) and trial 0 are used.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from hagekit.encoders.registry import EncoderBundle, create_encoder, register_encoder
from hagekit.errors import EncoderError, HagekitError
from hagekit.hage.model import GEHead, HAGEConfig, collapse_message
from hagekit.io.jsonfile import read_json_object

__all__ = ["GEHead", "GEEncoder", "build_ge_encoder", "export_encoder", "load_ge_head", "GE_FORMAT",
           "describe_training", "exported_training"]

log = logging.getLogger(__name__)

GE_FORMAT = "hagekit.ge-encoder/1"
_HEAD_PREFIXES = ("image_encoder.", "x_mean", "x_std", "gene_embeddings")


class GEEncoder(nn.Module):
    """Images (B, 3, H, W) -> base encoder features -> :class:`GEHead` -> z^i (B, d)."""

    def __init__(self, base: nn.Module, head: GEHead) -> None:
        super().__init__()
        self.base = base
        self.head = head

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.head(self.base(images))


@dataclass
class _Source:
    """Everything needed to build the encoder, from a run or an exported file."""

    config: HAGEConfig
    d_in: int
    state: dict[str, torch.Tensor]
    base_spec: str
    base_weights: str
    base_sha256: str
    genes: list[str]
    label: str
    meta: dict[str, Any]
    #: The run's features came from a seeded ``--random-weights`` base encoder.
    base_random_weights: bool = False
    #: Final mean pairwise cosines ``{"zi_cos", "ze_cos"}`` of the trained model (collapse check).
    cosines: dict[str, float] | None = None


def _run_cosines(meta: dict[str, Any]) -> dict[str, float] | None:
    """A trained model's collapse diagnostics: recorded ones, else the last epoch's batch means."""
    cos = meta.get("embedding_cosines")
    if not cos and meta.get("history"):
        last = meta["history"][-1]
        cos = {k: last[k] for k in ("zi_cos", "ze_cos") if k in last}
    return {k: float(v) for k, v in cos.items()} if cos and len(cos) == 2 else None


def refuse_collapsed(src: _Source, what: str, *, force: bool) -> None:
    """Raise (unless ``force``) when the source model's embeddings collapsed."""
    msg = collapse_message(**src.cosines) if src.cosines else None
    if msg and not force:
        raise EncoderError(f"{what}: {msg}; pass --force (export-encoder) or ge:<run>:force to use it anyway")
    if msg:
        log.warning("%s: %s (forced)", what, msg)


def _head_state(state: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if k.startswith(_HEAD_PREFIXES)}


def _base_from_attrs(attrs: dict[str, Any]) -> tuple[str, str, str]:
    """(spec, weights path, weights sha256) of the encoder that made a run's features."""
    cfg = attrs.get("encoder_config")
    if isinstance(cfg, str):
        try:
            cfg = json.loads(cfg)
        except json.JSONDecodeError:
            cfg = {}
    cfg = cfg if isinstance(cfg, dict) else {}
    spec = str(attrs.get("encoder_spec") or cfg.get("spec") or attrs.get("encoder") or "")
    weights = str(attrs.get("encoder_weights") or attrs.get("weights") or cfg.get("weights") or "")
    return spec, weights, str(attrs.get("encoder_weights_sha256", ""))


def _pick_model(info, fold: str | None, trial: int | None) -> tuple[str, int, Path]:
    if fold is None:
        fold, trial = sorted(info.models)[0]
        log.info("ge:%s: using fold %s trial %d (add :fold:trial to choose)", info.path, fold, trial)
    trial = 0 if trial is None else trial
    key = (fold, int(trial))
    if key not in info.models:
        have = ", ".join(f"{f}:{t}" for f, t in info.models)
        raise EncoderError(f"ge:{info.path}: no model for fold {fold} trial {trial} (have: {have})")
    return fold, int(trial), info.models[key]


def _from_run(run: Path, fold: str | None, trial: int | None) -> _Source:
    from hagekit.hage.estimator import ESTIMATOR_FILE, MODEL_FILE
    from hagekit.hage.run_io import load_run

    try:
        info = load_run(run)
    except HagekitError as exc:
        raise EncoderError(f"ge:{run}: {exc}") from None
    fold, trial, mdir = _pick_model(info, fold, trial)
    from hagekit.io.tensorfile import load_safetensors

    meta_path = mdir / ESTIMATOR_FILE
    try:
        meta = read_json_object(meta_path, missing="not found (the trial folder lacks its model)",
                                what="a HAGE estimator description")
        config, d_in = HAGEConfig.from_dict(meta["config"], source=str(meta_path)), int(meta["n_features_in"])
        cosines = _run_cosines(meta)
    except HagekitError as exc:
        raise EncoderError(f"ge:{run}: {exc}") from None
    except OSError as exc:
        raise EncoderError(f"ge:{run}: {meta_path}: unreadable ({exc.strerror or exc})") from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise EncoderError(f"ge:{run}: {meta_path}: incomplete estimator description ({type(exc).__name__}: {exc})") from None
    try:
        state = load_safetensors(mdir / MODEL_FILE)
    except Exception as exc:  # safetensors raises several types on corrupt files
        raise EncoderError(f"ge:{run}: {mdir / MODEL_FILE}: not a readable safetensors file ({exc})") from None
    from hagekit.hage.run_io import trained_on

    try:
        seen = trained_on(info, fold)
    except HagekitError as exc:
        log.warning("ge:%s: %s; the sections this model saw are unknown", run, exc)
        seen = {}
    spec, weights, sha = _base_from_attrs(info.feature_attrs)
    if not spec:
        raise EncoderError(f"ge:{run}: the run's config.json does not name the encoder of its features")
    return _Source(
        config=config,
        d_in=d_in,
        state=_head_state(state),
        base_spec=spec,
        base_weights=weights,
        base_sha256=sha,
        genes=list(info.genes),
        label=f"{run}:{fold}:{trial}",
        meta={"run": str(run.resolve()), "fold": fold, "trial": trial,
              **({"trained_sections": seen["sections"], "trained_patients": seen["patients"],
                  "trained_sections_without_patient": seen["sections_without_patient"]} if seen else {})},
        base_random_weights=str(info.feature_attrs.get("random_weights", "")).lower() in ("true", "1"),
        cosines=cosines,
    )


def _from_file(path: Path) -> _Source:
    from hagekit.io.tensorfile import load_safetensors

    try:
        state, meta = load_safetensors(path, with_metadata=True)
    except Exception as exc:  # safetensors raises several types on bad files
        raise EncoderError(f"ge:{path}: not a readable safetensors file ({exc})") from None
    if meta.get("format") != GE_FORMAT:
        raise EncoderError(f"ge:{path}: not an exported HAGE encoder (format {meta.get('format')!r}, expected {GE_FORMAT})")
    try:
        return _Source(
            config=HAGEConfig.from_dict(json.loads(meta["config"]), source=str(path)),
            d_in=int(meta["d_in"]),
            state=state,
            base_spec=meta["base_encoder"],
            base_weights=meta.get("base_weights", ""),
            base_sha256=meta.get("base_weights_sha256", ""),
            base_random_weights=meta.get("base_random_weights", "false") == "true",
            genes=json.loads(meta.get("genes", "[]")),
            label=str(path),
            meta={**{k: meta[k] for k in ("run", "fold", "trial") if k in meta},
                  **{k: json.loads(meta[k]) for k in ("trained_sections", "trained_patients",
                                                      "trained_sections_without_patient") if k in meta}},
            cosines=json.loads(meta["embedding_cosines"]) if meta.get("embedding_cosines") else None,
        )
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise EncoderError(f"ge:{path}: incomplete encoder metadata ({type(exc).__name__}: {exc})") from None


def _parse_target(target: str) -> tuple[Path, str | None, int | None]:
    text = target.strip().removesuffix(":force")
    path = Path(text).expanduser()
    if path.exists():
        return path, None, None
    m = re.fullmatch(r"(.+):([^:/\\]+):(\d+)", text)
    if m and Path(m.group(1)).expanduser().exists():
        return Path(m.group(1)).expanduser(), m.group(2), int(m.group(3))
    raise EncoderError(
        f"--encoder ge:{target}: no such run folder or exported encoder file "
        "(use ge:<run>[:fold:trial] or ge:<file.safetensors>)"
    )


def load_ge_head(target: str | Path) -> tuple[GEHead, _Source]:
    """The trained GE module (features -> z^i) of a run (``run[:fold:trial]``) or exported file;
    a collapsed model is refused unless the target ends in ``:force``."""
    path, fold, trial = _parse_target(str(target))
    src = _from_file(path) if path.is_file() else _from_run(path, fold, trial)
    refuse_collapsed(src, f"ge:{target}", force=str(target).strip().endswith(":force"))
    if "gene_embeddings" not in src.state:
        raise EncoderError(f"ge:{target}: no gene embeddings in the weights")
    head = GEHead(src.config, src.d_in, src.state["gene_embeddings"])
    missing, unexpected = head.load_state_dict(src.state, strict=False)
    if missing or unexpected:
        raise EncoderError(f"ge:{target}: weights do not match the GE config (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return head.eval(), src


@register_encoder(
    "ge:",
    weights="a trained HAGE run",
    description="gene-informed encoder of a trained HAGE run (ge:<run-or-file>[:fold:trial])",
    usage="ge:<run>",
)
def _registry_builder(arg: str | None, *, weights: Path | None, random_weights: bool, device: str) -> EncoderBundle:
    """``ge:<run>`` as the registry calls it: the weights always come from the run."""
    if weights is not None or random_weights:
        raise EncoderError("--encoder ge:<run>: weights come from the run; drop --weights/--random-weights")
    return build_ge_encoder(str(arg), device=device)


def build_ge_encoder(target: str, *, device: str = "cpu") -> EncoderBundle:
    """The encoder ``ge:<target>``: base encoder of the run, then its trained GE -> z^i."""
    head, src = load_ge_head(target)
    weights = Path(src.base_weights) if src.base_weights and Path(src.base_weights).is_file() else None
    random = src.base_random_weights and weights is None
    base = create_encoder(src.base_spec, weights=weights, random_weights=random, device=device)
    if src.base_sha256 and base.weights_sha256 and base.weights_sha256 != src.base_sha256:
        raise EncoderError(
            f"ge:{target}: base encoder {src.base_spec} has weights sha256 {base.weights_sha256[:12]}..., "
            f"but the run was trained on features from {src.base_sha256[:12]}..."
        )
    if base.dim != src.d_in:
        raise EncoderError(f"ge:{target}: base encoder {src.base_spec} gives {base.dim}-d features, the GE expects {src.d_in}")
    model = GEEncoder(base.model, head).to(device).eval()
    h = hashlib.sha256(base.weights_sha256.encode())
    for key in sorted(head.state_dict()):
        h.update(key.encode())
        h.update(head.state_dict()[key].detach().cpu().contiguous().numpy().tobytes())
    return EncoderBundle(
        name=f"ge:{src.label}",
        model=model,
        transform=base.transform,
        dim=int(src.config.d),
        input_size=base.input_size,
        weights_sha256=h.hexdigest(),
        random_weights=bool(base.random_weights),
        precision=base.precision,
        config={
            "spec": f"ge:{target}",
            "base_encoder": src.base_spec,
            "base_weights_sha256": base.weights_sha256,
            "n_genes": len(src.genes),
            "d": int(src.config.d),
            **src.meta,
        },
    )


def export_encoder(run: Path | str, out: Path | str, *, fold: str | None = None, trial: int | None = None,
                   force: bool = False) -> Path:
    """Write a self-contained ``.safetensors``: GE weights, gene embeddings, config, base encoder spec.
    A collapsed model (:func:`hagekit.hage.model.collapse_message`) is refused unless ``force``."""
    from hagekit.errors import ConfigError
    from hagekit.io.atomic import atomic_path
    from hagekit.io.tensorfile import save_safetensors

    run, out = Path(run), Path(out)
    if out.suffix != ".safetensors":
        raise ConfigError(f"--out: {out} must end in .safetensors")
    if not run.is_dir():
        raise EncoderError(f"--run: {run} is not a run folder")
    if trial is not None and fold is None:
        raise ConfigError("--trial needs --fold")
    src = _from_run(run, fold, trial)
    refuse_collapsed(src, f"export-encoder {run}", force=force)
    tensors = {k: v.detach().cpu().contiguous() for k, v in src.state.items()}
    metadata = {
        "format": GE_FORMAT,
        "config": json.dumps(src.config.to_dict()),
        "d_in": str(src.d_in),
        "base_encoder": src.base_spec,
        "base_weights": src.base_weights,
        "base_weights_sha256": src.base_sha256,
        "base_random_weights": "true" if src.base_random_weights else "false",
        "genes": json.dumps(src.genes),
        **({"embedding_cosines": json.dumps(src.cosines)} if src.cosines else {}),
        **{k: json.dumps(v) if isinstance(v, list) else str(v) for k, v in src.meta.items()},
    }
    with atomic_path(out) as tmp:
        save_safetensors(tensors, tmp, metadata=metadata)
    log.info("exported GE of %s (%d genes, d=%d) to %s", src.label, len(src.genes), src.config.d, out)
    return out


def describe_training(meta: dict[str, Any]) -> str:
    """One line: which fold/trial a GE model is and which sections (patients) it was trained on."""
    secs, pats = meta.get("trained_sections"), meta.get("trained_patients")
    which = f"fold {meta.get('fold', '?')} trial {meta.get('trial', '?')}"
    if not secs:
        return f"{which}: the sections it was trained on are unknown (no splits.json)"
    unknown = meta.get("trained_sections_without_patient") or []
    extra = f"; patient unknown for {len(unknown)} section(s)" if unknown else ""
    return (f"{which}, trained on sections {', '.join(secs)} (patients {', '.join(pats or ['?'])}{extra}); "
            "do not evaluate it on those")


def exported_training(path: Path | str) -> dict[str, Any]:
    """The ``run``/``fold``/``trial``/``trained_*`` metadata of an exported encoder file."""
    return _from_file(Path(path)).meta
