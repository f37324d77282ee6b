"""TF-IDF from n-gram counts made once (ml.tfidf_counts): the vectorizer's own columns and values on any rows."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.feature_extraction.text import CountVectorizer, TfidfVectorizer
from sklearn.pipeline import FeatureUnion

from amzkit.core.schema import load_split
from amzkit.ml.stacking import name_vectorizer, text_vectorizer
from amzkit.ml.tfidf_counts import SharedTfidf, tfidf_parts
from amzkit.text.catalog import parse_catalog_column


def _tied_texts(n: int = 120, seed: int = 0) -> list[str]:
    """Texts of a few words drawn evenly: many words and bigrams share one total count (ties at max_features)."""
    rng = np.random.default_rng(seed)
    words = [f"w{i:02d}" for i in range(30)]
    return [" ".join(rng.choice(words, rng.integers(2, 7))) for _ in range(n)]


def _same_as_the_vectorizer(make, texts: list[str], rows: np.ndarray, other: np.ndarray,
                            shared: SharedTfidf | None = None) -> None:
    plain = make()
    expected = plain.fit_transform([texts[i] for i in rows])
    expected.sort_indices()
    fitted, matrix = (shared or SharedTfidf(make(), texts)).fit_transform(rows)
    assert matrix.shape == expected.shape and fitted.n_features == expected.shape[1]
    np.testing.assert_allclose(matrix.toarray(), expected.toarray(), rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(fitted.transform(other).toarray(),
                               plain.transform([texts[i] for i in other]).toarray(), rtol=1e-6, atol=1e-7)


WORDS_TIED = lambda: TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=40, sublinear_tf=True,  # noqa: E731
                                     dtype=np.float32)


@pytest.mark.parametrize("make", [
    WORDS_TIED,
    lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=3, max_features=25, dtype=np.float32),
    lambda: TfidfVectorizer(min_df=0.05, max_df=0.9, max_features=12, binary=True, norm="l1", smooth_idf=False),
    lambda: TfidfVectorizer(ngram_range=(1, 2), max_df=12, use_idf=False, sublinear_tf=True),
    lambda: FeatureUnion([("words", WORDS_TIED()), ("chars", TfidfVectorizer(analyzer="char", ngram_range=(1, 3),
                                                                             max_features=30, dtype=np.float32))]),
])
def test_counts_made_once_give_each_fold_the_vectorizers_own_fit(make):
    """Several folds of one text list, the training rows shuffled: columns, values and the other rows' transform as
    the vectorizer's fit on those rows, with ties at max_features broken its way."""
    texts = _tied_texts()
    shared = SharedTfidf(make(), texts)
    rng = np.random.default_rng(1)
    for _ in range(3):
        order = rng.permutation(len(texts))
        _same_as_the_vectorizer(make, texts, order[:90], order[90:], shared)


def test_the_tied_case_really_ties_at_max_features():
    """The words case above cuts through a run of equal totals, so the tie-break decides which terms stay."""
    texts = _tied_texts()
    counts = CountVectorizer(ngram_range=(1, 2), min_df=2).fit_transform(texts[:90])
    totals = np.sort(np.asarray(counts.sum(axis=0)).ravel())[::-1]
    assert totals[WORDS_TIED().max_features - 1] == totals[WORDS_TIED().max_features]


@pytest.mark.parametrize("strip_accents", [None, "unicode"])
def test_character_ngrams_within_words_read_words_as_the_analyzer_does(strip_accents):
    """char_wb n-grams are made once per distinct word: words split at any whitespace (tabs, line ends, runs,
    no-break and em spaces), after the vectorizer's lowercasing and accent stripping."""
    rng = np.random.default_rng(3)
    pieces = ["Caf\u00e9", "CAFE", "\u0130stanbul", "stra\u00dfe", "x", "ab", "a-b", "1.5oz", "\u00c9T\u00c9"]
    gaps = [" ", "  ", "\t", "\n", "\u00a0", "\u2003", " \n\t "]
    texts = ["".join(str(rng.choice(pieces)) + str(rng.choice(gaps)) for _ in range(rng.integers(1, 8)))
             for _ in range(60)]
    make = lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(1, 4), strip_accents=strip_accents,  # noqa: E731
                                   dtype=np.float32)
    _same_as_the_vectorizer(make, texts, np.arange(40), np.arange(40, 60))


def test_a_scikit_learn_without_its_private_char_wb_helper_counts_through_the_analyzer(monkeypatch):
    """The per-word shortcut calls scikit-learn's private _char_wb_ngrams; a version without it (a future one) is
    counted through the vectorizer's own analyzer, to the same values, not stopped."""
    make = lambda: TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, dtype=np.float32)  # noqa: E731
    texts = _tied_texts()
    analyzer = make().build_analyzer()  # the analysis itself, made while the helper is there
    monkeypatch.setattr(TfidfVectorizer, "_char_wb_ngrams", None)
    monkeypatch.setattr(TfidfVectorizer, "build_analyzer", lambda self: analyzer)
    _same_as_the_vectorizer(make, texts, np.arange(90), np.arange(90, len(texts)))


def test_rows_with_no_term_left_give_no_fit_as_the_vectorizer_fails():
    texts = ["aa bb", "cc dd", "aa cc", "zz"]
    shared = SharedTfidf(TfidfVectorizer(min_df=2), texts)
    with pytest.raises(ValueError):
        TfidfVectorizer(min_df=2).fit([texts[i] for i in (0, 1)])
    assert shared.fit_transform(np.array([0, 1])) is None  # each term once in these rows
    assert shared.fit_transform(np.array([0, 2])) is not None
    assert SharedTfidf(TfidfVectorizer(), ["", "!"]).fit_transform(np.array([0, 1])) is None  # no token at all


def test_only_tfidf_vectorizers_with_their_own_vocabulary_are_shared():
    words = TfidfVectorizer()
    assert tfidf_parts(words) == [words]
    assert tfidf_parts(FeatureUnion([("a", words)])) == [words]
    assert tfidf_parts(FeatureUnion([("a", words)], transformer_weights={"a": 2.0})) is None
    assert tfidf_parts(TfidfVectorizer(vocabulary=["aa"])) is None
    assert tfidf_parts(CountVectorizer()) is None
    with pytest.raises(ValueError, match="TfidfVectorizer"):
        SharedTfidf(CountVectorizer(), ["aa"])


def test_real_rows_get_the_ridge_vectorizers_own_tfidf(shared_data):
    """Real 2025 rows, the ridge_oof group's vectorizers (and the text one with max_features that bind)."""
    rows = load_split(shared_data / "amz25_dev.csv", "amazon2025", "train").iloc[:900]
    texts = rows["catalog_content"].tolist()
    names = parse_catalog_column(rows["catalog_content"])["item_name"].fillna("").astype(str).tolist()
    order = np.random.default_rng(2).permutation(len(texts))
    fit, other = np.sort(order[:700]), np.sort(order[700:])
    _same_as_the_vectorizer(name_vectorizer, names, fit, other)
    _same_as_the_vectorizer(text_vectorizer, texts, fit, other)
    binding = lambda: text_vectorizer().set_params(words__max_features=4000, chars__max_features=9000)  # noqa: E731
    _same_as_the_vectorizer(binding, texts, order[:700], order[700:])
