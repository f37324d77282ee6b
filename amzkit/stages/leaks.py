"""Leak and duplicate detection between train and test (the roadmap's "final push": leak detection).

- `duplicate_report`: one row per test row with its train twin, if any: the same normalised item name
  (`exact_name`), TF-IDF cosine >= a threshold (`text`), the same image link (`image_url`), or a perceptual
  difference hash within a Hamming distance (`image_hash`). The TF-IDF is fit on train+test text (label-free)
  and compared in blocks, never as a dense n x n matrix.
- `summarize_report`: counts per kind and the share of test rows with a twin in train.
- The twin's price as a 03_train fold feature is `ml.encodings.TwinPriceTransform` (group `twin_price`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from amzkit.core.io import save_figure, write_csv, write_json
from amzkit.core.params import Param, Parameters
from amzkit.core.schema import Schema, get_schema, row_text
from amzkit.images.fetch import cached_images
from amzkit.images.hashes import HASH_BITS, nearest_hash, signatures
from amzkit.images.tables import ImageSignatures, read_image_tables
from amzkit.ml.encodings import TWIN_THRESHOLD
from amzkit.text.features import has_product_words, parsed_rows
from amzkit.text.names import normalized_name
from amzkit.text.similarity import COSINE_TOLERANCE, nearest_text, tfidf_rows

# Report kinds, in priority order: a test row matched several ways is reported under the first.
KINDS = ("exact_name", "text", "image_url", "image_hash")
NO_MATCH = "none"
REPORT_COLUMNS = ("test_id", "train_id", "kind", "similarity", "twin_price", "kinds", "text_similarity")
PARAMETERS = Parameters(
    Param("leak_report", True, "report train/test twins (same name, text, image link, image hash)"),
    Param("leak_text_threshold", TWIN_THRESHOLD,
          "TF-IDF cosine from which a test row's nearest train text is its twin (0..1]", low=0, low_open=True, high=1),
    Param("leak_image_hash", True, "compare images by perceptual hash (from 01's image cache)"),
    Param("leak_hash_distance", 4, "differing bits (of 64) within which two image hashes match", low=0, high=64),
    Param("leak_max_hash_matches", 3, "a picture matching more train products than this is generic: no twin", low=1),
)
D = PARAMETERS.defaults


def duplicate_report(train: pd.DataFrame, test: pd.DataFrame, schema: str | Schema,
                     image_paths: dict[str, Sequence[str | None]] | None = None,
                     text_threshold: float = D.leak_text_threshold,
                     hash_distance: int = D.leak_hash_distance,
                     max_hash_matches: int = D.leak_max_hash_matches) -> pd.DataFrame:
    """One row per test row (test order): its train twin, how it was found, the similarity and the twin's price.

    `kind` is the first of KINDS that matched ('none' otherwise), `kinds` every kind that matched ('+'-joined);
    `similarity` is 1 for exact name/URL, the cosine for text, 1 - distance/64 for image hashes;
    `text_similarity` is the nearest train row's cosine whether or not it passes the threshold (0 for a row whose
    name, bullets and description hold no word: its Value/Unit lines alone make no text twin). A picture of more
    than `max_hash_matches` train products (distinct normalised names) is generic and matches nothing: an image
    link shared by them (its products counted in train and test: a placeholder picture on 3 train products and a
    test one is generic), or an image hash within `hash_distance` of theirs.
    """
    schema = get_schema(schema)
    PARAMETERS.validate(leak_text_threshold=text_threshold, leak_hash_distance=hash_distance,
                        leak_max_hash_matches=max_hash_matches)
    n_test = len(test)
    train_ids = train[schema.id_column].to_numpy()
    prices = train[schema.target].to_numpy(dtype=float)
    found: dict[str, tuple[np.ndarray, np.ndarray]] = {}  # kind -> (train index or -1, similarity)

    # exact_name: the same normalised item name (a name without a letter, such as '1' or '', never matches)
    (train_names, train_worded), (test_names, test_worded) = _product_text(train, schema), _product_text(test, schema)
    lettered = pd.Series(train_names).str.contains("[a-z]").to_numpy()
    first_of = pd.Series(np.arange(len(train)))[lettered].groupby(train_names[lettered]).first()
    index = pd.Series(test_names).map(first_of).fillna(-1).to_numpy(dtype=np.int64)
    found["exact_name"] = (index, np.where(index >= 0, 1.0, np.nan))

    # text: TF-IDF cosine to the nearest train row
    texts_train, texts_test = row_text(train, schema).tolist(), row_text(test, schema).tolist()
    vectorizer, matrix = tfidf_rows(texts_train + texts_test)
    if vectorizer is not None:  # a row without product words (only Value/Unit lines) is nobody's twin
        matrix = matrix.multiply(np.concatenate([train_worded, test_worded])[:, None]).tocsr()
        nearest, cosine = nearest_text(matrix[len(texts_train):], matrix[:len(texts_train)])
    else:
        nearest, cosine = np.full(n_test, -1, dtype=np.int64), np.full(n_test, np.nan, dtype=np.float32)
    text_similarity = np.minimum(cosine.astype(float), 1.0)  # float32 rounding put identical texts up to 1.000007
    # a threshold near 1 (identical texts) gives way by the float32 rounding, which an identical copy can miss 1 by
    passed = np.nan_to_num(text_similarity, nan=-1.0) >= min(text_threshold, 1.0 - COSINE_TOLERANCE)
    found["text"] = (np.where(passed, nearest, -1), np.where(passed, text_similarity, np.nan))

    # image_url: the identical (stripped, non-empty) link
    if schema.image_column:
        links_train = train[schema.image_column].fillna("").astype(str).str.strip().to_numpy()
        links_test = test[schema.image_column].fillna("").astype(str).str.strip()
        linked = links_train != ""
        by_link = pd.DataFrame({"row": np.flatnonzero(linked), "name": train_names[linked]}).groupby(
            links_train[linked])
        # a link on many products' pages is generic (a placeholder picture): products counted in both files, so a
        # link on 3 train products and another in test is not taken as the test row's twin
        names_per_link = pd.concat([pd.Series(train_names[linked], index=links_train[linked]),
                                    pd.Series(test_names, index=links_test.to_numpy())[links_test.to_numpy() != ""]])
        specific = names_per_link.groupby(level=0).nunique().reindex(by_link.size().index) <= max_hash_matches
        first_link = by_link["row"].first()[specific]
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
            closest, distance, n_close = nearest_hash(
                hashes_test[has_test].astype(np.uint64), hashes_train[has_train].astype(np.uint64), hash_distance,
                train_names[has_train], colours_test[has_test], colours_train[has_train])
            # a picture close to many train products' pictures is generic (a plain pack shot), not a twin
            close = (distance <= hash_distance) & (n_close <= max_hash_matches)
            index[has_test[close]] = has_train[closest[close]]
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


def _product_text(frame: pd.DataFrame, schema: Schema) -> tuple[np.ndarray, np.ndarray]:
    """(normalised item name, whether the name, bullets or description hold a word) per row."""
    parsed = parsed_rows(frame, schema)
    names = parsed["item_name"].fillna("").astype(str)
    return names.map(normalized_name).to_numpy(), has_product_words(parsed)


def _signatures(paths_or_signatures, n_rows: int) -> tuple[np.ndarray, np.ndarray]:
    """(hashes, grid colours) of a split: 01's precomputed signatures as they are, else hashed from the paths."""
    if isinstance(paths_or_signatures, ImageSignatures):
        if len(paths_or_signatures) != n_rows:
            raise ValueError(f"image signatures for {len(paths_or_signatures)} rows, but the split has {n_rows}")
        return paths_or_signatures.hashes, paths_or_signatures.colours
    return signatures(paths_or_signatures, n_rows)


