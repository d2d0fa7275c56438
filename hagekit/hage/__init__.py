"""HAGE (paper section 2): gene-informed encoder, expression encoder, predictor, losses,
hierarchical alignment, the model and its sklearn-like estimator. Loaded lazily (torch)."""

from __future__ import annotations

from hagekit._lazy import by_module, lazy_exports

#: module -> the public names it defines (loaded on first use)
_API = by_module(
    {
        "hagekit.hage.model": ["HAGEConfig", "HAGEModel"],
        "hagekit.hage.estimator": ["HAGERegressor"],
        "hagekit.hage.gene_encoder": ["GeneInformedEncoder", "MLPImageEncoder"],
        "hagekit.hage.expression": ["ExpressionEncoder", "ExpressionPredictor"],
        "hagekit.hage.losses": ["cyclip_loss", "clip_loss", "pcc_loss"],
        "hagekit.hage.hierarchy": ["build_hierarchy"],
        "hagekit.hage.ge_encoder": ["build_ge_encoder", "export_encoder"],
    }
)

__all__ = list(_API)


__getattr__, __dir__ = lazy_exports(__name__, _API)
