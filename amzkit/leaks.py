"""Leak and duplicate detection between train and test (roadmap Phase 6).

- `duplicate_report`: one row per test row with its train twin, if any: the same normalised item name
  (`exact_name`), TF-IDF cosine >= a threshold (`text`), the same image link (`image_url`), or a perceptual
  difference hash within a Hamming distance (`image_hash`). The TF-IDF is fit on train+test text (label-free)
  and compared in blocks, never as a dense n x n matrix.
- `summarize_report`: counts per kind and the share of test rows with a twin in train.
- `TwinPriceTransform`: the nearest training twin's log1p price as a 03_train fold feature; a training row
  never reads its own label (nor, with `groups`, that of a copy of the same product).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from amzkit.schema import Schema, get_schema, row_text
from amzkit.train import FoldTransform, product_names

# Report kinds, in priority order: a test row matched several ways is reported under the first.
KINDS = ("exact_name", "text", "image_url", "image_hash")
NO_MATCH = "none"
REPORT_COLUMNS = ("test_id", "train_id", "kind", "similarity", "twin_price", "kinds", "text_similarity")
HASH_BITS = 64
COLOUR_GRID = 4  # cells per side of the colour signature that goes with the (grayscale) dHash
COLOUR_TOLERANCE = 24.0  # RGB (0-255) difference per cell a re-saved copy stays within; more is another picture
MAX_HASH_MATCHES = 3  # a picture close to more train products' pictures than this is generic, not a photo of one
BLOCK_CELLS = 1 << 24  # similarity cells per block (64 MiB of float32)
MAX_DF = 0.5  # tokens in more than half the texts (boilerplate such as "Item Name") add cost, not evidence
MIN_ROWS_FOR_MAX_DF = 50


# --- image hashes --------------------------------------------------------------------------------------

def image_signature(path: str | None) -> tuple[int, np.ndarray] | None:
    """(64-bit difference hash, mean RGB of each cell of a 4x4 grid) of an image; None if unreadable.

    The dHash is a 9x8 grayscale resize with one bit per left<right pixel pair: it sees shapes, not colours,
    so the grid's colours go with it (a re-saved or resized copy keeps both; a recoloured pack shot does not).
    """
    from PIL import Image

    from amzkit.fetch import open_image

    img, status = open_image(path, draft_px=64)
    if status != "ok" or img is None:
        return None
    rgb = img.convert("RGB")
    pixels = np.asarray(rgb.convert("L").resize((9, 8), Image.Resampling.LANCZOS), dtype=np.int16)
    bits = (pixels[:, 1:] > pixels[:, :-1]).ravel()
    colour = np.asarray(rgb.resize((COLOUR_GRID, COLOUR_GRID), Image.Resampling.BOX), dtype=np.float32).ravel()
    return int(sum(1 << i for i, bit in enumerate(bits.tolist()) if bit)), colour


def dhash(path: str | None) -> int | None:
    """64-bit difference hash of an image (see image_signature); None if unreadable."""
    signature = image_signature(path)
    return None if signature is None else signature[0]


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return (int(a) ^ int(b)).bit_count()


def _nearest_hash(queries: np.ndarray, reference: np.ndarray, within: int = 0, groups: np.ndarray | None = None,
                  query_colours: np.ndarray | None = None,
                  reference_colours: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(index into reference, Hamming distance, how many references lie within `within` bits) of the closest
    reference hash per query hash (uint64 arrays); with `groups` (one label per reference, e.g. the product
    name) the count is of distinct groups, so copies of one product count once. With colours (grid colour
    rows), a candidate pair whose colours differ by more than COLOUR_TOLERANCE anywhere never matches."""
    index = np.full(len(queries), -1, dtype=np.int64)
    distance = np.full(len(queries), HASH_BITS + 1, dtype=np.int64)
    close = np.zeros(len(queries), dtype=np.int64)
    if len(reference) == 0:
        return index, distance, close
    block = max(1, BLOCK_CELLS // len(reference))
    for start in range(0, len(queries), block):
        diff = np.bitwise_count(queries[start:start + block, None] ^ reference[None, :]).astype(np.int64)
        if query_colours is not None and reference_colours is not None:
            rows, cols = np.nonzero(diff <= within)  # only candidate pairs are compared by colour
            gap = np.abs(query_colours[start + rows] - reference_colours[cols]).max(axis=1)
            diff[rows[gap > COLOUR_TOLERANCE], cols[gap > COLOUR_TOLERANCE]] = HASH_BITS + 1
        index[start:start + block] = diff.argmin(axis=1)
        distance[start:start + block] = diff.min(axis=1)
        near = diff <= within
        close[start:start + block] = near.sum(axis=1)
        if groups is not None:
            for row in np.flatnonzero(close[start:start + block] > 1):
                close[start + row] = len(np.unique(groups[near[row]]))
    return index, distance, close


# --- text similarity -----------------------------------------------------------------------------------

def _tfidf(texts: Sequence[str]):
    """(vectorizer, matrix): TF-IDF (word 1-2 grams, L2-normalised rows) fit on `texts` and their rows (text is
    tokenised once); rows' dot products are cosines. (None, None) when no text has a usable term."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    max_df = MAX_DF if len(texts) > MIN_ROWS_FOR_MAX_DF else 1.0
    for df in dict.fromkeys((max_df, 1.0)):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode",
                                     max_df=df, dtype=np.float32)
        try:
            return vectorizer, vectorizer.fit_transform(list(texts)).tocsr()
        except ValueError:  # every term pruned (or no terms at all)
            continue
    return None, None


def _nearest_text(queries, reference, query_keys: np.ndarray | None = None,
                  reference_keys: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(index into reference, cosine) of the most similar reference row per query row (sparse, L2-normalised).

    Pairs whose keys are equal (the same row, or copies of one product) are never matched; a query with no
    eligible reference row gets index -1 and similarity NaN. Works in blocks of at most BLOCK_CELLS cells.
    """
    n_ref = reference.shape[0]
    index = np.full(queries.shape[0], -1, dtype=np.int64)
    similarity = np.full(queries.shape[0], np.nan, dtype=np.float32)
    if n_ref == 0:
        return index, similarity
    reference_t = reference.T.tocsc()
    block = max(1, BLOCK_CELLS // n_ref)
    for start in range(0, queries.shape[0], block):
        stop = min(start + block, queries.shape[0])
        sims = (queries[start:stop] @ reference_t).toarray()
        if query_keys is not None and reference_keys is not None:
            sims[query_keys[start:stop, None] == reference_keys[None, :]] = -np.inf
        best = sims.argmax(axis=1)
        value = sims[np.arange(stop - start), best]
        ok = np.isfinite(value)
        index[start:stop] = np.where(ok, best, -1)
        similarity[start:stop] = np.where(ok, value, np.nan)
    return index, similarity


# --- the report ----------------------------------------------------------------------------------------

def _signatures(paths: Sequence[str | None] | None, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """Object array of dHash ints (None where there is no readable image) and grid colours (NaN there)."""
    hashes = np.full(n_rows, None, dtype=object)
    colours = np.full((n_rows, COLOUR_GRID * COLOUR_GRID * 3), np.nan, dtype=np.float32)
    if paths is None:
        return hashes, colours
    if len(paths) != n_rows:
        raise ValueError(f"image_paths has {len(paths)} paths for {n_rows} rows")
    for row, path in enumerate(paths):
        signature = image_signature(path) if path else None
        if signature is not None:
            hashes[row], colours[row] = signature
    return hashes, colours


def duplicate_report(train: pd.DataFrame, test: pd.DataFrame, schema: str | Schema,
                     image_paths: dict[str, Sequence[str | None]] | None = None, text_threshold: float = 0.9,
                     hash_distance: int = 4, max_hash_matches: int = MAX_HASH_MATCHES) -> pd.DataFrame:
    """One row per test row (test order): its train twin, how it was found, the similarity and the twin's price.

    `kind` is the first of KINDS that matched ('none' otherwise), `kinds` every kind that matched ('+'-joined);
    `similarity` is 1 for exact name/URL, the cosine for text, 1 - distance/64 for image hashes;
    `text_similarity` is the nearest train row's cosine whether or not it passes the threshold. An image hash
    within `hash_distance` of the images of more than `max_hash_matches` train products (distinct normalised
    names) is generic and matches nothing.
    """
    schema = get_schema(schema)
    n_test = len(test)
    train_ids = train[schema.id_column].to_numpy()
    prices = train[schema.target].to_numpy(dtype=float)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # kind -> (train index or -1, similarity)

    # exact_name: the same normalised item name (empty names never match)
    train_names, test_names = product_names(train, schema).to_numpy(), product_names(test, schema).to_numpy()
    first_of = pd.Series(np.arange(len(train)))[train_names != ""].groupby(train_names[train_names != ""]).first()
    index = pd.Series(test_names).map(first_of).fillna(-1).to_numpy(dtype=np.int64)
    found["exact_name"] = (index, np.where(index >= 0, 1.0, np.nan))

    # text: TF-IDF cosine to the nearest train row
    texts_train, texts_test = row_text(train, schema).tolist(), row_text(test, schema).tolist()
    vectorizer, matrix = _tfidf(texts_train + texts_test)
    if vectorizer is not None:
        nearest, cosine = _nearest_text(matrix[len(texts_train):], matrix[:len(texts_train)])
    else:
        nearest, cosine = np.full(n_test, -1, dtype=np.int64), np.full(n_test, np.nan, dtype=np.float32)
    text_similarity = cosine.astype(float)
    passed = np.nan_to_num(text_similarity, nan=-1.0) >= text_threshold
    found["text"] = (np.where(passed, nearest, -1), np.where(passed, text_similarity, np.nan))

    # image_url: the identical (stripped, non-empty) link
    if schema.image_column:
        links_train = train[schema.image_column].fillna("").astype(str).str.strip().to_numpy()
        links_test = test[schema.image_column].fillna("").astype(str).str.strip()
        first_link = pd.Series(np.arange(len(train)))[links_train != ""].groupby(links_train[links_train != ""]).first()
        index = links_test.where(links_test != "").map(first_link).fillna(-1).to_numpy(dtype=np.int64)
        found["image_url"] = (index, np.where(index >= 0, 1.0, np.nan))

    # image_hash: dHash within `hash_distance` bits
    if image_paths is not None:
        hashes_train, colours_train = _signatures(image_paths.get("train"), len(train))
        hashes_test, colours_test = _signatures(image_paths.get("test"), n_test)
        has_train = np.flatnonzero([h is not None for h in hashes_train])
        has_test = np.flatnonzero([h is not None for h in hashes_test])
        index, similarity = np.full(n_test, -1, dtype=np.int64), np.full(n_test, np.nan)
        if len(has_train) and len(has_test):
            nearest_hash, distance, n_close = _nearest_hash(
                hashes_test[has_test].astype(np.uint64), hashes_train[has_train].astype(np.uint64), hash_distance,
                train_names[has_train], colours_test[has_test], colours_train[has_train])
            # a picture close to many train products' pictures is generic (a plain pack shot), not a twin
            close = (distance <= hash_distance) & (n_close <= max_hash_matches)
            index[has_test[close]] = has_train[nearest_hash[close]]
            similarity[has_test[close]] = 1.0 - distance[close] / HASH_BITS
        found["image_hash"] = (index, similarity)

    report = pd.DataFrame({"test_id": test[schema.id_column].to_numpy(), "train_id": np.nan,
                           "kind": NO_MATCH, "similarity": np.nan, "twin_price": np.nan})
    report["train_id"] = report["train_id"].astype(object)
    matched = [[] for _ in range(n_test)]
    for kind in reversed(KINDS):  # lower priority first, so the first matching kind writes last
        if kind not in found:
            continue
        index, similarity = found[kind]
        hit = np.flatnonzero(index >= 0)
        report.loc[hit, "train_id"] = train_ids[index[hit]]
        report.loc[hit, "kind"] = kind
        report.loc[hit, "similarity"] = similarity[hit]
        report.loc[hit, "twin_price"] = prices[index[hit]]
        for row in hit.tolist():
            matched[row].insert(0, kind)
    report["kinds"] = ["+".join(kinds) for kinds in matched]
    report["text_similarity"] = text_similarity
    if report["train_id"].notna().all():
        report["train_id"] = report["train_id"].astype(train_ids.dtype)
    return report[list(REPORT_COLUMNS)]


def summarize_report(report: pd.DataFrame) -> dict:
    """Rows per reported kind, rows matched by each kind at all, and the share of test rows with a twin."""
    n_rows = len(report)
    with_twin = int((report["kind"] != NO_MATCH).sum())
    matched_any = {kind: int(report["kinds"].str.split("+").map(lambda ks, k=kind: k in ks).sum()) for kind in KINDS}
    return {
        "test_rows": n_rows,
        "by_kind": {kind: int((report["kind"] == kind).sum()) for kind in (*KINDS, NO_MATCH)},
        "matched_by": matched_any,
        "with_twin": with_twin,
        "twin_share": with_twin / n_rows if n_rows else 0.0,
    }


# --- a fold feature ------------------------------------------------------------------------------------

class TwinPriceTransform(FoldTransform):
    """log1p price of the nearest training twin by TF-IDF cosine (NaN below `threshold`), and that cosine.

    The TF-IDF is fit on the training fold. Training rows search the other training rows only: never
    themselves and, with `groups` (e.g. normalised product names), never a row of their own group. Other
    rows search all training rows.
    """

    def __init__(self, texts: list[str], threshold: float = 0.9, groups: np.ndarray | None = None):
        self.texts, self.threshold = texts, threshold
        self.groups = None if groups is None else np.unique(np.asarray(groups), return_inverse=True)[1].ravel()
        if self.groups is not None and len(self.groups) != len(texts):
            raise ValueError(f"groups has {len(self.groups)} labels for {len(texts)} texts")
        self.names = ["twin_log_price", "twin_similarity"]

    def _features(self, index: np.ndarray, similarity: np.ndarray) -> np.ndarray:
        out = np.full((len(index), 2), np.nan, dtype=np.float32)
        out[:, 1] = similarity
        twin = (index >= 0) & (np.nan_to_num(similarity, nan=-1.0) >= self.threshold)
        out[twin, 0] = self.log_[index[twin]]
        return out

    def fit(self, rows: np.ndarray, y: np.ndarray) -> TwinPriceTransform:
        rows = np.asarray(rows)
        self.rows_, self.log_ = rows, np.log1p(np.asarray(y, dtype=float))
        self.vectorizer_, self.reference_ = _tfidf([self.texts[i] for i in rows])
        if self.vectorizer_ is None:
            self.train_values_ = {r: np.full(2, np.nan, dtype=np.float32) for r in rows.tolist()}
            return self
        keys = rows if self.groups is None else self.groups[rows]
        index, similarity = _nearest_text(self.reference_, self.reference_, keys, keys)
        self.train_values_ = dict(zip(rows.tolist(), self._features(index, similarity), strict=True))
        return self

    def transform(self, rows: np.ndarray) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.full((len(rows), 2), np.nan, dtype=np.float32)
        known = np.array([r in self.train_values_ for r in rows.tolist()], dtype=bool)
        if known.any():
            out[known] = np.stack([self.train_values_[r] for r in rows[known].tolist()])
        if (~known).any() and self.vectorizer_ is not None:
            queries = self.vectorizer_.transform([self.texts[i] for i in rows[~known]])
            out[~known] = self._features(*_nearest_text(queries, self.reference_))
        return out


# --- the notebook section ------------------------------------------------------------------------------

def cached_image_paths(data: dict[str, pd.DataFrame], schema: Schema, data_dir, work_dir) -> dict | None:
    """Per split, the image file 01 cached (or the local file) for each row; None if the schema has no images.

    Never downloads: rows 01 did not fetch get None (and no image hash).
    """
    from pathlib import Path

    from amzkit.fetch import cached_images

    if not schema.image_column:
        return None
    return {split: cached_images(data[split][schema.image_column], Path(data_dir), Path(work_dir) / "image_cache")
            ["path"].tolist() for split in ("train", "test")}


def leak_report(data: dict[str, pd.DataFrame], schema: str | Schema, out_dir, image_paths: dict | None = None,
                text_threshold: float = 0.9, hash_distance: int = 4,
                max_hash_matches: int = MAX_HASH_MATCHES) -> tuple[pd.DataFrame, dict]:
    """duplicate_report + summarize_report for the competition's train/test, saved as leak_report.csv/.json."""
    from pathlib import Path

    from amzkit.io import write_csv, write_json

    report = duplicate_report(data["train"], data["test"], schema, image_paths, text_threshold, hash_distance,
                              max_hash_matches)
    summary = {**summarize_report(report), "text_threshold": text_threshold, "hash_distance": hash_distance,
               "max_hash_matches": max_hash_matches,
               "image_hashes": image_paths is not None}
    write_csv(report, Path(out_dir) / "leak_report.csv")
    write_json(Path(out_dir) / "leak_report.json", summary)
    return report, summary


def plot_leak_report(report: pd.DataFrame, summary: dict, path):
    """Test rows per twin kind, and the nearest train text's cosine for every test row (threshold marked)."""
    import matplotlib.pyplot as plt

    from amzkit.io import save_figure

    fig, (left, right) = plt.subplots(1, 2, figsize=(11, 3.8))
    kinds = [*KINDS, NO_MATCH]
    counts = [summary["by_kind"].get(k, 0) for k in kinds]
    left.bar(kinds, counts, color=["C3", "C1", "C2", "C4", "C7"])
    left.set(ylabel="test rows", title=f"train twin found for {summary['with_twin']:,} of {summary['test_rows']:,} "
             f"test rows ({summary['twin_share']:.1%})")
    left.tick_params(axis="x", rotation=20)
    similarity = report["text_similarity"].dropna()
    right.hist(similarity, bins=50, range=(0, 1), color="C0")
    right.axvline(summary["text_threshold"], color="k", ls="--", lw=1, label=f"threshold {summary['text_threshold']}")
    right.set(xlabel="cosine to the nearest train text (TF-IDF)", ylabel="test rows", yscale="log",
              title="how close is each test row's nearest train row")
    right.legend()
    save_figure(fig, path)
    return fig