def cached_image_paths(data: dict[str, pd.DataFrame], schema: Schema, data_dir, work_dir) -> dict | None:
    """Per split, 01's image signatures (amzkit.images.tables, when 01 wrote them for these rows), else the image
    file 01 cached (or the local file) for each row; None if the schema has no images.

    Never downloads: rows 01 did not fetch get None (and no image hash).
    """
    if not schema.image_column:
        return None
    out = {}
    for split in ("train", "test"):
        links = data[split][schema.image_column]
        tables = read_image_tables(work_dir, split, links)
        out[split] = tables.signatures if tables is not None else cached_images(
            links, Path(data_dir), Path(work_dir) / "image_cache")["path"].tolist()
    return out


def leak_report(data: dict[str, pd.DataFrame], schema: str | Schema, out_dir, image_paths: dict | None = None,
                text_threshold: float = D.leak_text_threshold, hash_distance: int = D.leak_hash_distance,
                max_hash_matches: int = D.leak_max_hash_matches) -> tuple[pd.DataFrame, dict]:
    """duplicate_report + summarize_report for the competition's train/test, saved as leak_report.csv/.json.

    `image_hashes` in the summary is whether images were compared at all: some train and some test row has an
    image hash (`image_hashed_rows` counts them per split); a text-only run or an empty image cache says False.
    """
    hashed = {}
    if image_paths is not None:  # hashed once here, so the report and the counts read the same signatures
        image_paths = {split: ImageSignatures(*_signatures(image_paths.get(split), len(data[split])))
                       for split in ("train", "test")}
        hashed = {split: int(sum(h is not None for h in image_paths[split].hashes)) for split in ("train", "test")}
    report = duplicate_report(data["train"], data["test"], schema, image_paths, text_threshold, hash_distance,
                              max_hash_matches)
    summary = {**summarize_report(report), "text_threshold": text_threshold, "hash_distance": hash_distance,
               "max_hash_matches": max_hash_matches,
               "image_hashes": bool(hashed) and min(hashed.values()) > 0, "image_hashed_rows": hashed or None}
    write_csv(report, Path(out_dir) / "leak_report.csv")
    write_json(Path(out_dir) / "leak_report.json", summary)
    return report, summary


def plot_leak_report(report: pd.DataFrame, summary: dict, path):
    """Test rows per twin kind, and the nearest train text's cosine for every test row (threshold marked)."""
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
