"""The torch learners' training loop (ml.torch_fit.train_loop): gradient accumulation and fp16 overflow skips.

Each test trains one scalar parameter w with SGD at lr 1 on micro-batches whose loss is -w (gradient -1), so an
optimizer step moves w by exactly the mean gradient it was given.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from amzkit.ml.torch_fit import (
    OVERFLOW_CHECK_BATCHES,
    History,
    TrainPlan,
    fit_history_report,
    train_loop,
    warmup_decay,
    weighted_loss,
)

CPU = torch.device("cpu")


class Scalar(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))


def train_scalar(n_batches: int, grad_accum: int, steps_per_epoch: int, overflow=(), amp=None,
                 schedule: str = "constant", bad_grads=()):
    """Train w on `n_batches` micro-batches of loss -w (micro-batches in `overflow` give an infinite loss, those
    in `bad_grads` a finite loss with an infinite gradient): (the gradient each optimizer step used, the learning
    rate it used, History)."""
    model = Scalar()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    grads, rates = [], []

    def before_step(opt, args, kwargs):
        grads.append(float(model.w.grad))
        rates.append(opt.param_groups[0]["lr"])

    optimizer.register_step_pre_hook(before_step)

    def loss_of(i):
        if i in overflow:
            return torch.tensor(math.inf) + 0 * model.w.sum(), 1
        if i in bad_grads:  # sqrt(0) is 0 forward, its gradient infinite
            return -model.w.sum() + torch.sqrt(model.w - model.w.detach()).sum(), 1
        return -model.w.sum(), 1

    history = train_loop(model, optimizer, TrainPlan(1, steps_per_epoch), lambda epoch: list(range(n_batches)),
                         loss_of, device=CPU, amp=amp, schedule=schedule, grad_accum=grad_accum, clip_norm=1e9,
                         progress=False)
    return grads, rates, history


def test_an_epochs_short_last_accumulation_group_weighs_as_much_as_a_full_one():
    grads, _, history = train_scalar(5, grad_accum=4, steps_per_epoch=2)  # groups of 4 and 1 micro-batches
    assert grads == [-1.0, -1.0] and history.steps == 2  # the old loop gave the last group a quarter: -0.25


def test_a_skipped_fp16_batch_that_closes_a_group_keeps_the_groups_and_their_mean():
    grads, _, history = train_scalar(4, grad_accum=2, steps_per_epoch=2, overflow={1}, amp=torch.float16)
    assert history.steps == 2 and grads == [-1.0, -1.0]  # not one merged step of gradient -1.5
    assert (history.skipped_batches, history.micro_batches, history.samples) == (1, 4, 3)


def test_a_group_of_only_skipped_batches_moves_the_schedule_on_without_an_optimizer_step():
    grads, rates, history = train_scalar(8, grad_accum=2, steps_per_epoch=4, overflow={2, 3}, amp=torch.float16,
                                         schedule="linear")
    assert history.steps == 4 and grads == [-1.0, -1.0, -1.0]  # group 2 stepped nothing, yet counts as planned
    assert rates == [1.0, 0.5, 0.25]  # the linear decay over 4 steps went on past it (step 2's rate was 0.75)
    assert math.isnan(history.train_loss[1]) and history.skipped_batches == 2


@pytest.mark.parametrize("overflow", [set(range(8)), {0, 1, 2, 4, 6}])
def test_fp16_overflow_in_most_micro_batches_is_an_error_that_says_to_use_fp32(overflow):
    with pytest.raises(FloatingPointError, match=rf"{len(overflow)} of 8 micro-batches.*precision='fp32'.*lower lr"):
        train_scalar(8, grad_accum=1, steps_per_epoch=8, overflow=overflow, amp=torch.float16)


def test_without_fp16_a_non_finite_loss_is_an_error_at_once():
    with pytest.raises(FloatingPointError, match="lower the learning rate"):
        train_scalar(4, grad_accum=1, steps_per_epoch=4, overflow={2})


def test_steps_and_losses_of_full_groups_are_as_before():
    grads, _, history = train_scalar(6, grad_accum=3, steps_per_epoch=2)
    assert grads == [-1.0, -1.0] and history.train_loss == [-0.0, -1.0] and history.skipped_batches == 0
    assert np.isclose(history.samples, 6)


def test_a_fit_overflowing_from_the_start_stops_early_not_after_every_planned_batch():
    seen = []

    def counting_loss(i):
        seen.append(i)
        return torch.tensor(math.inf) + 0 * model.w.sum(), 1

    model = Scalar()
    optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
    with pytest.raises(FloatingPointError, match=f"{OVERFLOW_CHECK_BATCHES} of {OVERFLOW_CHECK_BATCHES} micro"):
        train_loop(model, optimizer, TrainPlan(1, 1000), lambda epoch: list(range(1000)), counting_loss,
                   device=CPU, amp=torch.float16, schedule="constant", progress=False)
    assert len(seen) == OVERFLOW_CHECK_BATCHES  # not the 1,000 planned forward passes


def test_a_few_early_overflows_do_not_stop_a_fit():
    # half of the first 32 micro-batches overflow (no more than half): the fit goes on and trains the rest
    grads, _, history = train_scalar(64, grad_accum=1, steps_per_epoch=64, overflow=set(range(0, 32, 2)),
                                     amp=torch.float16)
    assert history.skipped_batches == 16 and history.steps == 64 and len(grads) == 48


def test_a_fit_report_counts_the_overflows_of_both_trainings_and_keeps_the_best_holdout_score():
    chosen = History(holdout_smape=[(5, 40.0), (10, 35.5), (15, 37.0)], best_step=10, steps=15, samples=300,
                     seconds=2.0, stopped_early=True, skipped_batches=2)
    report = fit_history_report(chosen, History(steps=11, skipped_batches=1))
    assert report == {"steps": 15, "best_step": 10, "holdout_smape": 35.5, "stopped_early": True,
                      "refit_steps": 11, "samples_per_s": 150.0, "fp16_skipped_batches": 3,
                      "fp16_skipped_steps": 0}
    alone = fit_history_report(History(steps=4), None)  # no holdout, no refit: nothing was chosen
    assert alone["best_step"] is None and alone["holdout_smape"] is None and alone["refit_steps"] is None


@pytest.mark.parametrize("plan", [
    {"epochs": 0, "steps_per_epoch": 5}, {"epochs": 1, "steps_per_epoch": 0}, {"epochs": 1, "steps_per_epoch": 2.5},
    {"epochs": 1, "steps_per_epoch": 5, "evals_per_epoch": 0}, {"epochs": 1, "steps_per_epoch": 5, "patience": -1},
    {"epochs": 1, "steps_per_epoch": 5, "max_steps": 0}, {"epochs": float("nan"), "steps_per_epoch": 5},
], ids=["epochs0", "steps0", "steps_fraction", "evals0", "patience_negative", "max_steps0", "epochs_nan"])
def test_a_train_plan_built_directly_refuses_values_that_cannot_run(plan):
    with pytest.raises(ValueError, match="TrainPlan: "):
        TrainPlan(**plan)


@pytest.mark.parametrize(("total", "warmup", "schedule", "message"), [
    (10, 1.0, "linear", "warmup must be"), (10, -0.1, "linear", "warmup must be"), (10, 5, "linear", "warmup must be"),
    (0, 0.1, "linear", "total_steps"), (10, 0.1, "cosin", "schedule 'cosin'"),
])
def test_warmup_decay_called_directly_refuses_bad_values(total, warmup, schedule, message):
    optimizer = torch.optim.SGD(Scalar().parameters(), lr=0.1)
    with pytest.raises(ValueError, match=message):
        warmup_decay(optimizer, total, warmup, schedule)


def test_fp16_gradients_overflowing_in_most_steps_is_an_error_not_a_fit_that_never_moved():
    # a finite loss whose gradients are infinite: the GradScaler skips every optimizer step without a word
    with pytest.raises(FloatingPointError, match=r"gradients overflowed fp16 in 8 of 8 optimizer steps.*fp32"):
        train_scalar(8, grad_accum=1, steps_per_epoch=8, bad_grads=set(range(8)), amp=torch.float16)


def test_a_fit_whose_gradients_always_overflow_stops_after_the_check_not_at_the_end():
    with pytest.raises(FloatingPointError, match=f"{OVERFLOW_CHECK_BATCHES} of {OVERFLOW_CHECK_BATCHES} optimizer"):
        train_scalar(1000, grad_accum=1, steps_per_epoch=1000, bad_grads=set(range(1000)), amp=torch.float16)


def test_a_few_skipped_fp16_steps_are_counted_in_the_fit_report_and_the_fit_goes_on():
    grads, _, history = train_scalar(40, grad_accum=1, steps_per_epoch=40, bad_grads={0, 1, 2}, amp=torch.float16)
    assert history.skipped_steps == 3 and history.steps == 40 and len(grads) == 37 and history.skipped_batches == 0
    assert fit_history_report(history, None)["fp16_skipped_steps"] == 3


def test_a_diverged_net_scores_infinity_on_the_holdout_and_its_predictions_say_lower_the_lr():
    from amzkit.ml.torch_fit import holdout_smape, prices_from_log

    y = np.array([10.0, 20.0])
    assert holdout_smape(np.array([np.nan, 2.0]), y) == math.inf  # early stopping never keeps it
    assert holdout_smape(np.array([800.0, 2.0]), y) == math.inf  # expm1 overflows: it was an error at once
    assert holdout_smape(np.log1p(y), y) == pytest.approx(0.0)
    with pytest.raises(FloatingPointError, match="1 of 2 predictions are NaN or above 1e12.*lower the learning"):
        prices_from_log(np.array([800.0, 2.0]), "mlp")
    np.testing.assert_allclose(prices_from_log(np.log1p(y), "mlp"), y)


def test_the_gradscalers_settling_skips_before_a_first_real_step_do_not_stop_a_short_fit():
    # a short fp16 fit (a refit of few steps, the memory benchmark's 3) whose scale settles in its first steps
    grads, _, history = train_scalar(8, grad_accum=1, steps_per_epoch=8, bad_grads={0, 1, 2, 3, 4}, amp=torch.float16)
    assert history.skipped_steps == 5 and history.leading_skips == 5 and len(grads) == 3
    with pytest.raises(FloatingPointError, match="5 of 8 optimizer steps"):  # skips after real steps still count
        train_scalar(8, grad_accum=1, steps_per_epoch=8, bad_grads={1, 2, 3, 4, 5}, amp=torch.float16)


@pytest.mark.parametrize("weighted", [False, True])
def test_an_accumulated_step_has_the_gradient_of_one_batch_of_all_its_rows(weighted):
    """Micro-batches of 7, 7 and 2 rows (the last one of pseudo-labelled rows at weight 0.2, when weighted): each
    row counts as in one batch of the 16, not each micro-batch's mean as much as another's."""
    rng = np.random.default_rng(0)
    x, y = torch.tensor(rng.normal(size=(16, 3)), dtype=torch.float32), torch.tensor(rng.normal(size=16))
    weight = torch.ones(16) if not weighted else torch.tensor([1.0] * 14 + [0.2] * 2)

    def first_step_gradient(groups: list[np.ndarray], grad_accum: int) -> np.ndarray:
        model = torch.nn.Linear(3, 1, bias=False)
        torch.nn.init.constant_(model.weight, 0.5)
        optimizer = torch.optim.SGD(model.parameters(), lr=1.0)
        seen = []
        optimizer.register_step_pre_hook(lambda opt, args, kwargs: seen.append(model.weight.grad.clone().numpy()))

        def loss_of(rows):
            pred = model(x[rows]).squeeze(1)
            return weighted_loss("mse", pred, y[rows], weight[rows]), len(rows), weight[rows].sum().item()

        train_loop(model, optimizer, TrainPlan(1, 1), lambda epoch: groups, loss_of, device=CPU, amp=None,
                   schedule="constant", grad_accum=grad_accum, clip_norm=1e9, progress=False)
        return seen[0]

    whole = first_step_gradient([np.arange(16)], grad_accum=1)
    accumulated = first_step_gradient([np.arange(7), np.arange(7, 14), np.arange(14, 16)], grad_accum=3)
    np.testing.assert_allclose(accumulated, whole, rtol=1e-5, atol=1e-7)


@pytest.mark.filterwarnings("ignore:`torch.cuda.amp.GradScaler:FutureWarning")  # deprecated only where both exist
def test_the_loop_runs_on_a_torch_without_torch_amp_grad_scaler(monkeypatch):
    """torch 2.1-2.2 (pyproject allows them; Intel Macs stop at 2.2) have only torch.cuda.amp.GradScaler: every
    mlp / finetune fit failed there with an AttributeError, on the CPU too."""
    monkeypatch.delattr(torch.amp, "GradScaler")
    grads, _, history = train_scalar(4, grad_accum=2, steps_per_epoch=2)
    assert grads == [-1.0, -1.0] and history.steps == 2
