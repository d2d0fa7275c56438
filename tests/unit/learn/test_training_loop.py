"""The shared training loop: batching, budget, early stopping with best-weight restore, schedules,
and the on-device PCC agreeing with the reported one."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hagekit.errors import ConfigError
from hagekit.learn.loop import (
    LoopConfig,
    LoopHooks,
    planned_steps,
    seeded,
    steps_per_epoch,
    train_loop,
    warmup_schedule,
)
from hagekit.metrics import pearson_per_gene

pytestmark = pytest.mark.usefixtures("one_torch_thread")


def _problem(n=64, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=g)
    y = x @ torch.randn(d, 1, generator=g)
    return x, y


def test_batches_tail_rules_and_budget():
    assert steps_per_epoch(161, LoopConfig(batch_size=32)) == 6  # tail of 1 kept
    assert steps_per_epoch(161, LoopConfig(batch_size=32, min_batch=2)) == 5  # skipped
    assert steps_per_epoch(161, LoopConfig(batch_size=32, min_batch=2, merge_tail=True)) == 5
    assert steps_per_epoch(10, LoopConfig(batch_size=32)) == 1
    assert planned_steps(100, LoopConfig(epochs=2, batch_size=50)) == 4
    assert planned_steps(100, LoopConfig(epochs=2, batch_size=50, min_steps=7)) == 8
    assert planned_steps(100, LoopConfig(epochs=9, batch_size=50, max_steps=5)) == 5


def test_every_item_once_per_epoch_and_seeded_permutations():
    x, y = _problem(n=37)
    model = torch.nn.Linear(5, 1)
    seen: list[torch.Tensor] = []

    def step(idx):
        seen.append(idx.clone())
        return ((model(x[idx]) - y[idx]) ** 2).mean()

    cfg = LoopConfig(epochs=2, batch_size=8, min_batch=6, merge_tail=True, seed=3)
    res = train_loop(model, torch.optim.SGD(model.parameters(), lr=0.01), step, n=37, config=cfg)
    assert res.steps == 8 and len(res.history) == 2 and res.history[-1]["steps"] == 8
    first = torch.cat(seen[:4])
    assert sorted(first.tolist()) == list(range(37)) and len(seen[3]) == 13  # tail of 5 merged
    again: list[torch.Tensor] = []
    train_loop(model, torch.optim.SGD(model.parameters(), lr=0.01),
               lambda idx: (again.append(idx.clone()), model(x[idx]).mean())[1], n=37, config=cfg)
    assert all(torch.equal(a, b) for a, b in zip(seen, again, strict=True))


def test_min_steps_extends_epochs_and_max_steps_cuts():
    x, y = _problem(n=20)
    model = torch.nn.Linear(5, 1)
    step = lambda idx: ((model(x[idx]) - y[idx]) ** 2).mean()  # noqa: E731
    res = train_loop(model, torch.optim.SGD(model.parameters(), lr=0.01), step, n=20,
                     config=LoopConfig(epochs=1, batch_size=10, min_steps=7))
    assert res.steps == 8 and res.epochs == 4
    res = train_loop(model, torch.optim.SGD(model.parameters(), lr=0.01), step, n=20,
                     config=LoopConfig(epochs=5, batch_size=10, max_steps=3))
    assert res.steps == 3 and res.epochs == 2


def test_early_stopping_restores_the_best_weights():
    x, y = _problem()
    model = torch.nn.Linear(5, 1)
    scores = iter([0.1, 0.5, 0.3, 0.2, 0.4, 0.9])
    states = []

    def validate():
        states.append(model.weight.detach().clone())
        return {"val_pcc": next(scores)}

    res = train_loop(model, torch.optim.SGD(model.parameters(), lr=0.1),
                     lambda idx: ((model(x[idx]) - y[idx]) ** 2).mean(), n=64,
                     config=LoopConfig(epochs=6, batch_size=16, patience=2), validate=validate)
    assert res.stopped_early and res.best_epoch == 2 and res.best_score == 0.5 and len(res.history) == 4
    assert torch.equal(model.weight, states[1])
    assert [h["val_pcc"] for h in res.history] == [0.1, 0.5, 0.3, 0.2]


def test_min_mode_min_delta_and_nan_scores():
    x, y = _problem()
    model = torch.nn.Linear(5, 1)
    scores = iter([float("nan"), 1.0, 0.9999, 0.5, 0.49999])
    res = train_loop(model, torch.optim.SGD(model.parameters(), lr=0.01), lambda idx: model(x[idx]).mean(), n=64,
                     config=LoopConfig(epochs=5, batch_size=64, monitor="val_mse", mode="min", min_delta=1e-3),
                     validate=lambda: {"val_mse": next(scores)})
    assert res.best_epoch == 4 and res.best_score == 0.5 and not res.stopped_early


def test_unknown_monitor_and_bad_settings_are_refused():
    x, y = _problem()
    model = torch.nn.Linear(5, 1)
    with pytest.raises(ConfigError, match="monitor 'val_pcc'.*val_mse"):
        train_loop(model, torch.optim.SGD(model.parameters(), lr=0.01), lambda idx: model(x[idx]).mean(), n=64,
                   config=LoopConfig(), validate=lambda: {"val_mse": 1.0})
    with pytest.raises(ConfigError, match="mode"):
        LoopConfig(mode="best")
    with pytest.raises(ConfigError, match="scheduler_interval"):
        LoopConfig(scheduler_interval="batch")


def test_warmup_schedule_per_step():
    model = torch.nn.Linear(2, 1)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    sched = warmup_schedule(opt, warmup_steps=3, total_steps=13, decay="cosine")
    x, y = _problem(n=10, d=2)
    res = train_loop(model, opt, lambda idx: ((model(x[idx]) - y[idx]) ** 2).mean(), n=10, hooks=LoopHooks(scheduler=sched),
                     config=LoopConfig(epochs=13, batch_size=10, scheduler_interval="step"))
    lrs = [h["lr"] for h in res.history]
    assert lrs[:3] == pytest.approx([0.5, 0.75, 1.0])
    assert max(lrs) == pytest.approx(1.0) and lrs[-1] == pytest.approx(0.0, abs=1e-12)
    assert all(a >= b for a, b in zip(lrs[2:], lrs[3:], strict=False))


def test_seeded_forks_the_global_rng():
    torch.manual_seed(123)
    outside = torch.rand(1)
    torch.manual_seed(123)
    with seeded(7):
        a = torch.rand(3)
    assert torch.equal(torch.rand(1), outside)
    with seeded(7):
        assert torch.equal(torch.rand(3), a)


def test_device_pcc_matches_the_reported_pcc():
    from hagekit.metrics.device import GenePearson, mean_gene_pcc

    rng = np.random.default_rng(0)
    t = rng.normal(size=(150, 7)) * 3 + 2
    p = 0.5 * t + rng.normal(size=(150, 7))
    t[:, 2] = 1.7  # constant truth: excluded
    p[:, 5] = -0.3  # constant prediction: scores 0
    r, true_const, pred_const = pearson_per_gene(t, p)
    metric = GenePearson(7)
    for s in range(0, 150, 40):  # streamed in uneven batches
        metric.update(torch.tensor(p[s : s + 40]), torch.tensor(t[s : s + 40]))
    r2, tc2, pc2 = metric.compute_with_masks()
    np.testing.assert_allclose(r2.numpy(), r, rtol=0, atol=1e-12)
    assert np.array_equal(tc2.numpy(), true_const) and np.array_equal(pc2.numpy(), pred_const)
    assert np.isnan(r[2]) and r[5] == 0
    assert mean_gene_pcc(torch.tensor(p), torch.tensor(t)) == pytest.approx(float(np.nanmean(r)), abs=1e-12)


def test_classification_metrics_match_sklearn():
    from sklearn.metrics import recall_score, roc_auc_score

    from hagekit.metrics.device import classification_metrics

    rng = np.random.default_rng(1)
    labels = rng.integers(0, 3, 90)
    probs = rng.dirichlet(np.ones(3), 90) + np.eye(3)[labels] * 0.3
    probs /= probs.sum(1, keepdims=True)
    m = classification_metrics(3)
    m.update(torch.tensor(probs, dtype=torch.float32), torch.tensor(labels))
    out = {k: float(v) for k, v in m.compute().items()}
    assert out["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert out["auroc"] == pytest.approx(roc_auc_score(labels, probs, multi_class="ovr", average="macro"), abs=1e-5)
    assert out["recall"] == pytest.approx(recall_score(labels, probs.argmax(1), average="macro"))


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_autocast_on_cuda(precision):
    x, y = _problem()
    x, y = x.cuda(), y.cuda()
    model = torch.nn.Linear(5, 1).cuda()
    dtypes = []

    def step(idx):
        out = model(x[idx])
        dtypes.append(out.dtype)
        return ((out.float() - y[idx]) ** 2).mean()

    res = train_loop(model, torch.optim.Adam(model.parameters(), lr=1e-2), step, n=64,
                     config=LoopConfig(epochs=20, batch_size=16, precision=precision, grad_clip=1.0))
    assert set(dtypes) == {torch.bfloat16 if precision == "bf16" else torch.float16}
    assert res.history[-1]["loss"] < res.history[0]["loss"] and model.weight.dtype == torch.float32


def test_device_metrics_never_merge_other_ranks_tasks():
    """Under torchrun each rank owns whole (fold, trial) tasks: a validation metric must stay
    local (torchmetrics would otherwise all-gather on every compute and pair collectives of
    different tasks, or hang when ranks validate a different number of times)."""
    from hagekit.metrics.device import GenePearson, classification_metrics

    assert GenePearson(3).sync_on_compute is False
    for k in (2, 3):
        assert all(m.sync_on_compute is False for m in classification_metrics(k).values())
