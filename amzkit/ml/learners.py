"""The learner registry (a data table) and the learners that are not trees: TF-IDF ridge and embedding kNN.

| name          | inputs                                          | needs                   |
|---------------|-------------------------------------------------|-------------------------|
| `lightgbm`    | the run's feature set (features + embeddings)   |                         |
| `xgboost`     | the run's feature set                           | `pip install xgboost`   |
| `catboost`    | the run's feature set                           | `pip install catboost`  |
| `ridge_tfidf` | row text: TF-IDF words 1-2 + chars 3-5          |                         |
| `knn`         | an 01_extract embedding run (ml.knn)            |                         |
| `mlp`         | embedding runs + numeric feature groups (torch) | torch                   |
| `sparse_mlp`  | TF-IDF n-grams (sparse) + numeric feature groups | torch                  |
| `finetune`    | the catalog text, a transformers encoder        | torch, transformers     |

Every learner follows ml.base.Learner and runs in the one CV loop (ml.cv), so 04_ensemble blends any of them.
"""

from __future__ import annotations

import ast
import difflib
import importlib
import importlib.util
import inspect
import re
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import Ridge
from sklearn.pipeline import FeatureUnion

from amzkit.core.params import number_from_text
from amzkit.ml.base import Learner, RunInputs, floor_prediction
from amzkit.ml.knn import KNN_BLOCK_ROWS, NeighbourSpace


class RidgeTfidf(Learner):
    """Ridge regression of log1p(target) on TF-IDF word 1-2 grams (+ char 3-5 grams), fit per training fold."""

    name = "ridge_tfidf"

    def __init__(self, alpha: float = 1.0, max_features: int = 200_000, char_ngrams: bool = True):
        self.alpha = alpha
        self.max_features = max_features
        self.char_ngrams = char_ngrams

    def _vectorizer(self):
        words = TfidfVectorizer(ngram_range=(1, 2), min_df=2, max_features=self.max_features, sublinear_tf=True,
                                strip_accents="unicode", dtype=np.float32)
        if not self.char_ngrams:
            return words
        chars = TfidfVectorizer(analyzer="char_wb", ngram_range=(3, 5), min_df=3, max_features=self.max_features,
                                sublinear_tf=True, dtype=np.float32)
        return FeatureUnion([("words", words), ("chars", chars)])

    def fit(self, rows, y, weight=None) -> RidgeTfidf:
        self._check_prepared()
        texts = self.inputs_.texts
        self.vectorizer_ = self._vectorizer().fit([texts[i] for i in rows])
        matrix = self.vectorizer_.transform([texts[i] for i in rows])
        self.model_ = Ridge(alpha=self.alpha, solver="sag" if matrix.shape[0] > 20_000 else "auto",
                            random_state=0).fit(matrix, np.log1p(np.asarray(y, dtype=float)), sample_weight=weight)
        return self

    def predict(self, rows) -> np.ndarray:
        texts = self.inputs_.texts
        matrix = self.vectorizer_.transform([texts[i] for i in rows])
        return floor_prediction(np.expm1(self.model_.predict(matrix)))

    def describe(self) -> dict:
        return {**super().describe(), "features": ["text"], "embeddings": []}


