"""The feature matrix of a run: label-free groups computed once, plus the fold transforms each fold fits.

`features` names groups: label-free text groups (text.features), image groups read from 01's image cache
(images.features) and groups fit inside the folds (FOLD_FEATURE_GROUPS). `embeddings` names 01_extract runs,
whole ('run') or reduced inside the folds ('run:pca:N', 'run:topk_corr:K', 'run:knn:K').
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from amzkit.embed.runs import model_argument_message
from amzkit.images.features import IMAGE_FEATURE_GROUPS, build_image_features, image_feature_group
from amzkit.ml.base import RunInputs
from amzkit.ml.encodings import TwinPriceTransform, brand_price_transform, material_price_transform
from amzkit.ml.neighbour_prices import neighbour_unit_transform
from amzkit.ml.stacking import ridge_oof_transform
from amzkit.ml.transforms import (
    SELECTIONS,
    TFIDF_DIM,
    FoldTransform,
    KnnTargetTransform,
    TfidfSvdTransform,
    embedded_rows,
)
from amzkit.text.features import FEATURE_GROUPS, build_grouped_features, has_product_words, parsed_rows

# Feature groups fit inside the folds (label-free groups: text.features; image groups: images.features):
# name -> the transform, from the run's inputs and the TF-IDF width.
FOLD_FEATURE_GROUPS: dict[str, Callable[[RunInputs, int], FoldTransform]] = {
    "tfidf": lambda inputs, tfidf_dim: TfidfSvdTransform(inputs.texts, tfidf_dim, inputs.seed),
    "twin_price": lambda inputs, _: TwinPriceTransform(worded_texts(inputs), groups=inputs.groups),
    "brand_price": lambda inputs, _: brand_price_transform(inputs.both, inputs.schema, inputs.seed, inputs.groups),
    "material_price": lambda inputs, _: material_price_transform(inputs.both, inputs.schema, inputs.seed,
                                                                 inputs.groups),
    "ridge_oof": lambda inputs, _: ridge_oof_transform(inputs),
    "neighbour_unit": lambda inputs, _: neighbour_unit_transform(inputs),
}


IMAGE_FEATURE_GROUP_NAMES = tuple(IMAGE_FEATURE_GROUPS)  # read 01's image cache: need data_dir and work_dir


def all_feature_groups() -> list[str]:
    """Every feature group 03_train accepts."""
    return sorted([*FEATURE_GROUPS, *FOLD_FEATURE_GROUPS, *IMAGE_FEATURE_GROUP_NAMES])


def parse_embedding_spec(spec: str) -> tuple[str, str, int]:
    """'run' -> (run, 'all', 0); 'run:topk_corr:50', 'run:pca:32', 'run:knn:20' -> (run, strategy, size)."""
    parts = spec.split(":")
    suffix = f":{parts[-2]}:{parts[-1]}" if len(parts) > 3 and parts[-2] in SELECTIONS else ""
    for model, rest in ((spec[:len(spec) - len(suffix)], suffix), (spec, "")):
        if (hint := model_argument_message(model, "embedding", rest)) is not None:
            raise ValueError(hint)
    if len(parts) == 1:
        return parts[0], "all", 0
    if len(parts) == 3 and parts[1] in SELECTIONS and parts[2].isdigit() and int(parts[2]) > 0:
        return parts[0], parts[1], int(parts[2])
    raise ValueError(f"embedding {spec!r}: write 'run', 'run:topk_corr:K', 'run:pca:N' or 'run:knn:K' "
                     "(K, N positive integers)")


@dataclass
class FeatureSet:
    """Label-free columns for train+test rows, plus the transforms each fold fits on its training rows."""

    static: np.ndarray  # (n_train + n_test, p) float32
    static_names: list[str]
    categorical: list[int]
    transforms: list[FoldTransform] = field(default_factory=list)
    n_train: int = 0
    static_groups: list[str] = field(default_factory=list)  # the feature group of each static column
    transform_groups: list[str] = field(default_factory=list)  # the feature group (or embedding) of each transform

    @property
    def names(self) -> list[str]:
        return self.static_names + [n for t in self.transforms for n in t.names]

    @property
    def groups(self) -> list[str]:
        """The feature group (or embedding spec) each column of `names` comes from; "" where not recorded."""
        static = self.static_groups or [""] * len(self.static_names)
        labels = self.transform_groups or [""] * len(self.transforms)
        return static + [label for t, label in zip(self.transforms, labels, strict=True) for _ in t.names]

    def matrix(self, rows: np.ndarray) -> np.ndarray:
        blocks = [self.static[rows]] + [t.transform(rows) for t in self.transforms]
        return np.hstack(blocks).astype(np.float32, copy=False)


def worded_texts(inputs: RunInputs) -> list[str]:
    """The rows' texts, "" for a row without product words (text.features.has_product_words): no twin of another."""
    worded = has_product_words(parsed_rows(inputs.both, inputs.schema))
    return [text if keep else "" for text, keep in zip(inputs.texts, worded, strict=True)]


