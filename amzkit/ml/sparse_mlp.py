"""`sparse_mlp`: an MLP whose first layer reads the sparse TF-IDF n-grams of the item name and the row text
directly, tens of thousands of columns, beside the numeric feature groups and any 01 embedding runs (the
Mercari Price Suggestion Challenge winners' model of price from product text, with a picture's embedding as the
2025 solutions added it).

Inside each fit: the text views (torch_settings.SPARSE_VIEWS: item-name words 1-2, item-name characters 2-4,
row-text words 1-2) are vectorised by TF-IDF fit on the fit's rows only (`binary`: every present n-gram 1); numeric
columns of the feature groups and the `embeddings` (whole or reduced, as ml.featureset reads them) are scaled as
the `mlp` scales them (ml.mlp.TabularScaler, from the training rows), categorical codes one-hot. All of it is one
sparse row per listing; the first layer is a sparse-gradient nn.EmbeddingBag over its columns (a dense layer's
product, paying only for the columns a batch holds), then ReLU layers to log1p(price). Each epoch's batch is
`batch_growth` times the last one's (small noisy steps first, then larger ones, as the winners trained). Epochs:
the count whose holdout SMAPE was lowest on an inner holdout of the training rows (whole products, never the fold's
scored rows), then with `refit` a new net on every training row for that many epochs. `bags` nets per fit (seeds
seed + model_seed, + 1, ...), their log1p predictions averaged. The fold models are not saved: a first layer holds
columns x hidden[0] weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.feature_extraction.text import TfidfVectorizer
from torch import nn

from amzkit.ml.base import Learner, RunInputs
from amzkit.ml.featureset import assemble_features
from amzkit.ml.folds import VALID_FRACTION, holdout_mask
from amzkit.ml.mlp import TabularScaler, category_cardinalities, category_indices
from amzkit.ml.torch_fit import (
    cpu_threads,
    described_without_progress,
    holdout_smape,
    log_target_stats,
    prices_from_log,
    resolve_device,
    seed_torch,
    torch_resume_key,
    weighted_loss,
)
from amzkit.ml.torch_settings import SPARSE_VIEWS, check_sparse_mlp_settings
from amzkit.ml.transforms import TFIDF_DIM
from amzkit.text.features import item_names

# the feature groups beside the text views: the 03 defaults less the text's own summaries (tfidf, ridge_oof)
SPARSE_MLP_FEATURES = ("quantity", "text_stats", "keywords", "brand", "dimensions", "pack_totals")
PREDICT_BATCH = 8192


def bag_inputs(matrix: sp.csr_matrix, device: torch.device) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(column ids, row offsets, values) of a CSR matrix, as nn.EmbeddingBag reads them."""
    matrix = matrix.tocsr()
    return (torch.from_numpy(matrix.indices.astype(np.int64)).to(device),
            torch.from_numpy(matrix.indptr[:-1].astype(np.int64)).to(device),
            torch.from_numpy(matrix.data.astype(np.float32)).to(device))


