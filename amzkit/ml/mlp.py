"""`mlp`: a small torch MLP on frozen embeddings plus the numeric feature groups (public 2025 solution #14's
approach: CLIP / SigLIP text and image embeddings into an MLP).

Inputs are the run's feature set (ml.featureset: `features` groups, `embeddings` runs whole or reduced in the
folds, fold transforms refit on each fold's real training rows). Inside each fit, numeric columns are imputed
with the training medians (plus a missing indicator per column with NaN in training), heavy-tailed columns
are log-scaled, clipped to their training 0.1-99.9 percentiles and standardised; categorical codes (brand,
unit family, ...) enter as learnt embeddings or one-hot. The net predicts log1p(price) with the loss chosen
(ml.torch_fit.LOSSES). Early stopping: on an inner holdout of the training rows (grouped by product), never on
the fold CV scores; `refit` then trains on every training row for the number of steps it chose. With `bags` > 1
each fit trains that many nets, seeds seed + model_seed, + 1, ... (each early-stopped on the same holdout, then
refit), and predicts the mean of their log1p predictions, as the tree learners' `bags`.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from amzkit.core.io import atomic_path
from amzkit.ml.base import Learner, RunInputs
from amzkit.ml.featureset import assemble_features
from amzkit.ml.folds import VALID_FRACTION, holdout_mask
from amzkit.ml.torch_fit import (
    TrainPlan,
    cpu_state,
    cpu_threads,
    described_without_progress,
    fit_history_report,
    holdout_smape,
    log_target_stats,
    no_decay_parameters,
    prices_from_log,
    refit_steps,
    resolve_device,
    seed_torch,
    torch_resume_key,
    train_loop,
    weighted_loss,
)
from amzkit.ml.torch_settings import check_mlp_settings
from amzkit.ml.transforms import TFIDF_DIM
from amzkit.ml.trees import DEFAULT_FEATURES

LOG_SCALE_ABOVE = 100.0  # a column whose training |values| reach this at the 99th percentile is log-scaled
CLIP_QUANTILES = (0.001, 0.999)
MAX_EMBEDDING_DIM = 16
PREDICT_BATCH = 8192


def category_cardinalities(features) -> list[int]:
    """Per categorical column of a FeatureSet: the number of indices `category_indices` gives (its label-free codes
    of every row, + 0 for missing, + the last one for a code unseen there)."""
    codes = features.static[:, features.categorical]
    return [int(np.nanmax(np.append(c, -1))) + 2 for c in codes.T]


def category_indices(raw: np.ndarray, cardinalities: Sequence[int]) -> np.ndarray:
    """Category index per code of `raw` (a column per categorical column): 0 missing, code + 1, capped at the
    last (unseen) index."""
    codes = np.where(np.isfinite(raw), raw + 1, 0).astype(np.int64)
    return np.minimum(codes, np.array(cardinalities, dtype=np.int64) - 1)


class TabularScaler:
    """Numeric columns for a net: median imputation + missing indicators, log scaling of heavy tails, clipping
    and standardisation, all learnt from the rows `fit` sees (the training fold's real rows)."""

    def fit(self, x: np.ndarray) -> TabularScaler:
        x = np.asarray(x, dtype=np.float64)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # an all-NaN column: its median is 0 below
            medians = np.nanmedian(np.where(np.isfinite(x), x, np.nan), axis=0) if len(x) else np.zeros(x.shape[1])
        self.medians_ = np.nan_to_num(medians, nan=0.0)
        self.missing_ = np.flatnonzero((~np.isfinite(x)).any(axis=0))
        filled = self._fill(x)
        self.log_ = np.percentile(np.abs(filled), 99, axis=0) >= LOG_SCALE_ABOVE if len(x) else np.zeros(0, bool)
        logged = self._log(filled)
        self.low_, self.high_ = np.quantile(logged, CLIP_QUANTILES, axis=0)
        clipped = np.clip(logged, self.low_, self.high_)
        self.mean_, std = clipped.mean(axis=0), clipped.std(axis=0)
        self.std_ = np.where(std > 1e-9, std, 1.0)
        return self

    def _fill(self, x: np.ndarray) -> np.ndarray:
        return np.where(np.isfinite(x), x, self.medians_)

    def _log(self, x: np.ndarray) -> np.ndarray:
        return np.where(self.log_, np.sign(x) * np.log1p(np.abs(x)), x)

    @property
    def width(self) -> int:
        return len(self.medians_) + len(self.missing_)

    def transform(self, x: np.ndarray) -> np.ndarray:
        x = np.asarray(x, dtype=np.float64)
        missing = (~np.isfinite(x[:, self.missing_])).astype(np.float64)
        scaled = (np.clip(self._log(self._fill(x)), self.low_, self.high_) - self.mean_) / self.std_
        return np.hstack([scaled, missing]).astype(np.float32)


class MlpNet(nn.Module):
    """Numeric columns + categorical codes (embedded or one-hot) -> hidden layers -> log1p(price)."""

    def __init__(self, n_numeric: int, cardinalities: Sequence[int], categorical: str, hidden: Sequence[int],
                 dropout: float, centre: float, spread: float):
        super().__init__()
        self.categorical, self.cardinalities = categorical, list(cardinalities)
        dims = [min(MAX_EMBEDDING_DIM, (card + 1) // 2) for card in self.cardinalities]
        self.embeddings = nn.ModuleList(nn.Embedding(card, dim) for card, dim in zip(self.cardinalities, dims,
                                                                                       strict=True)
                                        ) if categorical == "embedding" else nn.ModuleList()
        width = n_numeric + (sum(dims) if categorical == "embedding" else sum(self.cardinalities))
        layers: list[nn.Module] = []
        for size in hidden:
            layers += [nn.Linear(width, size), nn.LayerNorm(size), nn.SiLU(), nn.Dropout(dropout)]
            width = size
        self.body = nn.Sequential(*layers)
        self.out = nn.Linear(width, 1)
        nn.init.normal_(self.out.weight, std=0.01)
        nn.init.zeros_(self.out.bias)
        self.register_buffer("centre", torch.tensor(float(centre)))
        self.register_buffer("spread", torch.tensor(float(spread)))

    def forward(self, numeric: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        parts = [numeric]
        for i, card in enumerate(self.cardinalities):
            if self.categorical == "embedding":
                parts.append(self.embeddings[i](codes[:, i]))
            else:
                parts.append(nn.functional.one_hot(codes[:, i], card).to(numeric.dtype))
        return self.centre + self.spread * self.out(self.body(torch.cat(parts, dim=1))).squeeze(-1)


class MlpLearner(Learner):
    """A small MLP on the run's feature set (embeddings + feature groups), log1p target, inner-holdout early
    stopping (see the module docstring). Deterministic on CPU for a given seed and thread count (`cpu_threads`)."""

    name = "mlp"
    threads_change_results = True  # torch on CPU

    def __init__(self, features: Sequence[str] = DEFAULT_FEATURES, embeddings: Sequence[str] = (),
                 tfidf_dim: int = TFIDF_DIM, hidden: Sequence[int] = (512, 128), dropout: float = 0.2,
                 categorical: str = "embedding", epochs: int = 60, patience: int = 8, batch_size: int = 256,
                 lr: float = 2e-3, weight_decay: float = 1e-4, schedule: str = "cosine", warmup: float = 0.05,
                 loss: str = "smape", huber_delta: float = 1.0, valid_fraction: float = VALID_FRACTION,
                 refit: bool = False, model_seed: int = 0, device: str = "auto", num_threads: int = 0,
                 progress: bool = False, bags: int = 1):
        self.features = features
        self.embeddings = embeddings
        self.tfidf_dim = tfidf_dim
        self.hidden = hidden
        self.dropout = dropout
        self.categorical = categorical
        self.epochs = epochs
        self.patience = patience
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.schedule = schedule
        self.warmup = warmup
        self.loss = loss
        self.huber_delta = huber_delta
        self.valid_fraction = valid_fraction
        self.refit = refit
        self.model_seed = model_seed
        self.device = device
        self.num_threads = num_threads
        self.progress = progress
        self.bags = bags

    def check_settings(self) -> None:
        check_mlp_settings(self.get_params())  # the rules kaggle build checks a 03 kernel's learner_params by

    def prepare(self, inputs: RunInputs) -> MlpLearner:
        self.check_settings()
        self.inputs_ = inputs
        self.device_ = resolve_device(self.device)
        self.threads_ = cpu_threads(self.device_, self.num_threads, self.name)
        self.features_ = assemble_features(inputs, self.features, self.embeddings, self.tfidf_dim)
        categorical = list(self.features_.categorical)
        self.numeric_columns_ = [i for i in range(self.features_.static.shape[1]) if i not in set(categorical)]
        self.categorical_columns_ = categorical
        self.cardinalities_ = category_cardinalities(self.features_)
        return self

    def prepared_attributes(self) -> set[str]:
        return {"inputs_", "device_", "threads_", "features_", "numeric_columns_", "categorical_columns_",
                "cardinalities_"}

    # --- inputs as tensors

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(numeric columns incl. fold-transform ones, category index per categorical column: 0 = missing)."""
        n_static = self.features_.static.shape[1]
        numeric = np.hstack([x[:, self.numeric_columns_], x[:, n_static:]])
        return numeric, category_indices(x[:, self.categorical_columns_], self.cardinalities_)

    def _tensors(self, x: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
        numeric, codes = self._split(x)
        return (torch.from_numpy(self.scaler_.transform(numeric)).to(self.device_),
                torch.from_numpy(codes).to(self.device_))

    # --- the protocol

    def fit(self, rows, y, weight=None) -> MlpLearner:
        self._check_prepared()
        if self.threads_ is not None:  # CPU: a count fixed for the run (see cpu_threads)
            torch.set_num_threads(self.threads_)
        rows, y = np.asarray(rows), np.asarray(y, dtype=np.float64)
        inputs = self.inputs_
        real = rows < inputs.n_train
        for transform in self.features_.transforms:  # learnt from labelled train rows only
            transform.fit(rows[real], y[real])
        x = self.features_.matrix(rows)
        self.scaler_ = TabularScaler().fit(self._split(x[real])[0])
        numeric, codes = self._tensors(x)
        target = torch.from_numpy(np.log1p(y).astype(np.float32)).to(self.device_)
        weights = None if weight is None else torch.as_tensor(np.asarray(weight, np.float32), device=self.device_)
        watch = holdout_mask(rows, inputs.n_train, self.valid_fraction, inputs.seed, inputs.groups)
        keep = np.flatnonzero(~watch)
        holdout = (self._tensors(x[watch]), y[watch]) if watch.any() else None
        self.model_, self.history_, self.refit_history_ = [], [], []
        first = self.inputs_.seed + self.model_seed
        for seed in range(first, first + self.bags):  # bag 0 is the unbagged net: bags 1 fits what it always did
            net, history = self._train(keep, numeric, codes, target, weights, y[keep], holdout, None, seed)
            refit_history = None
            max_steps = refit_steps(history, holdout, self._steps_per_epoch(len(keep)),
                                    self._steps_per_epoch(len(rows)))
            if self.refit and max_steps is not None:
                net, refit_history = self._train(np.arange(len(rows)), numeric, codes, target, weights, y, None,
                                                 max_steps, seed)
            self.model_.append(net)
            self.history_.append(history)
            self.refit_history_.append(refit_history)
        return self

    def fit_report(self) -> dict:
        """What the first net's training chose (steps, kept step, holdout SMAPE, refit steps, ...); with `bags` > 1
        also `bag_fits`, the same for every net of the bag."""
        if not hasattr(self, "history_"):
            return {}
        reports = [fit_history_report(h, r) for h, r in zip(self.history_, self.refit_history_, strict=True)]
        return {**reports[0], "bag_fits": reports} if len(reports) > 1 else reports[0]

    def _steps_per_epoch(self, n_rows: int) -> int:
        return max(1, -(-n_rows // self.batch_size))

    def _train(self, train_index, numeric, codes, target, weights, y_train, holdout, max_steps, seed: int):
        """One net trained on `train_index` (positions in the fit's rows) with random `seed` (weights, dropout,
        batch order), early-stopped on `holdout` ((inputs, prices) or None): (net, History)."""
        seed_torch(seed)
        centre, spread = log_target_stats(y_train)
        net = MlpNet(numeric.shape[1], self.cardinalities_, self.categorical, self.hidden, self.dropout, centre,
                     spread).to(self.device_)
        undecayed = no_decay_parameters(net)
        params = list(net.parameters())
        groups = [{"params": [p for p in params if id(p) not in undecayed], "weight_decay": self.weight_decay},
                  {"params": [p for p in params if id(p) in undecayed], "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=self.lr)
        order = np.random.default_rng(seed)
        train_index = np.asarray(train_index)

        def batches(epoch):
            shuffled = torch.from_numpy(order.permutation(train_index)).to(self.device_)
            return [shuffled[i:i + self.batch_size] for i in range(0, len(shuffled), self.batch_size)]

        def loss_of(batch):
            pred = net(numeric[batch], codes[batch])
            weight = None if weights is None else weights[batch]
            return (weighted_loss(self.loss, pred, target[batch], weight, self.huber_delta), len(batch),
                    len(batch) if weight is None else weight.sum().item())

        evaluate = None if holdout is None else lambda: holdout_smape(_predict_log(net, holdout[0]), holdout[1])
        plan = TrainPlan(self.epochs, self._steps_per_epoch(len(train_index)), 1, self.patience, max_steps)
        history = train_loop(net, optimizer, plan, batches, loss_of, device=self.device_, amp=None,
                             schedule=self.schedule, warmup=self.warmup, evaluate=evaluate, desc="mlp",
                             progress=self.progress)
        return net, history

    def predict(self, rows) -> np.ndarray:
        tensors = self._tensors(self.features_.matrix(np.asarray(rows)))
        logs = np.array([_predict_log(net, tensors) for net in self.model_], dtype=np.float64)
        return prices_from_log(logs.mean(axis=0), self.name)  # one net: its own log predictions, exactly

    def save_fold(self, folder: Path, fold: int) -> None:
        """The fold's nets and scaler as fold<k>.pt, then fold<k>_bag<b>.pt for further seeds (as the tree
        learners'): CPU tensors, so torch.load's defaults read them on any machine."""
        folder.mkdir(parents=True, exist_ok=True)
        scaler = {key: torch.from_numpy(np.asarray(value)) for key, value in vars(self.scaler_).items()}
        params = self.describe()["params"]
        for bag, net in enumerate(self.model_):
            state = {"net": cpu_state(net), "params": params, "bag": bag, "scaler": scaler}
            with atomic_path(folder / f"fold{fold}{'' if bag == 0 else f'_bag{bag}'}.pt") as tmp:
                torch.save(state, tmp)

    def describe(self) -> dict:
        width = len(self.features_.names) if hasattr(self, "features_") else None
        return {**described_without_progress(super().describe()), "features": list(self.features),
                "embeddings": list(self.embeddings), "bags": self.bags, "n_features": width}

    def resume_key(self) -> dict:
        return torch_resume_key(self)


def _predict_log(net: MlpNet, tensors: tuple[torch.Tensor, torch.Tensor]) -> np.ndarray:
    """log1p-price predictions of `net` (eval mode, batched)."""
    numeric, codes = tensors
    net.eval()
    with torch.inference_mode():
        out = [net(numeric[i:i + PREDICT_BATCH], codes[i:i + PREDICT_BATCH]).float().cpu().numpy()
               for i in range(0, len(numeric), PREDICT_BATCH)]
    return np.concatenate(out) if out else np.empty(0, dtype=np.float32)
