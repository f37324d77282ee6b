"""What the torch learners (`mlp`, `sparse_mlp`, `finetune`) accept as settings, without importing torch: the range
of each number (Bounds tables), the choices (losses, schedules, paddings, devices, precisions, ...) and the encoders
`finetune` knows.

The learners check their settings with it first thing in `prepare` (check_settings), and kaggle build checks a 03
kernel's learner_params with the same rules (ml.learners.LearnerEntry.settings) on a machine that need not have
torch: a typo refused there, not on Kaggle once 01 and 02 had run. The losses' and paddings' code lives beside
torch (ml.torch_fit.LOSSES, ml.token_batches.PADDINGS), under the names listed here.
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from amzkit.embed.registry import LOCAL_DIR
from amzkit.ml.base import check_bag_settings
from amzkit.ml.folds import MAX_VALID_FRACTION

# The losses of predicted vs true log1p(price) (ml.torch_fit.LOSSES holds their code).
LOSS_NAMES = ("huber", "smooth_l1", "l1", "mse", "smape")
# How the batches of a finetune epoch are padded (ml.token_batches.PADDINGS holds their code).
PADDING_NAMES = ("bucket", "dynamic", "max_length")
# Schedule name -> LR multiplier after warmup, from the share of the decay done (0 -> 1).
SCHEDULES: dict[str, Callable[[float], float]] = {
    "linear": lambda done: 1.0 - done,
    "cosine": lambda done: 0.5 * (1.0 + math.cos(math.pi * done)),
    "constant": lambda done: 1.0,
}
PRECISIONS = ("auto", "fp32", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")


def check_choice(learner: str, param: str, value, choices) -> None:
    """A clear error for a parameter outside its choices (with the closest one for a misspelt name)."""
    if not isinstance(value, str) or value not in choices:
        close = difflib.get_close_matches(value, [str(c) for c in choices], n=1) if isinstance(value, str) else []
        raise ValueError(f"learner {learner!r}: {param}={value!r} is not one of {sorted(choices)}"
                         + (f" (did you mean {close[0]!r}?)" if close else ""))


@dataclass(frozen=True)
class Bounds:
    """The values a numeric parameter may take: a number (or an integer) from `low` to `high`, either end open
    or absent; None too when `optional`. `note` says what the number means."""

    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    integer: bool = False
    optional: bool = False
    note: str = ""

    def admits(self, value) -> bool:
        if value is None:
            return self.optional
        kind = numbers.Integral if self.integer else numbers.Real
        if isinstance(value, bool) or not isinstance(value, kind):
            return False
        above = self.low is None or (value > self.low if self.low_open else value >= self.low)
        below = self.high is None or (value < self.high if self.high_open else value <= self.high)
        return bool(above and below)

    def __str__(self) -> str:
        kind = "an integer" if self.integer else "a number"
        if self.low is not None and self.high is not None:
            span = f"in {'(' if self.low_open else '['}{self.low:g}, {self.high:g}{')' if self.high_open else ']'}"
        elif self.low is not None:
            span = f"{'>' if self.low_open else '>='} {self.low:g}"
        else:
            span = f"{'<' if self.high_open else '<='} {self.high:g}"
        return f"{kind} {span}" + (" or None" if self.optional else "") + (f" ({self.note})" if self.note else "")


def check_numbers(learner: str, values: Mapping[str, object], allowed: Mapping[str, Bounds]) -> None:
    """A clear error naming the learner, the parameter and its allowed range for the first value out of it (a
    parameter absent from `values` keeps its default)."""
    for param, bounds in allowed.items():
        if param in values and not bounds.admits(values[param]):
            raise ValueError(f"learner {learner!r}: {param} must be {bounds}, got {values[param]!r}")


def check_flags(learner: str, values: Mapping[str, object], names: Sequence[str]) -> None:
    """Switches must be true or false: a JSON "false" in quotes is text, and text is truthy (it turned refit on)."""
    for name in names:
        if name in values and not isinstance(values[name], bool | np.bool_):
            raise ValueError(f"learner {learner!r}: {name} must be true or false (JSON, without quotes), got "
                             f"{values[name]!r}")


# Parameters both torch learners share, with what each may be (a learner adds its own).
TRAINING_BOUNDS: dict[str, Bounds] = {
    "batch_size": Bounds(1, integer=True),
    "weight_decay": Bounds(0),
    "warmup": Bounds(0, 1, high_open=True, note="a share of the training steps, not a step count"),
    "huber_delta": Bounds(0, low_open=True),
    "valid_fraction": Bounds(0, MAX_VALID_FRACTION, note="0: no holdout; the holdout is 1/round(1/valid_fraction) "
                                                          "of the training rows: 0.1 -> 1/10, 0.3 -> 1/3, 0.4 -> 1/2"),
    "patience": Bounds(0, integer=True, note="evaluations without improvement; 0: never stop early"),
    "num_threads": Bounds(0, integer=True, note="0: the cores the process may use (CPU)"),
    "model_seed": Bounds(0, integer=True, note="added to the run's seed for the weights, dropout and batch order, "
                                               "not the folds: runs that differ in it are seed bags for 04; an "
                                               "mlp with bags > 1 trains nets seed + model_seed .. + bags - 1, so "
                                               "its runs share nets unless model_seed moves by bags or more"),
}
DROPOUT_BOUNDS = Bounds(0, 1, high_open=True)

# --- mlp

CATEGORICAL_MODES = ("embedding", "onehot")
MLP_BOUNDS: dict[str, Bounds] = {
    **TRAINING_BOUNDS,
    "epochs": Bounds(1, integer=True),
    "lr": Bounds(0, low_open=True),
    "dropout": DROPOUT_BOUNDS,
    "tfidf_dim": Bounds(1, integer=True),
}


def check_mlp_settings(params: Mapping[str, object]) -> None:
    """What `mlp` refuses of its parameters `params` (those absent keep their defaults) before reading any data."""
    for param, choices in (("loss", LOSS_NAMES), ("schedule", SCHEDULES), ("categorical", CATEGORICAL_MODES),
                           ("device", DEVICES)):
        if param in params:
            check_choice("mlp", param, params[param], choices)
    check_numbers("mlp", params, MLP_BOUNDS)
    check_flags("mlp", params, ("refit", "progress"))
    check_bags("mlp", params)
    if "hidden" in params:
        check_widths("mlp", params["hidden"])


# --- sparse_mlp

# The sparse text views sparse_mlp's first layer can read: name -> (the text: the item name or the whole row text,
# the TfidfVectorizer settings, fit on each fit's rows). Token pattern \w+ keeps numbers and single letters ("12",
# "6", "x"): sizes and packs are words here.
SPARSE_VIEWS: dict[str, tuple[str, dict]] = {
    "name_words": ("name", {"ngram_range": (1, 2), "min_df": 2, "token_pattern": r"\w+"}),
    "name_chars": ("name", {"analyzer": "char_wb", "ngram_range": (2, 4), "min_df": 3}),
    "text_words": ("text", {"ngram_range": (1, 2), "min_df": 2, "token_pattern": r"\w+", "max_features": 100_000}),
}
SPARSE_MLP_BOUNDS: dict[str, Bounds] = {
    **{name: TRAINING_BOUNDS[name] for name in ("batch_size", "weight_decay", "huber_delta", "valid_fraction",
                                                 "num_threads", "model_seed")},
    "epochs": Bounds(1, integer=True),
    "batch_growth": Bounds(1, note="each epoch's batch is the last one's times this: 2 doubles it"),
    "lr": Bounds(0, low_open=True),
}


def check_bags(learner: str, params: Mapping[str, object]) -> None:
    """`bags` (when given) as every bagging learner takes it (ml.base.check_bag_settings), named by `learner`."""
    if "bags" in params:
        try:
            check_bag_settings(params["bags"])
        except ValueError as err:
            raise ValueError(f"learner {learner!r}: {err}") from None


def check_widths(learner: str, hidden, least: int = 0) -> None:
    """`hidden` must list at least `least` positive layer widths."""
    widths = hidden if isinstance(hidden, list | tuple) and len(hidden) >= least else [None]
    if not all(Bounds(1, integer=True).admits(width) for width in widths):
        raise ValueError(f"learner {learner!r}: hidden must list positive layer widths, e.g. [512, 128]"
                         + (f" (at least {least})" if least else "") + f", got {hidden!r}")


def check_sparse_mlp_settings(params: Mapping[str, object]) -> None:
    """What `sparse_mlp` refuses of its parameters `params` (those absent keep their defaults) before reading any
    data."""
    for param, choices in (("loss", LOSS_NAMES), ("device", DEVICES)):
        if param in params:
            check_choice("sparse_mlp", param, params[param], choices)
    check_numbers("sparse_mlp", params, SPARSE_MLP_BOUNDS)
    check_flags("sparse_mlp", params, ("binary", "refit", "progress"))
    check_bags("sparse_mlp", params)
    if "hidden" in params:
        check_widths("sparse_mlp", params["hidden"], least=1)
    if "views" in params:
        views = params["views"]
        if not isinstance(views, list | tuple) or not views:
            raise ValueError(f"learner 'sparse_mlp': views must list text views from {sorted(SPARSE_VIEWS)}, e.g. "
                             f"[\"name_words\", \"text_words\"], got {views!r}")
        for view in views:
            check_choice("sparse_mlp", "views", view, SPARSE_VIEWS)
        if len(set(views)) < len(views):
            raise ValueError(f"learner 'sparse_mlp': views lists a view twice: {views!r}")


# --- finetune


@dataclass(frozen=True)
class Encoder:
    """One encoder `finetune` fine-tunes: where its weights are, its pooling, a learning rate that suits it and the
    longest input it takes (max_position_embeddings, as embed.transformers_models.token_limit reads it)."""

    name: str
    source: str  # hub id (offline: the bundling package or the HF cache)
    pooling: str  # "mean" or "cls"
    lr: float
    params_m: float
    license: str
    max_tokens: int = 512


ENCODERS: dict[str, Encoder] = {e.name: e for e in (
    Encoder("minilm", "sentence-transformers/all-MiniLM-L6-v2", "mean", 1e-4, 22.7, "Apache-2.0"),
    Encoder("bge-base", "BAAI/bge-base-en-v1.5", "cls", 3e-5, 109.5, "MIT"),
    Encoder("deberta-v3-base", "microsoft/deberta-v3-base", "mean", 3e-5, 184.4, "MIT"),
    Encoder("deberta-v3-large", "microsoft/deberta-v3-large", "mean", 1e-5, 435.1, "MIT"),
)}
POOLINGS = ("mean", "cls")
TEXT_FORMATS = ("catalog", "raw")
FINETUNE_BOUNDS: dict[str, Bounds] = {
    **TRAINING_BOUNDS,
    "max_len": Bounds(8, integer=True, note="tokens"),
    "epochs": Bounds(0, low_open=True, note="a fraction is allowed"),
    "grad_accum": Bounds(1, integer=True),
    "lr": Bounds(0, low_open=True, optional=True, note="None: the model's default"),
    "head_lr": Bounds(0, low_open=True),
    "layer_lr_decay": Bounds(0, 1, low_open=True, note="1: off"),
    "head_dropout": DROPOUT_BOUNDS,
    "encoder_dropout": Bounds(0, 1, high_open=True, optional=True, note="None: the checkpoint's own"),
    "evals_per_epoch": Bounds(1, integer=True),
}


def registry_encoder(model) -> Encoder:
    """The ENCODERS row named `model`; an unknown name is an error naming the closest one and what else to pass."""
    if not isinstance(model, str) or model not in ENCODERS:
        close = difflib.get_close_matches(model, list(ENCODERS), n=1) if isinstance(model, str) else []
        raise ValueError(f"unknown finetune model {model!r}" + (f" (did you mean {close[0]!r}?)" if close else "")
                         + f"; choose from {sorted(ENCODERS)} or pass {LOCAL_DIR}<folder> (config.json + weights + "
                         "tokenizer files)")
    return ENCODERS[model]


def check_max_len(model: str, max_len: int, limit: int) -> None:
    """`max_len` tokens must fit the `limit` encoder `model` takes."""
    if max_len > limit:
        raise ValueError(f"learner 'finetune': max_len={max_len} is longer than {model} takes ({limit} tokens); use "
                         f"max_len <= {limit}")


def check_finetune_settings(params: Mapping[str, object]) -> None:
    """What `finetune` refuses of its parameters `params` (those absent keep their defaults) before loading its
    encoder: a local-dir: folder's own checks (its files, its token limit) wait until it is loaded."""
    for param, choices in (("loss", LOSS_NAMES), ("schedule", SCHEDULES), ("padding", PADDING_NAMES),
                           ("device", DEVICES), ("precision", PRECISIONS), ("text_format", TEXT_FORMATS)):
        if param in params:
            check_choice("finetune", param, params[param], choices)
    if params.get("pooling"):
        check_choice("finetune", "pooling", params["pooling"], POOLINGS)
    check_numbers("finetune", params, FINETUNE_BOUNDS)
    check_flags("finetune", params, ("refit", "save_models", "gradient_checkpointing", "progress"))
    model = params.get("model")
    if "model" in params and not (isinstance(model, str) and model.startswith(LOCAL_DIR)):
        encoder = registry_encoder(model)
        if "max_len" in params:
            check_max_len(encoder.name, params["max_len"], encoder.max_tokens)
