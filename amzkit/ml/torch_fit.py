"""What the torch learners (`mlp`, `finetune`) share: device and precision, losses on log1p prices, warmup +
decay, seeding, the inner holdout for early stopping, and the one training loop.

The loop trains on the rows `fit` was given minus an inner holdout (`valid_fraction` of the real training rows,
whole products at a time, as the outer group folds), scores the holdout's SMAPE `evals_per_epoch` times an
epoch, keeps the best weights and stops after `patience` evaluations without improvement. The fold that CV
scores is never among those rows: nothing is chosen on it. Loaded only by those learners (imports torch).
"""

from __future__ import annotations

import contextlib
import math
import numbers
import time
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amzkit.core.gpu import pick_device
from amzkit.core.metric import smape
from amzkit.core.progress import tqdm
from amzkit.core.threads import allowed_cores, busy_elsewhere, check_num_threads
from amzkit.ml.base import floor_prediction
from amzkit.ml.torch_settings import SCHEDULES, TRAINING_BOUNDS, Bounds


def _huber(pred, target, delta):
    return F.huber_loss(pred, target, reduction="none", delta=delta)


def _smooth_l1(pred, target, delta):
    return F.smooth_l1_loss(pred, target, reduction="none", beta=delta)


def _smape_surrogate(pred, target, delta):
    # SMAPE of prices p = e^a, y = e^b is |p - y| / ((p + y) / 2) = 2 tanh(|a - b| / 2): in log space it is a
    # bounded, symmetric loss; sqrt(d^2 + eps) keeps its gradient finite at d = 0.
    return 2 * torch.tanh(torch.sqrt((pred - target) ** 2 + 1e-6) / 2)


# Loss name (torch_settings.LOSS_NAMES) -> per-row loss of predicted vs true log1p(price); `delta` is Huber's /
# smooth L1's width (log units).
LOSSES: dict[str, Callable] = {
    "huber": _huber,
    "smooth_l1": _smooth_l1,
    "l1": lambda pred, target, delta: (pred - target).abs(),
    "mse": lambda pred, target, delta: (pred - target) ** 2,
    "smape": _smape_surrogate,
}

PRECISION_NAMES: dict[torch.dtype | None, str] = {None: "fp32", torch.float16: "fp16", torch.bfloat16: "bf16"}


def described_without_progress(described: dict) -> dict:
    """A learner's description without its `progress` switch: showing bars or not changes no result, so a run
    resumed with the other setting still matches its kept folds."""
    return {**described, "params": {k: v for k, v in described["params"].items() if k != "progress"}}


# what changes no result (activation checkpointing recomputes the same activations, dropout's RNG kept), so
# a run resumed with another value keeps its finished folds; device and precision enter as resolved_runtime
RESULT_FREE_PARAMS = ("progress", "num_threads", "device", "precision", "gradient_checkpointing")


def torch_resume_key(learner) -> dict:
    """A torch learner's resume key: its description less what changes no result (progress bars, the thread count:
    a Kaggle rerun with other threads keeps its hours of folds; gradient checkpointing, the out-of-memory advice)
    and with `device`/`precision` as they resolved ('auto' and 'cuda' on one GPU are the same run)."""
    described = learner.describe()
    params = {k: v for k, v in described["params"].items() if k not in RESULT_FREE_PARAMS}
    return {**described, "params": params, **resolved_runtime(learner)}


def resolved_runtime(learner) -> dict[str, dict[str, str]]:
    """For a prepared learner's resume key: the device type and precision its fits really run in ('auto'
    resolved), so a run killed on a T4 (fp16) and resumed on CPU (fp32) or a bf16 GPU starts over instead of
    mixing folds of both; {} before prepare. The thread count num_threads=0 resolves to stays out, as for
    every learner."""
    if not hasattr(learner, "device_"):
        return {}
    amp = getattr(learner, "amp_", None)
    return {"runtime": {"device": learner.device_.type, "precision": PRECISION_NAMES[amp]}}


