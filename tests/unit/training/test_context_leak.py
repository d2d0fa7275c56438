"""Context never reads a test section's expression: permuting it changes no prediction.

Generic over :data:`CONTEXT_METHODS` (``tests/toys/context_toy.py``): every context method
is fitted through the cross-validation protocol twice, once with the held-out section's
expression shuffled across its spots, and must predict that section identically.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from toys import context_toy as toy

from hagekit.baselines import make_method
from hagekit.training.protocol import ProtocolSettings, run_protocol

CONTEXT_METHODS, HAGE_CONTEXT, toy_dataset = toy.CONTEXT_METHODS, toy.HAGE_CONTEXT, toy.toy_dataset

pytestmark = pytest.mark.usefixtures("one_torch_thread")

#: Methods whose context is the neighbour ring only (section-wide models move every spot).
LOCAL_CONTEXT = {"ridge-ctx", "hage"}


def _fit_through_protocol(data, name: str) -> tuple[list, list]:
    built = []

    def factory(ctx):
        est = make_method(name, context={**HAGE_CONTEXT, "random_state": ctx.seed}, **CONTEXT_METHODS[name])
        built.append(est)
        return est

    res = run_protocol(data, factory, ProtocolSettings(folds=["B1"], trials=1, method=name, save_models=False))
    return built, res.rows


@pytest.mark.parametrize("name", list(CONTEXT_METHODS))
def test_permuting_the_test_sections_expression_changes_no_prediction(name: str) -> None:
    data = toy_dataset()
    perm = np.random.default_rng(0).permutation(data.sections["B1"].n_spots)
    shuffled = dict(data.sections)
    b1 = data.sections["B1"]
    shuffled["B1"] = dataclasses.replace(b1, targets=b1.targets[perm], counts=b1.counts[perm])
    other = dataclasses.replace(data, sections=shuffled)

    (est_a,), rows_a = _fit_through_protocol(data, name)
    (est_b,), rows_b = _fit_through_protocol(other, name)
    X, _, S, _ = data.stack(["B1"])
    pred_a = est_a.predict(X, spatial=S)
    pred_b = est_b.predict(X, spatial=S)
    np.testing.assert_array_equal(pred_a, pred_b)
    # the shuffle was real: the same predictions score differently against it
    assert rows_a[0]["pcc_all"] != rows_b[0]["pcc_all"]


@pytest.mark.parametrize("name", list(CONTEXT_METHODS))
def test_context_reads_the_neighbours_features(name: str) -> None:
    """Changing one spot's features moves its neighbours' predictions (context is really used)
    and leaves far spots alone."""
    data = toy_dataset()
    X, Y, S, g = data.stack(["A1", "A2"])
    est = make_method(name, context={**HAGE_CONTEXT, "random_state": 0}, **CONTEXT_METHODS[name])
    est.fit(X, Y, X_val=X[:20], Y_val=Y[:20], spatial=S, spatial_val=S[:20], groups=g, groups_val=g[:20])
    Xt, _, St, _ = data.stack(["B1"])
    base = est.predict(Xt, spatial=St)
    moved = Xt.copy()
    moved[24] += 5.0  # the centre of the 7 x 7 grid
    after = est.predict(moved, spatial=St)
    changed = np.flatnonzero(np.abs(after - base).max(axis=1) > 1e-6)
    neighbours = {16, 17, 18, 23, 25, 30, 31, 32}
    assert neighbours <= set(changed.tolist())
    if name in LOCAL_CONTEXT:  # neighbour means: nothing beyond the ring moves
        assert set(changed.tolist()) == neighbours | {24}