class KnnEmbedding(Learner):
    """kNN regression on an embedding run: the mean log1p target of the k nearest training rows (ml.knn), each
    weighted by its sample weight when the fit has them (pseudo-labelled rows).

    Rows without an embedding (NaN, or ok False) neither serve as neighbours nor get one: they take the training
    median.
    """

    name = "knn"

    def __init__(self, embedding: str = "", k: int = 20, block_rows: int = KNN_BLOCK_ROWS):
        self.embedding = embedding
        self.k = k
        self.block_rows = block_rows

    def check_settings(self) -> None:
        if not self.embedding:
            raise ValueError("the knn learner needs embedding='<01_extract run>' (e.g. 'minilm' or 'tfidf-svd'): "
                             "-p learner_params '{\"embedding\": \"minilm\"}'")
        if isinstance(self.block_rows, bool) or not isinstance(self.block_rows, int) or self.block_rows < 1:
            raise ValueError(f"the knn learner's block_rows must be a whole number >= 1, got {self.block_rows!r}")
        if isinstance(self.k, bool) or not isinstance(self.k, int) or self.k < 1:
            raise ValueError(f"the knn learner needs k, a whole number of neighbours >= 1, got {self.k!r}"
                             + (" (a string: write it without quotes in learner_params, e.g. {\"k\": 20})"
                                if isinstance(self.k, str) else ""))

    def prepare(self, inputs: RunInputs) -> KnnEmbedding:
        self.check_settings()
        self.inputs_ = inputs
        self.matrix_, self.ok_ = inputs.embedding(self.embedding)
        return self

    def prepared_attributes(self) -> set[str]:
        return {"inputs_", "matrix_", "ok_"}

    def _usable(self, rows: np.ndarray) -> np.ndarray:
        return np.isfinite(self.matrix_[rows]).all(axis=1) & np.asarray(self.ok_[rows], dtype=bool)

    def fit(self, rows, y, weight=None) -> KnnEmbedding:
        self._check_prepared()
        rows = np.asarray(rows)
        y_log = np.log1p(np.asarray(y, dtype=np.float64))
        self.fallback_ = float(np.median(y_log))
        usable = self._usable(rows)
        if not usable.any():
            raise ValueError(f"the knn learner found no training row with an embedding in run {self.embedding!r}")
        if self.k >= usable.sum():
            below = min(20, max(1, int(usable.sum()) // 5))  # 20 (the default) only where a fold has the rows
            raise ValueError(f"the knn learner's k {self.k} is not below the {int(usable.sum())} training rows of a "
                             f"fold with an embedding in run {self.embedding!r}: every row would get the mean of "
                             "them all (the constant's score). Pass a k well below it, e.g. -p learner_params "
                             f"'{{\"embedding\": \"{self.embedding}\", \"k\": {below}}}'")
        self.space_ = NeighbourSpace(self.block_rows).fit(self.matrix_[rows[usable]])
        self.reference_ = self.space_.rows(self.matrix_[rows[usable]])
        self.y_log_ = y_log[usable]
        self.weight_ = None if weight is None else np.asarray(weight, dtype=np.float64)[usable]
        return self

    def predict(self, rows) -> np.ndarray:
        rows = np.asarray(rows)
        out = np.full(len(rows), self.fallback_)
        query = np.flatnonzero(self._usable(rows))
        if len(query):
            index, _ = self.space_.nearest(self.space_.rows(self.matrix_[rows[query]]), self.reference_, self.k)
            if self.weight_ is None:
                out[query] = self.y_log_[index].mean(axis=1)
            else:  # pseudo-labelled rows count by their weight
                weights = self.weight_[index]
                out[query] = (self.y_log_[index] * weights).sum(axis=1) / np.maximum(weights.sum(axis=1), 1e-12)
        return floor_prediction(np.expm1(out))

    def describe(self) -> dict:
        return {**super().describe(), "features": [], "embeddings": [self.embedding], "k": self.k,
                "weighted": True}  # neighbours count by sample weight: folds kept before that are not resumed


@dataclass(frozen=True)
class LearnerEntry:
    """One registry row: where the learner class lives and the packages it needs beyond the kit's own."""

    name: str
    target: str  # "module:Class"
    requires: tuple[str, ...] = ()
    what: str = ""
    # "module:function" checking the learner's settings from its parameters where its module is heavy (torch): the
    # rules its check_settings applies, for kaggle build (check_learner_settings)
    settings: str = ""

    def load(self) -> type[Learner]:
        module, _, cls = self.target.partition(":")
        return getattr(importlib.import_module(module), cls)


LEARNERS: dict[str, LearnerEntry] = {entry.name: entry for entry in (
    LearnerEntry("lightgbm", "amzkit.ml.trees:LightGBMLearner", (), "LightGBM on the feature set (presets)"),
    LearnerEntry("xgboost", "amzkit.ml.trees:XGBoostLearner", ("xgboost",), "XGBoost on the feature set"),
    LearnerEntry("catboost", "amzkit.ml.trees:CatBoostLearner", ("catboost",), "CatBoost on the feature set"),
    LearnerEntry("ridge_tfidf", "amzkit.ml.learners:RidgeTfidf", (), "ridge on TF-IDF words + chars"),
    LearnerEntry("knn", "amzkit.ml.learners:KnnEmbedding", (), "kNN on one embedding run"),
    LearnerEntry("mlp", "amzkit.ml.mlp:MlpLearner", ("torch",), "a small MLP on embeddings + features",
                 "amzkit.ml.torch_settings:check_mlp_settings"),
    LearnerEntry("sparse_mlp", "amzkit.ml.sparse_mlp:SparseMlpLearner", ("torch",),
                 "an MLP on sparse TF-IDF n-grams + features", "amzkit.ml.torch_settings:check_sparse_mlp_settings"),
    LearnerEntry("finetune", "amzkit.ml.finetune:FinetuneLearner", ("torch", "transformers"),
                 "a transformers encoder fine-tuned on the catalog text",
                 "amzkit.ml.torch_settings:check_finetune_settings"),
)}


def importable(module: str) -> bool:
    """Whether `module` can be imported, without importing it (slow for xgboost/catboost)."""
    if module in sys.modules:
        return sys.modules[module] is not None
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a broken install (or a finder refusing it) is not an importable one
        return False


def available_learners() -> list[str]:
    """Registered learners whose packages are installed."""
    return [name for name, entry in LEARNERS.items() if all(importable(m) for m in entry.requires)]


def get_learner(name: str) -> type[Learner]:
    """The learner class registered as `name`; a clear message for one whose package is absent."""
    if name not in LEARNERS:
        raise ValueError(f"unknown learner {name!r}; choose from {sorted(LEARNERS)} "
                         f"(installed here: {available_learners()})")
    entry = LEARNERS[name]
    missing = [m for m in entry.requires if not importable(m)]
    if missing:
        raise ImportError(f"learner {name!r} needs the {', '.join(missing)} package, which is not installed: "
                          f"pip install {' '.join(missing)}")
    return entry.load()


class SourceDefault:
    """A default `learner_signature` read from source and could not evaluate (a name such as TFIDF_DIM): its text."""

    def __init__(self, text: str):
        self.text = text

    def __repr__(self) -> str:
        return self.text


def _source_init(module: str, cls: str) -> ast.FunctionDef | None:
    """The `__init__` that class `cls` of `module` defines in its source (None: not found, or not defined there)."""
    spec = importlib.util.find_spec(module)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    classes = [node for node in tree.body if isinstance(node, ast.ClassDef) and node.name == cls]
    inits = [node for c in classes for node in c.body if isinstance(node, ast.FunctionDef) and node.name == "__init__"]
    return inits[0] if len(inits) == 1 else None


def _source_signature(init: ast.FunctionDef) -> inspect.Signature:
    """The signature of a class whose `__init__` is `init` (self left out), annotations as text as under
    `from __future__ import annotations`."""
    def parameter(arg: ast.arg, kind, default: ast.expr | None = None) -> inspect.Parameter:
        value = inspect.Parameter.empty
        if default is not None:
            try:
                value = ast.literal_eval(default)
            except (ValueError, TypeError, SyntaxError):  # a name or an expression: kept as its text
                value = SourceDefault(ast.unparse(default))
        annotation = ast.unparse(arg.annotation) if arg.annotation is not None else inspect.Parameter.empty
        return inspect.Parameter(arg.arg, kind, default=value, annotation=annotation)

    args, kinds = init.args, inspect.Parameter
    positional = [*args.posonlyargs, *args.args]
    defaults = [None] * (len(positional) - len(args.defaults)) + list(args.defaults)
    params = [parameter(arg, kinds.POSITIONAL_ONLY if i < len(args.posonlyargs) else kinds.POSITIONAL_OR_KEYWORD,
                        default) for i, (arg, default) in enumerate(zip(positional, defaults, strict=True))][1:]
    if args.vararg:
        params.append(parameter(args.vararg, kinds.VAR_POSITIONAL))
    params += [parameter(arg, kinds.KEYWORD_ONLY, default) for arg, default in zip(args.kwonlyargs, args.kw_defaults,
                                                                                   strict=True)]
    if args.kwarg:
        params.append(parameter(args.kwarg, kinds.VAR_KEYWORD))
    return inspect.Signature(params)


def learner_signature(name: str) -> inspect.Signature:
    """The constructor parameters of learner `name`, whether or not its packages are installed, and read from its
    module's source when that module is not imported yet (mlp's and finetune's import torch): kaggle build checks
    a 03 kernel's learner_params with it on a machine that need not have them, without the seconds of importing."""
    if name not in LEARNERS:
        get_learner(name)  # the unknown learner's message
    module, _, cls = LEARNERS[name].target.partition(":")
    init = None if module in sys.modules else _source_init(module, cls)
    return _source_signature(init) if init is not None else inspect.signature(LEARNERS[name].load())


def check_learner_params(name: str, params: Mapping, signature: inspect.Signature) -> None:
    """A parameter that learner `name`'s constructor (of `signature`) does not take is an error naming it, the
    closest name it takes, and all of them."""
    taken = {key: p for key, p in signature.parameters.items() if p.kind not in (p.POSITIONAL_ONLY, p.VAR_POSITIONAL)}
    if any(p.kind is p.VAR_KEYWORD for p in taken.values()):
        return
    unknown = [key for key in params if key not in taken]
    if unknown:
        hints = {key: difflib.get_close_matches(str(key), list(taken), n=1) for key in unknown}
        raise ValueError(f"learner {name!r} takes no parameter " + ", ".join(
            f"{key!r}" + (f" (did you mean {close[0]!r}?)" if close else "") for key, close in hints.items())
            + f"; its parameters are {sorted(taken)}")


# A number written as text: quoted ("10", '0.5') or as YAML 1.1 keeps one with an exponent (1e-3, 1.0e3: its floats
# need a dot and a signed exponent). LightGBM and XGBoost's booster read every param as text, so "10" is 10 to them;
# CatBoost refuses the text ("Can't parse parameter") and XGBoost's n_estimators stops on it (a TypeError).
NUMBER_TEXT = re.compile(r"\s*[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?\s*")


def library_number(value):
    """`value`, or the number it writes as text (whole as an int: XGBoost's max_depth refuses 10.0): a tree
    learner's library param as the learner takes it, so that "10" and 10 are one value wherever settings are
    compared (a resumed run's kept folds, a study's setup, a param given twice)."""
    number = number_from_text(value) if isinstance(value, str) and NUMBER_TEXT.fullmatch(value) else None
    if number is None:
        return value
    return int(number) if number.is_integer() else number


def _numbers_from_text(signature: inspect.Signature, params: dict) -> dict:
    """`params` with a text that stands for a number ('1e-3': YAML 1.1, as papermill's -y / -f and a build's
    params file read it, keeps 1e-3 and 1.0e3 as text) taken as that number where the learner's parameter is a
    number (annotated float or int, or with such a default); in a dict of library `params` (the tree learners',
    lgb_params), a text that writes a number (library_number)."""
    converted = dict(params)
    for key, value in params.items():
        declared = signature.parameters.get(key)
        if key == "params" and declared is not None and isinstance(value, dict):
            converted[key] = {name: library_number(item) for name, item in value.items()}
        if declared is None or not isinstance(value, str):
            continue
        default, annotation = declared.default, str(declared.annotation)
        if isinstance(default, bool):
            continue
        if annotation in ("float", "float | None") or (isinstance(default, float) and "[" not in annotation):
            number = number_from_text(value)
        elif annotation in ("int", "int | None") or (isinstance(default, int) and "[" not in annotation):
            number = number_from_text(value, integer=True)
        else:
            continue
        if number is not None:
            converted[key] = number
    return converted


def learner_at_hand(name: str, **params) -> Learner | None:
    """Learner `name` with `params` as make_learner builds it, when its class's module is imported already (the
    registry's own, the tree learners'), whether or not its packages are installed; None for one that would
    need an import (mlp's and finetune's import torch)."""
    module, _, cls = LEARNERS[name].target.partition(":")
    if module not in sys.modules:
        return None
    return _construct(name, getattr(sys.modules[module], cls), params)


def check_learner_settings(name: str, **params) -> None:
    """What learner `name` refuses of `params` (given as to make_learner) when it prepares, before reading any data
    (its check_settings), without importing a module that is not imported yet: the registry entry's `settings`
    rules for mlp and finetune (torch-free), given `params` over the literal defaults of its constructor."""
    if (model := learner_at_hand(name, **params)) is not None:
        model.check_settings()
        return
    if not LEARNERS[name].settings:
        return
    signature = learner_signature(name)
    check_learner_params(name, params, signature)
    defaults = {key: p.default for key, p in signature.parameters.items()
                if p.default is not p.empty and not isinstance(p.default, SourceDefault)}
    module, _, function = LEARNERS[name].settings.partition(":")
    getattr(importlib.import_module(module), function)({**defaults, **_numbers_from_text(signature, params)})


def make_learner(name: str, **params) -> Learner:
    """An unprepared learner `name` with `params` (a parameter it does not take is an error naming its params; a
    number given as text, '1e-3', is taken as the number)."""
    return _construct(name, get_learner(name), params)


def _construct(name: str, cls: type[Learner], params: dict) -> Learner:
    """`cls(**params)`, its parameters checked by name and numbers given as text taken as numbers."""
    signature = inspect.signature(cls)
    check_learner_params(name, params, signature)
    params = _numbers_from_text(signature, params)
    try:
        return cls(**params)
    except TypeError as err:
        accepted = sorted(p for p in inspect.signature(cls).parameters)
        raise ValueError(f"learner {name!r}: {err}; its parameters are {accepted}") from None