def cpu_threads(device: torch.device, num_threads: int, name: str) -> int | None:
    """The threads learner `name`'s fits use on CPU (None on GPU): `num_threads`, or for 0 the cores this process
    may use, never the load: torch's CPU sums split by thread, so a count taken from the load changes the results
    from one run (or fold) to the next. Says so when other processes keep some of those cores busy."""
    if device.type != "cpu":
        return None
    if check_num_threads(num_threads):
        return num_threads
    threads = allowed_cores()
    if (free := max(1, round(threads - busy_elsewhere()))) < threads:
        print(f"{name}: fits on {threads} CPU threads, the cores this process may use, while other processes keep "
              f"{threads - free} of them busy: torch's threads then wait spinning and can run several times slower; "
              f"num_threads {free} runs on the free ones (a count of its own, not the load's, so the numbers stay "
              "the same run to run)")
    return threads


def weighted_loss(name: str, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                  delta: float = 1.0) -> torch.Tensor:
    """Mean loss `name` over a batch, each row weighted (pseudo-labelled rows carry their weight)."""
    per_row = LOSSES[name](pred.float(), target.float(), delta)
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)


def resolve_device(device: str) -> torch.device:
    """'auto': CUDA when torch can run on the GPU, else CPU; 'cuda' without a usable GPU is an error that says so."""
    return pick_device(device)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype: None (fp32) on CPU or with 'fp32'; on GPU 'auto' is bf16 from compute capability 8
    (Ampere) up and fp16 below (T4 is 7.5: it reports bf16 support but has no bf16 hardware)."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "fp16":
        return torch.float16
    major, minor = torch.cuda.get_device_capability(device)
    if precision == "bf16":
        if major < 8:
            raise ValueError(f"precision='bf16' on a GPU of compute capability {major}.{minor} "
                             f"({torch.cuda.get_device_name(device)}): it has no bf16 hardware, so torch emulates it "
                             "many times slower; use precision='auto' (fp16 there) or 'fp32'")
        return torch.bfloat16
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device, amp: torch.dtype | None):
    """Autocast to `amp` on `device`, or nothing (fp32) when `amp` is None."""
    return contextlib.nullcontext() if amp is None else torch.autocast(device.type, dtype=amp)


def grad_scaler(device: torch.device, enabled: bool):
    """A GradScaler for `device` (a no-op unless `enabled`): torch.amp.GradScaler from torch 2.3, the CUDA one
    before (torch 2.1-2.2, which pyproject allows: the last torch for Intel Macs is 2.2)."""
    if hasattr(torch.amp, "GradScaler"):
        return torch.amp.GradScaler(device.type, enabled=enabled)
    return torch.cuda.amp.GradScaler(enabled=enabled)


def warmup_decay(optimizer, total_steps: int, warmup: float, schedule: str):
    """Linear warmup over `warmup` of the steps (a share), then `schedule`'s decay to the last step."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r} is not one of {sorted(SCHEDULES)}")
    if not TRAINING_BOUNDS["warmup"].admits(warmup):
        raise ValueError(f"warmup must be {TRAINING_BOUNDS['warmup']}, got {warmup!r}")
    if isinstance(total_steps, bool) or not isinstance(total_steps, numbers.Integral) or total_steps < 1:
        raise ValueError(f"total_steps must be an integer >= 1, got {total_steps!r}")
    warm = int(round(warmup * total_steps))
    decay = SCHEDULES[schedule]

    def multiplier(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return max(0.0, decay(min(1.0, (step - warm) / max(1, total_steps - warm))))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, multiplier)


def seed_torch(seed: int) -> None:
    """Seed torch's generators (weights, dropout): a fit with the same rows and seed repeats itself on CPU."""
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


NORM_LAYERS = (nn.LayerNorm, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)


def is_norm_layer(module: nn.Module) -> bool:
    """torch's LayerNorm / BatchNorm* / GroupNorm, or any class named *Norm* (DebertaV2's LayerNorm, RMSNorm)."""
    return isinstance(module, NORM_LAYERS) or "Norm" in type(module).__name__


