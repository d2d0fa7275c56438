"""HAGE (paper section 2): gene-informed encoder, expression encoder, predictor, losses,
hierarchical alignment, the model and its sklearn-like estimator. Loaded lazily (torch)."""

from __future__ import annotations

from hagekit._lazy import lazy_exports

_API = {
    "HAGEConfig": "hagekit.hage.model",
    "HAGEModel": "hagekit.hage.model",
    "HAGERegressor": "hagekit.hage.estimator",
    "GeneInformedEncoder": "hagekit.hage.gene_encoder",
    "MLPImageEncoder": "hagekit.hage.gene_encoder",
    "ExpressionEncoder": "hagekit.hage.expression",
    "ExpressionPredictor": "hagekit.hage.expression",
    "cyclip_loss": "hagekit.hage.losses",
    "clip_loss": "hagekit.hage.losses",
    "pcc_loss": "hagekit.hage.losses",
    "build_hierarchy": "hagekit.hage.hierarchy",
    "build_ge_encoder": "hagekit.hage.ge_encoder",
    "export_encoder": "hagekit.hage.ge_encoder",
}

__all__ = list(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
