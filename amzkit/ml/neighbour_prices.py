"""Neighbours' price per unit on the listings' words: the `neighbour_unit` fold group.

For each row, the price per unit (log1p(price) - log1p(total quantity)) of its k nearest training rows by
cosine on a character TF-IDF (of the item name; of the row text), weighted by similarity, plus the row's own
log1p total: what near-identical listings charge for this much of the product. NaN for a row whose own total
is unknown, and where no neighbour has a known total.

The search is label-free, so it is done once for all rows: each row's `CANDIDATES` most similar train rows
(the vectorizer fit on every row's text, train and test: no label is read). Each fold then keeps, per row,
the candidates it may read: a training row the training rows of the other inner folds (grouped by product,
so never its own label nor a copy's), every other row (the fold's validation rows, test rows) the training
rows. To make the search cheap on 75,000 rows the dot products run over the rarer n-grams only (those in at
most `max_df` of the rows; the vectors renormalised): near-identical listings share their rare n-grams, and
the common ones (" th", "oz") are what make an exact sparse search slow.
"""

from __future__ import annotations

import hashlib
import json
import re
import zipfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.preprocessing import normalize

from amzkit.core.io import atomic_path
from amzkit.core.progress import tqdm
from amzkit.core.threads import allowed_cores
from amzkit.core.workdir import stage_dir
from amzkit.ml.base import RunInputs
from amzkit.ml.folds import inner_folds
from amzkit.ml.stacking import name_vectorizer
from amzkit.ml.transforms import FoldTransform
from amzkit.text.features import parsed_rows
from amzkit.text.quantity import total_quantity_log

CANDIDATES = 64  # nearest train rows kept per row by the one label-free search; each fold reads its allowed ones
NEIGHBOURS = 10  # neighbours a row's value averages (of the candidates a fold allows)
MAX_DF = 0.02  # n-grams in more of the rows than this take no part in the search ...
MIN_COMMON_ROWS = 100  # ... unless they are in at most this many rows (small data: all but the commonest)
QUERY_BLOCK = 512
MAX_THREADS = 8  # query blocks searched at once (each holds its block's products: ~200 MB at 75,000 rows)
SEARCH_VERSION = 1  # part of the cached search's key (with its settings): bump when the search changes
CACHE_FOLDER = "neighbours"
DIGEST_CHARS = 20  # of the sha256 in a kept search's name: <view>_<digest>.npz
PROGRESS_BLOCKS = 40  # searches of more query blocks than this show a progress bar


def char_vectorizer(max_df: float = MAX_DF) -> TfidfVectorizer:
    """The stacked name ridge's character 2-5 grams (ml.stacking.name_vectorizer), without the common n-grams."""
    return name_vectorizer().set_params(max_df=max_df)


def nearest_train_rows(texts: Sequence[str], n_train: int, n_candidates: int = CANDIDATES,
                       max_df: float = MAX_DF, desc: str = "neighbours") -> tuple[np.ndarray, np.ndarray]:
    """(index, similarity), each (len(texts), n_candidates), best first: every row's most similar rows among the
    first `n_train` (never itself); -1 / NaN where fewer share an n-gram with it."""
    texts = list(texts)
    n = len(texts)
    index = np.full((n, n_candidates), -1, dtype=np.int32)
    similarity = np.full((n, n_candidates), np.nan, dtype=np.float32)
    try:
        matrix = char_vectorizer(min(1.0, max(max_df, MIN_COMMON_ROWS / max(1, n)))).fit_transform(texts)
    except ValueError:  # no n-gram in two rows (a handful of rows, empty texts): no neighbour at all
        return index, similarity
    matrix = normalize(matrix).astype(np.float32).tocsr()
    reference = matrix[:n_train].T.tocsc()

    def search(start: int) -> None:
        """The top candidates of rows start .. start + QUERY_BLOCK, from their sparse products (never dense)."""
        stop = min(n, start + QUERY_BLOCK)
        block = (matrix[start:stop] @ reference).tocoo()
        keep = (block.row + start != block.col) & (block.data > 0)  # never itself
        row, col, sim = block.row[keep], block.col[keep], block.data[keep]
        order = np.argsort(row + (1.0 - sim.astype(np.float64)), kind="stable")  # by row, most similar first
        row, col, sim = row[order], col[order], sim[order]
        first = np.searchsorted(row, np.arange(stop - start))
        rank = np.arange(len(row)) - first[row]
        top = rank < n_candidates
        index[start + row[top], rank[top]] = col[top]  # each block writes its own rows
        similarity[start + row[top], rank[top]] = sim[top]

    starts = range(0, n, QUERY_BLOCK)
    with ThreadPoolExecutor(min(MAX_THREADS, allowed_cores())) as pool:  # the products and sorts leave the GIL
        for _ in tqdm(pool.map(search, starts), total=len(starts), desc=desc, unit="block", leave=False,
                      disable=len(starts) <= PROGRESS_BLOCKS):
            pass
    return index, similarity


