"""TF-IDF fit on many row subsets of one list of texts (the folds of a run), from n-gram counts made once.

A fold's TfidfVectorizer counts the n-grams of its training rows, keeps the terms in at least min_df (at most
max_df) of them, at most max_features of the most frequent, and weighs them by idf; transforming the other rows
counts their n-grams again. Over a run's folds every text is analysed (pure Python, most of the time) once per
fold. `NgramCounts` analyses each text once (train and test rows alike: counts read no label); `fit(rows)` keeps
the terms the vectorizer would keep from those rows' counts (its own rule, ties at max_features broken the same
way) and weighs them with a TfidfTransformer of its settings: the same columns in the same order, values equal to
float32 rounding.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Sequence
from itertools import chain
from numbers import Integral

import numpy as np
from scipy import sparse
from sklearn.feature_extraction.text import TfidfTransformer, TfidfVectorizer
from sklearn.pipeline import FeatureUnion

CHUNK_TEXTS = 4096  # texts counted into Python lists before they become arrays (bounds the lists' memory)


def tfidf_parts(vectorizer) -> list[TfidfVectorizer] | None:
    """The TfidfVectorizers that make `vectorizer`'s columns (itself, or an unweighted FeatureUnion's parts, in
    order); None when counts cannot stand in for it (another transformer, a fixed vocabulary)."""
    parts = [vectorizer]
    if isinstance(vectorizer, FeatureUnion):
        if vectorizer.transformer_weights is not None:
            return None
        parts = [part for _, part in vectorizer.transformer_list]
    if parts and all(isinstance(part, TfidfVectorizer) and part.vocabulary is None for part in parts):
        return parts
    return None


def _word_ids(vectorizer: TfidfVectorizer, term_id: Callable[[str], int]) -> Callable[[str], Iterable[int]] | None:
    """For character n-grams within words ('char_wb'): text -> the ids of its n-grams, repeats included, as the
    vectorizer's analyzer makes them (its preprocessor, then each whitespace-separated word's n-grams), each
    distinct word's made once and kept. None for another analyzer."""
    grams = getattr(vectorizer, "_char_wb_ngrams", None)  # scikit-learn's own (private: 1.6.1 and 1.7 alike)
    if vectorizer.analyzer != "char_wb" or not callable(grams):  # another version without it: its analyzer
        return None
    prepare, decode = vectorizer.build_preprocessor(), vectorizer.decode
    known: dict[str, list[int]] = {}

    def ids_of(word: str) -> list[int]:
        ids = known.get(word)
        if ids is None:
            ids = known[word] = list(map(term_id, grams(word)))
        return ids

    return lambda text: chain.from_iterable(map(ids_of, prepare(decode(text)).split()))


