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
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from amzkit.core.metric import smape
from amzkit.ml.base import floor_prediction
from amzkit.ml.folds import inner_folds


def _huber(pred, target, delta):
    return F.huber_loss(pred, target, reduction="none", delta=delta)


def _smooth_l1(pred, target, delta):
    return F.smooth_l1_loss(pred, target, reduction="none", beta=delta)


def _smape_surrogate(pred, target, delta):
    # SMAPE of prices p = e^a, y = e^b is |p - y| / ((p + y) / 2) = 2 tanh(|a - b| / 2): in log space it is a
    # bounded, symmetric loss; sqrt(d^2 + eps) keeps its gradient finite at d = 0.
    return 2 * torch.tanh(torch.sqrt((pred - target) ** 2 + 1e-6) / 2)


# Loss name -> per-row loss of predicted vs true log1p(price); `delta` is Huber's / smooth L1's width (log units).
LOSSES: dict[str, Callable] = {
    "huber": _huber,
    "smooth_l1": _smooth_l1,
    "l1": lambda pred, target, delta: (pred - target).abs(),
    "mse": lambda pred, target, delta: (pred - target) ** 2,
    "smape": _smape_surrogate,
}

# Schedule name -> LR multiplier after warmup, from the share of the decay done (0 -> 1).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": lambda done: 1.0 - done,
    "cosine": lambda done: 0.5 * (1.0 + math.cos(math.pi * done)),
    "constant": lambda done: 1.0,
}

PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def check_choice(learner: str, param: str, value, choices) -> None:
    """A clear error for a parameter outside its choices."""
    if value not in choices:
        raise ValueError(f"learner {learner!r}: {param}={value!r} is not one of {sorted(choices)}")


def described_without_progress(described: dict) -> dict:
    """A learner's description without its `progress` switch: showing bars or not changes no result, so a run
    resumed with the other setting still matches its kept folds."""
    return {**described, "params": {k: v for k, v in described["params"].items() if k != "progress"}}


def weighted_loss(name: str, pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None,
                  delta: float = 1.0) -> torch.Tensor:
    """Mean loss `name` over a batch, each row weighted (pseudo-labelled rows carry their weight)."""
    per_row = LOSSES[name](pred.float(), target.float(), delta)
    if weight is None:
        return per_row.mean()
    return (per_row * weight).sum() / weight.sum().clamp(min=1e-12)


def resolve_device(device: str) -> torch.device:
    """'auto': CUDA when available, else CPU; 'cuda' without a GPU is an error that says so."""
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no GPU here: use device='auto' or 'cpu' (or turn the "
                           "accelerator on in the Kaggle notebook settings)")
    return torch.device(device)


def autocast_dtype(device: torch.device, precision: str = "auto") -> torch.dtype | None:
    """The autocast dtype: None (fp32) on CPU or with 'fp32'; on GPU 'auto' is bf16 from compute capability 8
    (Ampere) up and fp16 below (T4 is 7.5: it reports bf16 support but has no bf16 hardware)."""
    if precision == "fp32" or device.type != "cuda":
        return None
    if precision == "fp16":
        return torch.float16
    if precision == "bf16":
        return torch.bfloat16
    major, _ = torch.cuda.get_device_capability(device)
    return torch.bfloat16 if major >= 8 else torch.float16


def autocast(device: torch.device, amp: torch.dtype | None):
    """Autocast to `amp` on `device`, or nothing (fp32) when `amp` is None."""
    return contextlib.nullcontext() if amp is None else torch.autocast(device.type, dtype=amp)


def warmup_decay(optimizer, total_steps: int, warmup: float, schedule: str):
    """Linear warmup over `warmup` of the steps (a share), then `schedule`'s decay to the last step."""
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


def holdout_mask(rows: np.ndarray, n_train: int, valid_fraction: float, seed: int,
                 groups: np.ndarray | None) -> np.ndarray:
    """The early-stopping rows among `rows`: `valid_fraction` of the real (< n_train) rows, whole products at a
    time (seeded); none when valid_fraction is 0 or there are fewer than 20 real rows."""
    watch = np.zeros(len(rows), dtype=bool)
    real = np.flatnonzero(np.asarray(rows) < n_train)
    if valid_fraction <= 0 or len(real) < 20:
        return watch
    inner = inner_folds(np.asarray(rows)[real], max(2, round(1 / valid_fraction)), seed, groups)
    watch[real[inner == 0]] = True
    return watch