class NeighbourUnitPriceTransform(FoldTransform):
    """Per view, the similarity-weighted mean price per unit of a row's nearest allowed training rows, times
    the row's own total (module docstring). `candidates`: per view, nearest_train_rows' output."""

    def __init__(self, candidates: dict[str, tuple[np.ndarray, np.ndarray]], total_log: np.ndarray,
                 k: int = NEIGHBOURS, seed: int = 0, groups: np.ndarray | None = None, inner_folds: int = 5):
        self.candidates, self.total_log, self.k = candidates, total_log, k
        self.seed, self.groups, self.inner_folds = seed, groups, inner_folds
        self.names = [f"neighbour_{view}_unit_log_price" for view in candidates]

    def fit(self, rows: np.ndarray, y: np.ndarray) -> NeighbourUnitPriceTransform:
        rows = np.asarray(rows)
        n_total = len(self.total_log)
        self.unit_ = np.full(n_total + 1, np.nan)  # the last slot: "no candidate" (-1)
        self.unit_[rows] = np.log1p(np.asarray(y, dtype=float)) - self.total_log[rows]
        self.inner_ = np.full(n_total + 1, -2)  # -2: not a training row of this fold
        self.inner_[rows] = inner_folds(rows, self.inner_folds, self.seed, self.groups)
        return self

    def _values(self, rows: np.ndarray, own_inner: np.ndarray) -> np.ndarray:
        out = np.full((len(rows), len(self.candidates)), np.nan, dtype=np.float32)
        for column, (index, similarity) in enumerate(self.candidates.values()):
            cand = index[rows]
            allowed = (self.inner_[cand] >= 0) & (self.inner_[cand] != own_inner[:, None])
            unit = self.unit_[cand]
            allowed &= np.isfinite(unit)
            rank = np.cumsum(allowed, axis=1)
            use = allowed & (rank <= self.k)
            weight = np.where(use, np.nan_to_num(similarity[rows]), 0.0)
            total = weight.sum(axis=1)
            mean = np.divide((weight * np.nan_to_num(unit)).sum(axis=1), total, out=np.full(len(rows), np.nan),
                             where=total > 0)
            out[:, column] = mean + self.total_log[rows]
        return out

    def transform(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        own = self.inner_[rows]  # a training row: its inner fold; others -2, which excludes no training row
        return self._values(rows, np.where(own >= 0, own, -1))


def cached_nearest_train_rows(texts: Sequence[str], n_train: int, work_dir: str | Path, view: str
                              ) -> tuple[np.ndarray, np.ndarray]:
    """`nearest_train_rows`, kept in `<work_dir>/03_train/neighbours/` under a digest of the texts and the search
    settings: every later run (another learner, a resumed session) reads it instead of searching again. A new
    search replaces the view's older ones (of other texts: ~77 MB each at 150,000 rows, else they pile up)."""
    vectorizer = sorted((key, repr(value)) for key, value in char_vectorizer().get_params().items())
    settings = [SEARCH_VERSION, CANDIDATES, MAX_DF, MIN_COMMON_ROWS, n_train, vectorizer]
    digest = hashlib.sha256(json.dumps([*settings, list(texts)]).encode())
    path = stage_dir(work_dir, "03_train") / CACHE_FOLDER / f"{view}_{digest.hexdigest()[:DIGEST_CHARS]}.npz"
    if path.is_file() and (kept := _read_search(path, len(texts))) is not None:
        return kept
    index, similarity = nearest_train_rows(texts, n_train, desc=f"neighbours ({view})")
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as fh:
            np.savez(fh, index=index, similarity=similarity)
    _remove_older_searches(path, view)
    return index, similarity


def _remove_older_searches(kept: Path, view: str) -> None:
    """Delete `view`'s searches of other texts or settings beside `kept` (never another view's, never a writer's
    temporary file; a run of the same texts has the same name, so concurrent runs of them keep theirs)."""
    pattern = re.compile(rf"{re.escape(view)}_[0-9a-f]{{{DIGEST_CHARS}}}\.npz")
    for path in kept.parent.iterdir():
        if path.name != kept.name and pattern.fullmatch(path.name):
            path.unlink(missing_ok=True)  # missing: a concurrent run removed it first


def _read_search(path: Path, n_rows: int) -> tuple[np.ndarray, np.ndarray] | None:
    """The search kept in `path`; None, saying so, when the file is unreadable (cut short, garbled) or holds
    arrays of another shape than this search's (n_rows, CANDIDATES): it is searched again and replaced."""
    try:
        with np.load(path) as saved:
            index, similarity = saved["index"], saved["similarity"]
    except (OSError, ValueError, TypeError, EOFError, KeyError, zipfile.BadZipFile) as err:  # TypeError: an .npy
        print(f"{path} is unreadable ({type(err).__name__}: {err}): searching again")
        return None
    if index.shape != (n_rows, CANDIDATES) or similarity.shape != index.shape:
        print(f"{path} holds arrays of shape {index.shape}, {similarity.shape}, not ({n_rows}, {CANDIDATES}): "
              "searching again")
        return None
    return index, similarity


def neighbour_unit_transform(inputs: RunInputs) -> NeighbourUnitPriceTransform:
    """The `neighbour_unit` fold group of a run: the item-name and row-text views (module docstring)."""
    parsed = parsed_rows(inputs.both, inputs.schema)
    views = {"name": parsed["item_name"].fillna("").astype(str).tolist(), "text": inputs.texts}
    candidates = {view: cached_nearest_train_rows(texts, inputs.n_train, inputs.work_dir, view)
                  for view, texts in views.items()}
    return NeighbourUnitPriceTransform(candidates, total_quantity_log(parsed), seed=inputs.seed, groups=inputs.groups)
