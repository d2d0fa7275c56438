"""HEST-Bench's regressors live in one registry: each fits and predicts, an unknown name is one line."""

from __future__ import annotations

import numpy as np
import pytest

from hagekit.bench.hest.protocol import METHODS, ProtocolConfig, fit_predict
from hagekit.errors import ConfigError


@pytest.mark.parametrize("name", METHODS.names())
def test_every_regressor_fits_and_predicts_reproducibly(name: str) -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 5))
    y = x[:, :3] @ rng.normal(size=(3, 2)) + 0.1 * rng.normal(size=(40, 2))
    config = ProtocolConfig(method=name).validate()
    pred = fit_predict(x[:30], y[:30], x[30:], config)
    assert pred.shape == (10, 2) and np.isfinite(pred).all()
    np.testing.assert_array_equal(pred, fit_predict(x[:30], y[:30], x[30:], config))
    assert np.corrcoef(pred[:, 0], y[30:, 0])[0, 1] > 0.3  # it learned something


def test_unknown_regressor_names_the_known_ones() -> None:
    with pytest.raises(ConfigError, match="--method: unknown HEST-Bench regressor 'lasso'.*ridge, xgboost, random-forest"):
        ProtocolConfig(method="lasso").validate()


def test_a_registered_regressor_is_used_by_name() -> None:
    METHODS.register("mean-only", lambda xt, yt, xs, seed, alpha: np.repeat(yt.mean(0, keepdims=True), len(xs), 0))
    try:
        pred = fit_predict(np.zeros((4, 2)), np.arange(8.0).reshape(4, 2), np.zeros((3, 2)),
                           ProtocolConfig(method="mean-only").validate())
        np.testing.assert_array_equal(pred, np.tile([3.0, 4.0], (3, 1)))
    finally:
        METHODS.unregister("mean-only")