class NgramCounts:
    """One TfidfVectorizer's n-gram counts of every text, counted once: `counts` (texts x terms, the terms in
    scikit-learn's column order, sorted; the vectorizer's dtype). Terms in fewer texts than an integer min_df are
    left out: no subset of the texts keeps them."""

    def __init__(self, vectorizer: TfidfVectorizer, texts: Sequence[str]):
        self.vectorizer = vectorizer
        analyze = vectorizer.build_analyzer()
        vocabulary: defaultdict[str, int] = defaultdict()
        vocabulary.default_factory = vocabulary.__len__  # a new term's id: the next one (as CountVectorizer's)
        term_id = vocabulary.__getitem__
        chunks: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (term ids, counts, terms per text)
        ids: list[int] = []
        values: list[int] = []
        lengths: list[int] = []
        word_ids = _word_ids(vectorizer, term_id)
        for row, text in enumerate(texts):
            if word_ids is None:
                counted = Counter(analyze(text))
                ids.extend(map(term_id, counted))
            else:
                counted = Counter(word_ids(text))
                ids.extend(counted)
            values.extend(counted.values())
            lengths.append(len(counted))
            if (row + 1) % CHUNK_TEXTS == 0 or row + 1 == len(texts):
                chunks.append((np.asarray(ids, dtype=np.int32), np.asarray(values, dtype=vectorizer.dtype),
                               np.asarray(lengths, dtype=np.int64)))
                ids, values, lengths = [], [], []
        frequency = np.zeros(len(vocabulary), dtype=np.int64)  # texts per term
        for chunk_ids, _, _ in chunks:
            frequency += np.bincount(chunk_ids, minlength=len(vocabulary))
        floor = max(vectorizer.min_df if isinstance(vectorizer.min_df, Integral) else 1, 1)
        kept = sorted((term, index) for term, index in vocabulary.items() if frequency[index] >= floor)
        del vocabulary, term_id, word_ids
        column = np.full(len(frequency), -1, dtype=np.int32)  # term id -> column; -1: left out
        column[np.fromiter((index for _, index in kept), dtype=np.int64, count=len(kept))] = np.arange(len(kept))
        self.n_terms = len(kept)
        del kept
        blocks = []
        for chunk_ids, chunk_values, chunk_lengths in chunks:
            columns = column[chunk_ids]
            keep = columns >= 0
            pointer = np.concatenate([[0], np.cumsum(keep)])[np.concatenate([[0], np.cumsum(chunk_lengths)])]
            block = sparse.csr_matrix((chunk_values[keep], columns[keep], pointer),
                                      shape=(len(chunk_lengths), self.n_terms), dtype=vectorizer.dtype)
            blocks.append(block)
        chunks.clear()
        self.counts = (sparse.vstack(blocks, format="csr") if blocks
                       else sparse.csr_matrix((0, self.n_terms), dtype=vectorizer.dtype))
        if vectorizer.binary:
            self.counts.data[:] = 1
        self.counts.sort_indices()

    def fit(self, rows: np.ndarray) -> tuple[np.ndarray, TfidfTransformer, sparse.csr_matrix] | None:
        """The vectorizer fit on `rows`: its columns (of `counts`), its TfidfTransformer and the rows' TF-IDF;
        None where the vectorizer's fit fails (no term left after min_df/max_df, max_df below min_df)."""
        vectorizer = self.vectorizer
        matrix = self.counts[np.asarray(rows)]
        n_doc = matrix.shape[0]
        high = vectorizer.max_df if isinstance(vectorizer.max_df, Integral) else vectorizer.max_df * n_doc
        low = vectorizer.min_df if isinstance(vectorizer.min_df, Integral) else vectorizer.min_df * n_doc
        if high < low:
            return None
        frequency = np.bincount(matrix.indices, minlength=matrix.shape[1])
        mask = (frequency > 0) & (frequency <= high) & (frequency >= low)  # > 0: a term of these rows at all
        limit = vectorizer.max_features
        if limit is not None and mask.sum() > limit:  # CountVectorizer._limit_features, on the same array
            totals = np.asarray(matrix.sum(axis=0)).ravel()
            most = (-totals[mask]).argsort()[:limit]
            chosen = np.zeros(len(mask), dtype=bool)
            chosen[np.where(mask)[0][most]] = True
            mask = chosen
        columns = np.flatnonzero(mask)
        if not len(columns):
            return None
        transformer = TfidfTransformer(norm=vectorizer.norm, use_idf=vectorizer.use_idf,
                                       smooth_idf=vectorizer.smooth_idf, sublinear_tf=vectorizer.sublinear_tf)
        tfidf = transformer.fit_transform(matrix[:, columns])
        return columns, transformer, tfidf

    def transform(self, rows: np.ndarray, columns: np.ndarray, transformer: TfidfTransformer) -> sparse.csr_matrix:
        """The TF-IDF of `rows` under a fit of `fit`."""
        return transformer.transform(self.counts[np.asarray(rows)][:, columns])

    @property
    def nbytes(self) -> int:
        return self.counts.data.nbytes + self.counts.indices.nbytes + self.counts.indptr.nbytes


class SharedTfidf:
    """A vectorizer (a TfidfVectorizer, or a FeatureUnion of them: tfidf_parts) over one list of texts, fit on many
    row subsets: each part's n-grams are counted once, on the first fit."""

    def __init__(self, vectorizer, texts: Sequence[str]):
        parts = tfidf_parts(vectorizer)
        if parts is None:
            raise ValueError(f"SharedTfidf needs a TfidfVectorizer or a FeatureUnion of them, got {vectorizer!r}")
        self.parts, self.texts = parts, texts
        self.counts_: list[NgramCounts] = []

    def count(self) -> SharedTfidf:
        """Count every part's n-grams in all the texts (once; a later call does nothing)."""
        if not self.counts_:
            self.counts_ = [NgramCounts(part, self.texts) for part in self.parts]
        return self

    def fit_transform(self, rows: np.ndarray) -> tuple[FittedTfidf, sparse.csr_matrix] | None:
        """The vectorizer fit on `rows` and those rows' TF-IDF (as its fit_transform); None where its fit fails."""
        fits = [counts.fit(rows) for counts in self.count().counts_]
        if any(fit is None for fit in fits):
            return None
        fitted = FittedTfidf([(counts, columns, transformer)
                              for counts, (columns, transformer, _) in zip(self.counts_, fits, strict=True)])
        return fitted, _hstack([tfidf for _, _, tfidf in fits])

    @property
    def nbytes(self) -> int:
        """Memory held by the counts."""
        return sum(counts.nbytes for counts in self.counts_)


class FittedTfidf:
    """A SharedTfidf fit on some rows: `transform(rows)` is the fit vectorizer's transform of those rows' texts."""

    def __init__(self, parts: list[tuple[NgramCounts, np.ndarray, TfidfTransformer]]):
        self.parts = parts

    @property
    def n_features(self) -> int:
        return sum(len(columns) for _, columns, _ in self.parts)

    def transform(self, rows: np.ndarray) -> sparse.csr_matrix:
        return _hstack([counts.transform(rows, columns, transformer) for counts, columns, transformer in self.parts])


def _hstack(blocks: list[sparse.csr_matrix]) -> sparse.csr_matrix:
    """Side by side, as FeatureUnion stacks its parts."""
    return blocks[0] if len(blocks) == 1 else sparse.hstack(blocks).tocsr()