def no_decay(name: str) -> bool:
    """Parameters without weight decay: biases and normalisation weights."""
    return name.endswith("bias") or "norm" in name.lower()


@dataclass
class TrainPlan:
    """How one training run goes: epochs of optimizer steps, evaluations, patience, an optional step cap."""

    epochs: float
    steps_per_epoch: int
    evals_per_epoch: int = 1
    patience: int = 0  # evaluations without improvement before stopping; 0: never stop early
    max_steps: int | None = None  # refit: stop here (the steps early stopping chose)

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

    train_loss: list[float] = field(default_factory=list)
    holdout_smape: list[tuple[int, float]] = field(default_factory=list)
    best_step: int = 0
    steps: int = 0
    samples: int = 0
    seconds: float = 0.0
    stopped_early: bool = False

    @property
    def samples_per_s(self) -> float:
        return self.samples / max(self.seconds, 1e-9)


def train_loop(model: torch.nn.Module, optimizer, plan: TrainPlan, batches: Callable[[int], Iterable],
               loss_of: Callable[[object], tuple[torch.Tensor, int]], *, device: torch.device,
               amp: torch.dtype | None, schedule: str = "linear", warmup: float = 0.0, grad_accum: int = 1,
               clip_norm: float = 1.0, evaluate: Callable[[], float] | None = None, desc: str = "train",
               progress: bool = True) -> History:
    """Train `model` by `plan`; returns its History and leaves the best-scoring weights in `model`.

    `batches(epoch)` gives that epoch's micro-batches (`grad_accum` of them make one optimizer step);
    `loss_of(batch)` returns (mean loss, rows). `evaluate()` (the inner holdout's SMAPE, lower is better) runs
    before the first step and at the plan's evaluation steps; without it the last weights are kept. fp16 uses
    a GradScaler.
    """
    scheduler = warmup_decay(optimizer, plan.total_steps, warmup, schedule)
    scaler = torch.amp.GradScaler(device.type, enabled=amp == torch.float16)
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
    step, running = 0, []
    for epoch in range(math.ceil(plan.epochs)):
        epoch_batches = list(batches(epoch))
        for i, batch in enumerate(epoch_batches):
            with autocast(device, amp):
                loss, rows = loss_of(batch)
            if not torch.isfinite(loss):
                if amp == torch.float16:
                    continue  # fp16 overflow: skip the batch (the scaler lowers its scale on inf gradients)
                raise FloatingPointError(f"{desc}: the training loss became {loss.item()} at step {step}; lower the "
                                         "learning rate (lr) or use loss='huber'")
            scaler.scale(loss / grad_accum).backward()
            running.append(loss.item())
            history.samples += rows
            bar.update(rows)
            if (i + 1) % grad_accum and i + 1 < len(epoch_batches):
                continue
            scaler.unscale_(optimizer)
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip_norm)
            scaler.step(optimizer)
            scaler.update()
            optimizer.zero_grad(set_to_none=True)
            scheduler.step()
            step += 1
            history.train_loss.append(float(np.mean(running)))
            running = []
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
    history.steps, history.seconds = step, time.perf_counter() - started
    if evaluate is None or best_state is None:
        history.best_step = step
    else:
        model.load_state_dict(best_state)
    model.eval()
    return history


def holdout_smape(pred_log: np.ndarray, y: np.ndarray) -> float:
    """SMAPE of log1p-scale predictions against prices `y` (predictions floored as every learner's are)."""
    return smape(y, floor_prediction(np.expm1(pred_log)))


def log_target_stats(y: Sequence[float]) -> tuple[float, float]:
    """(median, spread) of log1p(y): the regression head predicts median + spread * output."""
    y_log = np.log1p(np.asarray(y, dtype=np.float64))
    spread = float(np.std(y_log))
    return float(np.median(y_log)), spread if spread > 1e-6 else 1.0


def refit_steps(history: History, holdout, steps_per_epoch_kept: int, steps_per_epoch_all: int) -> int | None:
    """The optimiser steps of the refit on every training row: as many epochs as the holdout chose
    (`history.best_step` at `steps_per_epoch_kept` steps per epoch); None when there was no holdout or no choice."""
    if holdout is None or history.best_step <= 0:
        return None
    return max(1, round(history.best_step / steps_per_epoch_kept * steps_per_epoch_all))