def _check_distinct_columns(names: list[str], groups: list[str]) -> None:
    """Refuse two feature groups or embedding views that make a column of the same name (e.g. run:pca:8 and
    run:pca:16): a model cannot tell them apart."""
    seen: dict[str, str] = {}
    for name, group in zip(names, groups, strict=True):
        if name in seen:  # one label for two sources too: a feature group and an 01 run both named 'tfidf'
            both = f"{group!r} (twice: a feature group and an 01 run of that name?)" if seen[name] == group \
                else f"{seen[name]!r} and {group!r}"
            raise ValueError(f"{both} both make column {name!r}: keep one of them, or give the 01 run another name")
        seen[name] = group


def check_feature_lists(features: Sequence[str], embeddings: Sequence[str]) -> None:
    """A feature group that does not exist, or a group or embedding listed twice, is an error naming it (checked
    before any data is read, and by kaggle build)."""
    features, embeddings = list(features), list(embeddings)
    unknown = [g for g in features if g not in all_feature_groups()]
    if unknown:
        raise ValueError(f"unknown feature groups {unknown}; choose from {all_feature_groups()}")
    for kind, names in (("feature group", features), ("embedding", embeddings)):
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise ValueError(f"{kind} {', '.join(map(repr, twice))} is listed more than once in "
                             f"-p {kind.split()[0]}s: list each once")


def assemble_features(inputs: RunInputs, features: Sequence[str], embeddings: Sequence[str],
                      tfidf_dim: int = TFIDF_DIM) -> FeatureSet:
    """Engineered groups + image groups + embedding runs (checked against the CSV ids) + per-fold transforms."""
    features, embeddings = list(features), list(embeddings)
    check_feature_lists(features, embeddings)
    data, schema = inputs.data, inputs.schema
    text_groups = [g for g in features if g in FEATURE_GROUPS]
    x_train, x_test, column_groups = build_grouped_features(data["train"], data["test"], schema, text_groups)
    frame = pd.concat([x_train, x_test], ignore_index=True)
    image_groups = [g for g in features if g in IMAGE_FEATURE_GROUP_NAMES]
    if image_groups:
        if inputs.data_dir is None:
            raise ValueError(f"feature groups {image_groups} read 01's image cache: pass data_dir (the CSVs' folder)")
        i_train, i_test = build_image_features(data, schema, Path(inputs.data_dir), Path(inputs.work_dir),
                                               image_groups)
        frame = pd.concat([frame, pd.concat([i_train, i_test], ignore_index=True)], axis=1)
        column_groups += [image_feature_group(column) for column in i_train.columns]
        for column in frame.columns:
            if frame[column].dtype == object:
                frame[column] = frame[column].astype("category")
    categorical = [i for i, c in enumerate(frame.columns) if isinstance(frame[c].dtype, pd.CategoricalDtype)]
    for i in categorical:
        column = frame.columns[i]
        frame[column] = frame[column].cat.codes.astype(np.float32).replace(-1, np.nan)
    blocks, names = [frame.to_numpy(dtype=np.float32)], list(frame.columns)
    fold_groups = [g for g in features if g in FOLD_FEATURE_GROUPS]
    transforms = [FOLD_FEATURE_GROUPS[g](inputs, tfidf_dim) for g in fold_groups]
    for spec in embeddings:
        name, strategy, size = parse_embedding_spec(spec)
        matrix = inputs.embedding(name)[0]
        if strategy == "all":
            embedded_rows(name, matrix, np.arange(inputs.n_train), needed=1)  # a run with no row embedded: by name
            blocks.append(matrix)
            names += [f"{name}_{i}" for i in range(matrix.shape[1])]
            column_groups += [spec] * matrix.shape[1]
            continue
        fold_groups.append(spec)
        if strategy == "knn":
            transforms.append(KnnTargetTransform(name, matrix, size, inputs.seed, inputs.groups))
        else:
            if size > matrix.shape[1]:
                warnings.warn(f"embedding view {spec!r}: run {name!r} has {matrix.shape[1]} dimensions, so this view "
                              f"keeps {matrix.shape[1]}, not {size} (runs.csv names it as given); write "
                              f"'{name}:{strategy}:{matrix.shape[1]}' to say so", stacklevel=2)
            transforms.append(SELECTIONS[strategy](name, matrix, size))
    static = np.hstack(blocks) if len(blocks) > 1 else blocks[0]
    if static.shape[1] == 0 and not transforms:
        raise ValueError("no features: give at least one feature group or embedding run")
    built = FeatureSet(static, names, categorical, transforms, n_train=inputs.n_train, static_groups=column_groups,
                       transform_groups=fold_groups)
    _check_distinct_columns(built.names, built.groups)
    return built