class SparseNet(nn.Module):
    """Sparse columns -> EmbeddingBag (a linear layer with sparse gradients) + bias -> ReLU layers -> log1p(price),
    predicted as centre + spread * output (the training rows' median and std of log1p(price))."""

    def __init__(self, n_columns: int, hidden: Sequence[int], centre: float, spread: float):
        super().__init__()
        self.first = nn.EmbeddingBag(n_columns, hidden[0], mode="sum", sparse=True)
        nn.init.xavier_uniform_(self.first.weight)
        self.first_bias = nn.Parameter(torch.zeros(hidden[0]))
        layers: list[nn.Module] = [nn.ReLU()]
        width = hidden[0]
        for size in hidden[1:]:
            layers += [nn.Linear(width, size), nn.ReLU()]
            width = size
        layers.append(nn.Linear(width, 1))
        self.body = nn.Sequential(*layers)
        self.centre, self.spread = float(centre), float(spread)

    def forward(self, inputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> torch.Tensor:
        ids, offsets, values = inputs
        hidden = self.first(ids, offsets, per_sample_weights=values) + self.first_bias
        return self.centre + self.spread * self.body(hidden).squeeze(-1)


class SparseMlpLearner(Learner):
    """An MLP on sparse TF-IDF n-grams + the numeric feature groups (see the module docstring). Deterministic on
    CPU for a given seed and thread count (`cpu_threads`)."""

    name = "sparse_mlp"
    threads_change_results = True  # torch on CPU

    def __init__(self, views: Sequence[str] = ("name_words", "text_words"), binary: bool = False,
                 features: Sequence[str] = SPARSE_MLP_FEATURES, embeddings: Sequence[str] = (),
                 tfidf_dim: int = TFIDF_DIM, hidden: Sequence[int] = (256, 64, 64), epochs: int = 8,
                 batch_size: int = 32, batch_growth: float = 2.0, lr: float = 3e-3, weight_decay: float = 0.0,
                 loss: str = "mse", huber_delta: float = 1.0, valid_fraction: float = VALID_FRACTION,
                 refit: bool = True, model_seed: int = 0, bags: int = 1, device: str = "auto", num_threads: int = 0,
                 progress: bool = False):
        self.views = views
        self.binary = binary
        self.features = features
        self.embeddings = embeddings
        self.tfidf_dim = tfidf_dim
        self.hidden = hidden
        self.epochs = epochs
        self.batch_size = batch_size
        self.batch_growth = batch_growth
        self.lr = lr
        self.weight_decay = weight_decay
        self.loss = loss
        self.huber_delta = huber_delta
        self.valid_fraction = valid_fraction
        self.refit = refit
        self.model_seed = model_seed
        self.bags = bags
        self.device = device
        self.num_threads = num_threads
        self.progress = progress

    def check_settings(self) -> None:
        check_sparse_mlp_settings(self.get_params())  # the rules kaggle build checks a 03 kernel's learner_params by

    def prepare(self, inputs: RunInputs) -> SparseMlpLearner:
        self.check_settings()
        self.inputs_ = inputs
        self.device_ = resolve_device(self.device)
        self.threads_ = cpu_threads(self.device_, self.num_threads, self.name)
        self.texts_ = {"text": inputs.texts, "name": item_names(inputs.both, inputs.schema).tolist()}
        self.features_ = (assemble_features(inputs, self.features, self.embeddings, self.tfidf_dim)
                          if self.features or self.embeddings else None)
        if self.features_ is not None:
            self.cardinalities_ = category_cardinalities(self.features_)
        return self

    def prepared_attributes(self) -> set[str]:
        return {"inputs_", "device_", "threads_", "texts_", "features_", "cardinalities_"}

    # --- inputs: one sparse row per listing

    def _columns(self, rows: np.ndarray) -> sp.csr_matrix:
        """The text views' n-grams, the scaled numeric columns and the one-hot categories of `rows`."""
        blocks = [vectorizer.transform([self.texts_[SPARSE_VIEWS[view][0]][i] for i in rows])
                  for view, vectorizer in zip(self.views, self.vectorizers_, strict=True)]
        text = sp.hstack(blocks, format="csr", dtype=np.float32)
        if self.binary:
            text.data[:] = 1.0
        if self.features_ is None:
            return text
        numeric, codes = self._split(self.features_.matrix(rows))
        ones, at = np.ones(len(rows), np.float32), np.arange(len(rows))
        onehot = [sp.csr_matrix((ones, (at, column)), shape=(len(rows), card))
                  for column, card in zip(codes.T, self.cardinalities_, strict=True)]
        return sp.hstack([text, sp.csr_matrix(self.scaler_.transform(numeric)), *onehot], format="csr",
                         dtype=np.float32)

    def _split(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(numeric columns, category index per categorical column: 0 missing, the last one unseen)."""
        categorical = self.features_.categorical
        return np.delete(x, categorical, axis=1), category_indices(x[:, categorical], self.cardinalities_)

    # --- the protocol

    def fit(self, rows, y, weight=None) -> SparseMlpLearner:
        self._check_prepared()
        if self.threads_ is not None:  # CPU: a count fixed for the run (see cpu_threads)
            torch.set_num_threads(self.threads_)
        rows, y = np.asarray(rows), np.asarray(y, dtype=np.float64)
        inputs = self.inputs_
        real = rows < inputs.n_train
        self.vectorizers_ = []
        for view in self.views:  # label-free: every row the fit learns from, as ridge_tfidf's
            source, settings = SPARSE_VIEWS[view]
            texts = self.texts_[source]
            self.vectorizers_.append(TfidfVectorizer(sublinear_tf=True, strip_accents="unicode", dtype=np.float32,
                                                     **settings).fit([texts[i] for i in rows]))
        if self.features_ is not None:
            for transform in self.features_.transforms:  # learnt from labelled train rows only
                transform.fit(rows[real], y[real])
            self.scaler_ = TabularScaler().fit(self._split(self.features_.matrix(rows[real]))[0])
        x = self._columns(rows)
        target = torch.from_numpy(np.log1p(y).astype(np.float32)).to(self.device_)
        weights = None if weight is None else torch.as_tensor(np.asarray(weight, np.float32), device=self.device_)
        watch = holdout_mask(rows, inputs.n_train, self.valid_fraction, inputs.seed, inputs.groups)
        keep = np.flatnonzero(~watch)
        self.nets_, self.fits_ = [], []
        first = inputs.seed + self.model_seed
        for seed in range(first, first + self.bags):
            if not watch.any():  # no holdout: every epoch on every row
                net, _ = self._train(x, target, weights, y, np.arange(len(rows)), self.epochs, None, seed)
                self.nets_.append(net)
                self.fits_.append({"epochs": self.epochs, "holdout_smape": [], "refit": False})
                continue
            net, scores = self._train(x, target, weights, y, keep, self.epochs, (x[watch], y[watch]), seed)
            epochs = int(np.argmin(scores)) + 1
            if self.refit:
                net, _ = self._train(x, target, weights, y, np.arange(len(rows)), epochs, None, seed)
            self.nets_.append(net)
            self.fits_.append({"epochs": epochs, "holdout_smape": [round(float(s), 4) for s in scores],
                               "refit": bool(self.refit)})
        return self

    def _train(self, x: sp.csr_matrix, target, weights, y, index: np.ndarray, epochs: int, holdout, seed: int):
        """A net trained `epochs` epochs on rows `index` of `x` with random `seed`: (net, holdout SMAPE after each
        epoch); with a holdout ((columns, prices)) the net returned holds the weights of its best epoch."""
        seed_torch(seed)
        centre, spread = log_target_stats(y[index])
        net = SparseNet(x.shape[1], self.hidden, centre, spread).to(self.device_)
        dense = [param for name, param in net.named_parameters() if not name.startswith("first.")]
        optimizers = [torch.optim.SparseAdam(list(net.first.parameters()), lr=self.lr),
                      torch.optim.Adam(dense, lr=self.lr, weight_decay=self.weight_decay)]
        order = np.random.default_rng(seed)
        x_train = x[index]
        watched = None if holdout is None else bag_inputs(holdout[0], self.device_)
        scores, best, best_state = [], np.inf, None
        for epoch in range(epochs):
            size = max(1, int(round(self.batch_size * self.batch_growth ** epoch)))
            shuffled = order.permutation(len(index))
            net.train()
            for start in range(0, len(shuffled), size):
                batch = shuffled[start:start + size]
                pred = net(bag_inputs(x_train[batch], self.device_))
                rows = torch.from_numpy(index[batch]).to(self.device_)
                loss = weighted_loss(self.loss, pred, target[rows], None if weights is None else weights[rows],
                                     self.huber_delta)
                for optimizer in optimizers:
                    optimizer.zero_grad()
                loss.backward()
                for optimizer in optimizers:
                    optimizer.step()
            if watched is not None:
                net.eval()
                with torch.inference_mode():
                    scores.append(holdout_smape(net(watched).float().cpu().numpy(), holdout[1]))
                if scores[-1] < best:
                    best = scores[-1]
                    best_state = {k: v.detach().clone() for k, v in net.state_dict().items()}
        if best_state is not None:
            net.load_state_dict(best_state)
        net.eval()
        return net, scores

    def predict(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        logs = np.zeros(len(rows), dtype=np.float64)
        for start in range(0, len(rows), PREDICT_BATCH):
            part = bag_inputs(self._columns(rows[start:start + PREDICT_BATCH]), self.device_)
            with torch.inference_mode():
                logs[start:start + PREDICT_BATCH] = np.mean(
                    [net(part).double().cpu().numpy() for net in self.nets_], axis=0)
        return prices_from_log(logs, self.name)

    def fit_report(self) -> dict:
        """The epochs each net of the last fit trained (chosen on the holdout) and its holdout SMAPE by epoch."""
        if not hasattr(self, "fits_"):
            return {}
        return {**self.fits_[0], "bag_fits": self.fits_} if len(self.fits_) > 1 else self.fits_[0]

    def describe(self) -> dict:
        return {**described_without_progress(super().describe()), "features": list(self.features),
                "embeddings": list(self.embeddings), "bags": self.bags}

    def resume_key(self) -> dict:
        return torch_resume_key(self)
