"""Weight-free featurizers: colour statistics of an image, TF-IDF + SVD of a text."""

from __future__ import annotations

import os

import numpy as np
from PIL import Image
from sklearn.decomposition import TruncatedSVD
from sklearn.feature_extraction.text import TfidfVectorizer

from amzkit.core.progress import tqdm
from amzkit.images.decode import open_image, original_numbers, seen_size


class ColorStatsEmbedder:
    """Weight-free image featurizer: channel statistics, hue/brightness histograms, size and aspect."""

    def __init__(self, draft_px: int = 64, hue_bins: int = 12, value_bins: int = 8):
        self.draft_px = draft_px
        self.hue_bins = hue_bins
        self.value_bins = value_bins

    @property
    def feature_names(self) -> list[str]:
        names = [f"{stat}_{c}" for stat in ("mean", "std") for c in "rgb"]
        names += [f"hue_{i}" for i in range(self.hue_bins)] + [f"value_{i}" for i in range(self.value_bins)]
        names += ["saturation_mean", "value_mean", "colorfulness", "edge_density",
                  "width_log", "height_log", "aspect_log", "file_size_log"]
        return names

    def fit(self, train_inputs=None) -> ColorStatsEmbedder:
        return self

    def _features(self, path: str) -> np.ndarray | None:
        img, status = open_image(path, draft_px=self.draft_px * 2)
        if img is None:
            return None
        width, height, nbytes = _original_size(path)
        small = img.resize((self.draft_px, self.draft_px))
        rgb = np.asarray(small, dtype=np.float32) / 255.0
        hsv = np.asarray(small.convert("HSV"), dtype=np.float32) / 255.0
        flat = rgb.reshape(-1, 3)
        hue_hist = np.histogram(hsv[..., 0], bins=self.hue_bins, range=(0, 1), weights=hsv[..., 1])[0]
        value_hist = np.histogram(hsv[..., 2], bins=self.value_bins, range=(0, 1))[0]
        hue_hist = hue_hist / max(hue_hist.sum(), 1e-6)
        value_hist = value_hist / value_hist.sum()
        gray = rgb.mean(axis=2)
        edges = (np.abs(np.diff(gray, axis=0)).mean() + np.abs(np.diff(gray, axis=1)).mean()) / 2
        colorfulness = np.std(flat[:, 0] - flat[:, 1]) + np.std((flat[:, 0] + flat[:, 1]) / 2 - flat[:, 2])
        return np.concatenate([
            flat.mean(axis=0), flat.std(axis=0), hue_hist, value_hist,
            [hsv[..., 1].mean(), hsv[..., 2].mean(), colorfulness, edges,
             np.log(width), np.log(height), np.log(width / height), np.log1p(nbytes)],
        ]).astype(np.float32)

    def transform(self, paths: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        dim = len(self.feature_names)
        out = np.full((len(paths), dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(paths), dtype=bool)
        for i, path in enumerate(tqdm(paths, desc="color-stats", unit="img")):
            row = self._features(path)
            if row is not None:
                out[i], ok[i] = row, True
        return out, ok


def _original_size(path: str) -> tuple[int, int, int]:
    """(width, height, bytes) of the original picture as it is seen (`seen_size`): the stored file's (draft decoding
    shrinks the decoded image), or for a shrunk copy in 01's image cache the original's that it records."""
    with Image.open(path) as header:
        return original_numbers(header) or (*seen_size(header, *header.size), os.path.getsize(path))


class TfidfSvdEmbedder:
    """TF-IDF of word 1-2 grams reduced by TruncatedSVD; fit on the train text only."""

    def __init__(self, dim: int = 64, max_features: int = 100_000, min_df: int = 2, seed: int = 0):
        self.dim = dim
        self.max_features = max_features
        self.min_df = min_df
        self.seed = seed

    def fit(self, train_inputs: list[str] | None = None) -> TfidfSvdEmbedder:
        if train_inputs is None:
            raise ValueError("TfidfSvdEmbedder.fit needs the train texts to learn its vocabulary")
        min_df = self.min_df if len(train_inputs) > 50 else 1
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=(1, 2), min_df=min_df, max_features=self.max_features, sublinear_tf=True,
            strip_accents="unicode", dtype=np.float32,
        )
        matrix = self.vectorizer_.fit_transform(train_inputs)
        n_components = max(1, min(self.dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self.svd_ = TruncatedSVD(n_components=n_components, random_state=self.seed).fit(matrix)
        return self

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "svd_"):
            raise RuntimeError("TfidfSvdEmbedder.transform called before fit")
        reduced = self.svd_.transform(self.vectorizer_.transform(texts)).astype(np.float32)
        return reduced, np.ones(len(texts), dtype=bool)
