"""Seeded runs of the context methods pinned to numbers, like ``test_behaviour_pinned.py``.

``ridge-ctx`` and HAGE with ``context = "mean"`` fitted (seed 0) on fixed tiny sections whose
expression depends on the neighbourhood; a change of these numbers is a change of behaviour
(neighbourhoods, the [x, neighbour mean] input, the fit). Regenerate only for an intended
change: ``PYTHONPATH=.:tests python tests/unit/learn/test_context_pinned.py`` prints the table.
"""

from __future__ import annotations

import numpy as np
import pytest
from toys import context_toy as toy

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Pinned methods: registry name and settings (HAGE's tiny config comes from the toy context).
PINNED_METHODS = {
    "ridge-ctx": {"pca": 6, "cv": 3, "radius": 1.5},
    "hage": {"config__context": "mean", "config__epochs": 4, "config__dropout": 0.0},
}


def run_method(name: str) -> np.ndarray:
    """Fit ``name`` (seed 0) on sections A1 + A2 (every 5th spot validates), predict B1."""
    from hagekit.baselines import make_method

    data = toy.toy_dataset()
    X, Y, S, g = data.stack(["A1", "A2"])
    va = np.arange(len(X)) % 5 == 0
    est = make_method(name, context={**toy.HAGE_CONTEXT, "random_state": 0}, **PINNED_METHODS[name])
    est.fit(X[~va], Y[~va], X_val=X[va], Y_val=Y[va], spatial=S[~va], spatial_val=S[va],
            groups=g[~va], groups_val=g[va])
    Xt, _, St, _ = data.stack(["B1"])
    return np.asarray(est.predict(Xt, spatial=St), dtype=np.float64)


def fingerprint(pred: np.ndarray) -> list[float]:
    """A few raw predictions, the mean, and the mean per-gene spread."""
    return [*pred[:2, :3].ravel().tolist(), float(pred.mean()), float(pred.std(axis=0).mean())]


PINNED: dict[str, list[float]] = {
    "ridge-ctx": [0.5802667140960693, 0.5434815883636475, 0.9079840779304504, 0.14352716505527496,
                  1.3234106302261353, 1.2937744855880737, 0.9533257621853631, 0.3899312782317455],
    "hage": [0.8194160461425781, 0.9485616683959961, 0.5073210000991821, 0.4159879684448242,
             1.0161514282226562, 0.7666588425636292, 0.9880465354238238, 0.17157299326212586],
}


@pytest.mark.parametrize("name", list(PINNED_METHODS))
def test_context_method_matches_pinned_numbers(name: str) -> None:
    got = fingerprint(run_method(name))
    np.testing.assert_allclose(got, PINNED[name], rtol=1e-5, atol=1e-6)


if __name__ == "__main__":  # print the table to pin
    import torch

    torch.set_num_threads(1)
    for method in PINNED_METHODS:
        print(f'    "{method}": {fingerprint(run_method(method))},')