def no_decay_parameters(model: nn.Module) -> set[int]:
    """ids of the parameters trained without weight decay: biases and every parameter of a normalisation layer
    (chosen by module type, not by name: an MLP's LayerNorm is `body.1`)."""
    chosen = set()
    for module in model.modules():
        norm = is_norm_layer(module)
        chosen |= {id(param) for name, param in module.named_parameters(recurse=False) if norm or name.endswith("bias")}
    return chosen


@dataclass
class TrainPlan:
    """How one training run goes: epochs of optimizer steps, evaluations, patience, an optional step cap."""

    epochs: float
    steps_per_epoch: int
    evals_per_epoch: int = 1
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    max_steps: int | None = None  # refit: stop here (the steps early stopping chose)

    def __post_init__(self) -> None:
        allowed = {"epochs": Bounds(0, low_open=True), "steps_per_epoch": Bounds(1, integer=True),
                   "evals_per_epoch": Bounds(1, integer=True), "patience": Bounds(0, integer=True),
                   "max_steps": Bounds(1, integer=True, optional=True)}
        for name, bounds in allowed.items():
            if not bounds.admits(getattr(self, name)):
                raise ValueError(f"TrainPlan: {name} must be {bounds}, got {getattr(self, name)!r}")

    @property
    def total_steps(self) -> int:
        return max(1, math.ceil(self.epochs * self.steps_per_epoch))

    def eval_steps(self) -> set[int]:
        """Optimizer steps (1-based) after which the holdout is scored."""
        per_epoch = [round(k * self.steps_per_epoch / self.evals_per_epoch) for k in range(1, self.evals_per_epoch + 1)]
        n_epochs = math.ceil(self.epochs)
        steps = {epoch * self.steps_per_epoch + s for epoch in range(n_epochs) for s in per_epoch}
        return {s for s in steps if 0 < s <= self.total_steps} | {self.total_steps}


@dataclass
class History:
    """What one training run did: loss per optimizer step, holdout SMAPE per evaluation, the chosen step."""

    train_loss: list[float] = field(default_factory=list)  # NaN for a step whose every micro-batch was skipped
    holdout_smape: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    stopped_early: bool = False
    micro_batches: int = 0
    skipped_batches: int = 0  # fp16 forward overflows (non-finite loss): no backward
    skipped_steps: int = 0  # optimizer steps the fp16 GradScaler skipped: the gradients were not finite
    leading_skips: int = 0  # of those, the ones before its first real step (its scale settling from 2**16)
    optimizer_steps: int = 0  # the steps that moved the weights

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


OVERFLOW_CHECK_BATCHES = 32  # micro-batches seen before a mostly-overflowing fp16 fit is stopped mid-way


def check_overflow(history: History, desc: str, finished: bool = False, steps: int = 0) -> None:
    """Stop a fit whose fp16 loss overflowed in more than half its micro-batches, or whose fp16 gradients
    overflowed in more than half of its `steps` optimizer steps so far (the GradScaler skips those steps: the
    weights do not move; the skips while its scale settles, before a first real step, do not count once there
    is one): at the end, and as soon as OVERFLOW_CHECK_BATCHES micro-batches or steps show it (not
    after a whole fold of passes that train nothing)."""
    fix = "use precision='fp32' (or 'bf16' on a GPU from Ampere up) or a lower lr"
    if history.skipped_batches * 2 > history.micro_batches and (
            finished or history.micro_batches >= OVERFLOW_CHECK_BATCHES):
        raise FloatingPointError(f"{desc}: the loss overflowed fp16 in {history.skipped_batches} of "
                                 f"{history.micro_batches} micro-batches (skipped, no training on them); {fix}")
    skipped = history.skipped_steps - (history.leading_skips if history.optimizer_steps else 0)
    if skipped * 2 > steps and (finished or steps >= OVERFLOW_CHECK_BATCHES):
        raise FloatingPointError(f"{desc}: the gradients overflowed fp16 in {history.skipped_steps} of {steps} "
                                 f"optimizer steps (the GradScaler skipped them: the weights did not move); {fix}")


