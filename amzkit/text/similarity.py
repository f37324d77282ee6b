"""Near-duplicate text search: TF-IDF rows compared in blocks, never as a dense n x n matrix."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer

BLOCK_CELLS = 1 << 24  # similarity cells per block (64 MiB of float32)
MAX_DF = 0.5  # tokens in more than half the texts (boilerplate such as "Item Name") add cost, not evidence
MIN_ROWS_FOR_MAX_DF = 50
# float32 cosines of two identical TF-IDF rows miss 1 on either side (0.999993 to 1.000007 on the 2025 dev rows):
# a threshold above 1 - COSINE_TOLERANCE is read as that, or a threshold of 1 misses about half the identical texts
COSINE_TOLERANCE = 1e-4


def tfidf_rows(texts: Sequence[str]):
    """(vectorizer, matrix): TF-IDF (word 1-2 grams, L2-normalised rows) fit on `texts` and their rows (text is
    tokenised once); rows' dot products are cosines. (None, None) when no text has a usable term."""
    max_df = MAX_DF if len(texts) > MIN_ROWS_FOR_MAX_DF else 1.0
    for df in dict.fromkeys((max_df, 1.0)):
        vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, strip_accents="unicode",
                                     max_df=df, dtype=np.float32)
        try:
            return vectorizer, vectorizer.fit_transform(list(texts)).tocsr()
        except ValueError:  # every term pruned (or no terms at all)
            continue
    return None, None


def nearest_text(queries, reference, query_keys: np.ndarray | None = None,
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