def train_loop(model: torch.nn.Module, optimizer, plan: TrainPlan, batches: Callable[[int], Iterable],
               loss_of: Callable[[object], tuple], *, device: torch.device,
               amp: torch.dtype | None, schedule: str = "linear", warmup: float = 0.0, grad_accum: int = 1,
               clip_norm: float = 1.0, evaluate: Callable[[], float] | None = None, desc: str = "train",
               progress: bool = True) -> History:
    """Train `model` by `plan`; returns its History and leaves the best-scoring weights in `model`.

    `batches(epoch)` gives that epoch's micro-batches (`grad_accum` of them make one optimizer step, the epoch's
    last group maybe fewer); `loss_of(batch)` returns (mean loss, rows) or (mean loss, rows, the batch's total row
    weight). A step's gradient is that of the weighted mean over the rows of its group's micro-batches, as one
    batch of them all would give (a short micro-batch, or one mostly of pseudo-labelled rows, counts by its
    weight, not as much as a full one).
    `evaluate()` (the inner holdout's SMAPE, lower is better) runs before the first step and at the plan's
    evaluation steps; without it the last weights are kept. fp16 uses a GradScaler; a micro-batch whose fp16
    loss is not finite is skipped (counted in History), and more than half of them skipped is an error.
    """
    scheduler = warmup_decay(optimizer, plan.total_steps, warmup, schedule)
    scaler = grad_scaler(device, amp == torch.float16)
    history, best, best_state, stale = History(), math.inf, None, 0
    eval_at, limit = plan.eval_steps(), min(plan.total_steps, plan.max_steps or plan.total_steps)
    started = time.perf_counter()
    bar = tqdm(total=None, desc=desc, unit="sample", disable=not progress, leave=False)
    if evaluate is not None:  # the starting point (pretrained weights, a head at the median) is a candidate too
        best = evaluate()
        history.holdout_smape.append((0, best))
        best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
    model.train()
    optimizer.zero_grad(set_to_none=True)
    step = 0
    for epoch in range(math.ceil(plan.epochs)):
        epoch_batches = list(batches(epoch))
        for first in range(0, len(epoch_batches), grad_accum):
            group = epoch_batches[first:first + grad_accum]
            losses, weights, common = [], [], None
            for batch in group:
                with autocast(device, amp):
                    loss, rows, *weight = loss_of(batch)
                weight = float(weight[0]) if weight else float(rows)
                if common is None:  # one divisor for the group's losses: gradients of a mean's size (fp16's scaler)
                    common = max(weight, 1e-12) * len(group)
                history.micro_batches += 1
                if not torch.isfinite(loss):
                    if amp == torch.float16:  # the forward overflowed fp16: no gradient to scale, skip the batch
                        history.skipped_batches += 1
                        continue
                    raise FloatingPointError(f"{desc}: the training loss became {loss.item()} at step {step}; lower "
                                             "the learning rate (lr) or use loss='huber'")
                scaler.scale(loss * (weight / common)).backward()
                losses.append(loss.item())
                weights.append(weight)
                history.samples += rows
                bar.update(rows)
            if losses:  # a group of skipped batches only moves the schedule on, as planned
                scaler.unscale_(optimizer)
                factor = common / max(sum(weights), 1e-12)  # the weighted mean over the batches that count
                if factor != 1.0:
                    for param in model.parameters():
                        if param.grad is not None:
                            param.grad.mul_(factor)
                torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
                scale = scaler.get_scale() if scaler.is_enabled() else None
                scaler.step(optimizer)
                scaler.update()
                if scale is not None and scaler.get_scale() < scale:  # inf/NaN gradients: no step, scale halved
                    history.skipped_steps += 1
                    history.leading_skips += history.optimizer_steps == 0
                else:
                    history.optimizer_steps += 1
            optimizer.zero_grad(set_to_none=True)
            with warnings.catch_warnings():  # a skipped step (fp16 overflow) still moves the schedule on, as planned
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)` before")
                scheduler.step()
            step += 1
            history.train_loss.append(float(np.average(losses, weights=weights)) if sum(weights) > 0
                                      else float(np.mean(losses)) if losses else math.nan)
            check_overflow(history, desc, steps=step)
            bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", refresh=False)
            if evaluate is not None and step in eval_at:
                score = evaluate()
                model.train()
                history.holdout_smape.append((step, score))
                bar.set_postfix(loss=f"{history.train_loss[-1]:.4f}", holdout_smape=f"{score:.2f}", refresh=False)
                if score < best:
                    best, stale, history.best_step = score, 0, step
                    best_state = {k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()}
                else:
                    stale += 1
                if plan.patience and stale >= plan.patience:
                    history.stopped_early = True
                    break
            if step >= limit:
                break
        if history.stopped_early or step >= limit:
            break
    bar.close()
    check_overflow(history, desc, finished=True, steps=step)
    history.steps, history.seconds = step, time.perf_counter() - started
    if evaluate is None or best_state is None:
        history.best_step = step
    else:
        model.load_state_dict(best_state)
    model.eval()
    return history


def cpu_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """`model`'s state dict on the CPU (a fold file saved from cuda:1 needs no map_location to load elsewhere)."""
    return {key: value.detach().cpu() for key, value in model.state_dict().items()}


LOG_PRICE_LIMIT = math.log1p(1e12)  # a log1p prediction beyond this is a diverged net, not a price


def holdout_smape(pred_log: np.ndarray, y: np.ndarray) -> float:
    """SMAPE of log1p-scale predictions against prices `y` (predictions floored as every learner's are); a net
    whose predictions diverged (NaN, or past LOG_PRICE_LIMIT) scores infinity, so early stopping never keeps it."""
    pred_log = np.asarray(pred_log, dtype=np.float64)
    if not (np.isfinite(pred_log).all() and (pred_log <= LOG_PRICE_LIMIT).all()):
        return math.inf
    return smape(y, floor_prediction(np.expm1(pred_log)))


def prices_from_log(pred_log: np.ndarray, learner: str) -> np.ndarray:
    """Prices from a net's log1p predictions; a diverged net (NaN, or past LOG_PRICE_LIMIT) is an error that says
    what to change."""
    pred_log = np.asarray(pred_log, dtype=np.float64)
    bad = ~(np.isfinite(pred_log) & (pred_log <= LOG_PRICE_LIMIT))
    if bad.any():
        raise FloatingPointError(f"learner {learner!r}: {int(bad.sum())} of {len(pred_log)} predictions are NaN or "
                                 "above 1e12: the training diverged; lower the learning rate (lr), or use "
                                 "loss='huber'")
    return floor_prediction(np.expm1(pred_log))


def log_target_stats(y: Sequence[float]) -> tuple[float, float]:
    """(median, spread) of log1p(y): the regression head predicts median + spread * output."""
    y_log = np.log1p(np.asarray(y, dtype=np.float64))
    spread = float(np.std(y_log))
    return float(np.median(y_log)), spread if spread > 1e-6 else 1.0


def fit_history_report(history: History, refit_history: History | None) -> dict:
    """What one fold's training chose, for the run's metrics: the steps run, the step early stopping kept and its
    holdout SMAPE, the refit's steps, samples/s and the fp16-overflow micro-batches and steps skipped (both
    trainings)."""
    best = min((score for _, score in history.holdout_smape), default=None)
    return {"steps": history.steps, "best_step": history.best_step if history.holdout_smape else None,
            "holdout_smape": None if best is None else round(float(best), 4), "stopped_early": history.stopped_early,
            "refit_steps": refit_history.steps if refit_history is not None else None,
            "samples_per_s": round(history.samples_per_s, 1),
            "fp16_skipped_batches": sum(run.skipped_batches for run in (history, refit_history) if run is not None),
            "fp16_skipped_steps": sum(run.skipped_steps for run in (history, refit_history) if run is not None)}


def refit_steps(history: History, holdout, steps_per_epoch_kept: int, steps_per_epoch_all: int) -> int | None:
    """The optimiser steps of the refit on every training row: as many epochs as the holdout chose
    (`history.best_step` at `steps_per_epoch_kept` steps per epoch); None when there was no holdout or no choice."""
    if holdout is None or history.best_step <= 0:
        return None
    return max(1, round(history.best_step / steps_per_epoch_kept * steps_per_epoch_all))
