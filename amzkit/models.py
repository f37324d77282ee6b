"""The embedding model registry (a data table, as open_clip's pretrained table) and its embedders.

Each embedder follows scikit-learn's shape: the constructor only stores parameters, `fit` learns what
needs learning (TF-IDF vocabulary; nothing for pretrained models), `transform` returns
`(embeddings, ok)` with one row per input in input order and NaN rows where `ok` is False.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from amzkit.fetch import open_image


@dataclass(frozen=True)
class ModelSpec:
    """One registry row: how to load a model and what it produces."""

    name: str
    modality: str  # "image" or "text"
    loader: str  # key of LOADERS
    source: str | None  # hub id / open_clip name; None for weight-free featurizers
    architecture: str
    image_px: int
    dim: int
    params_m: float
    pretrained: str | None = None  # open_clip pretrained tag for non-hub names


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        ModelSpec("color-stats", "image", "color_stats", None, "colour/brightness histograms", 64, 40, 0),
        ModelSpec("tfidf-svd", "text", "tfidf_svd", None, "TF-IDF (1-2 grams) + TruncatedSVD", 0, 64, 0),
        ModelSpec("fashion-siglip", "image", "open_clip", "hf-hub:Marqo/marqo-fashionSigLIP",
                  "ViT-B-16-SigLIP", 224, 768, 203),
        ModelSpec("fashion-clip", "image", "open_clip", "hf-hub:Marqo/marqo-fashionCLIP",
                  "ViT-B-16", 224, 512, 150),
        ModelSpec("ecommerce-b", "image", "open_clip", "hf-hub:Marqo/marqo-ecommerce-embeddings-B",
                  "ViT-B-16-SigLIP", 224, 768, 203),
        ModelSpec("ecommerce-l", "image", "open_clip", "hf-hub:Marqo/marqo-ecommerce-embeddings-L",
                  "ViT-L-16-SigLIP-256", 256, 1024, 652),
        ModelSpec("clip-b32", "image", "open_clip", "ViT-B-32-quickgelu", "ViT-B/32", 224, 512, 151,
                  pretrained="openai"),
    )
}

LOCAL_DIR = "local-dir:"
HUB_PROBE_TIMEOUT_S = 3.0


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub (or $HF_ENDPOINT) answers a TCP connect within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co"))
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _in_hf_cache(source: str) -> bool:
    """Whether an `hf-hub:` model's config is already in the local Hugging Face cache."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(source.removeprefix("hf-hub:"), "open_clip_config.json")
    return isinstance(found, str)


def _unreachable_message(spec: ModelSpec, reason: str) -> str:
    return (
        f"could not load {spec.name} ({spec.source}): {reason}. On Kaggle turn Internet on in the notebook "
        "settings, or attach a dataset holding the model folder (open_clip_config.json + weights, as on the "
        "hub) and pass -p model local-dir:/kaggle/input/<dataset>/<folder>."
    )


def get_model_spec(name: str) -> ModelSpec:
    """The registry row for `name`, or an open_clip `local-dir:<folder>` model described from its config."""
    if name.startswith(LOCAL_DIR):
        folder = Path(name[len(LOCAL_DIR):]).expanduser()
        if not (folder / "open_clip_config.json").is_file():
            raise FileNotFoundError(
                f"{folder} holds no open_clip_config.json: a local model folder needs open_clip_config.json "
                "and open_clip_pytorch_model.bin (or .safetensors), as on the Hugging Face hub"
            )
        return ModelSpec(folder.name, "image", "open_clip", f"{LOCAL_DIR}{folder.resolve()}", "open_clip", 0, 0, 0)
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; the registry has {sorted(MODELS)}, or pass local-dir:<folder>"
        ) from None


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

    def fit(self, inputs=None) -> ColorStatsEmbedder:
        return self

    def _features(self, path: str) -> np.ndarray | None:
        img, status = open_image(path, draft_px=self.draft_px * 2)
        if img is None:
            return None
        width, height = _original_size(path, img)
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
             np.log(width), np.log(height), np.log(width / height), np.log1p(os.path.getsize(path))],
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


def _original_size(path: str, img) -> tuple[int, int]:
    """The stored image's size (draft decoding shrinks `img`)."""
    from PIL import Image

    with Image.open(path) as header:
        return header.size


class TfidfSvdEmbedder:
    """TF-IDF of word 1-2 grams reduced by TruncatedSVD; fit on the train text only."""

    def __init__(self, dim: int = 64, max_features: int = 100_000, min_df: int = 2, seed: int = 0):
        self.dim = dim
        self.max_features = max_features
        self.min_df = min_df
        self.seed = seed

    def fit(self, texts: list[str]) -> TfidfSvdEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

        min_df = self.min_df if len(texts) > 50 else 1
        self.vectorizer_ = TfidfVectorizer(
            ngram_range=(1, 2), min_df=min_df, max_features=self.max_features, sublinear_tf=True,
            strip_accents="unicode", dtype=np.float32,
        )
        matrix = self.vectorizer_.fit_transform(texts)
        n_components = max(1, min(self.dim, matrix.shape[1] - 1, matrix.shape[0] - 1))
        self.svd_ = TruncatedSVD(n_components=n_components, random_state=self.seed).fit(matrix)
        return self

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        if not hasattr(self, "svd_"):
            raise RuntimeError("TfidfSvdEmbedder.transform called before fit")
        reduced = self.svd_.transform(self.vectorizer_.transform(texts)).astype(np.float32)
        return reduced, np.ones(len(texts), dtype=bool)


class OpenClipImageEmbedder:
    """Image tower of an open_clip model (hub, pretrained tag or local-dir folder); L2-normalised output."""

    def __init__(self, spec: ModelSpec, batch_size: int = 64, device: str = "auto", num_workers: int = -1):
        self.spec = spec
        self.batch_size = batch_size
        self.device = device
        self.num_workers = num_workers

    def fit(self, inputs=None) -> OpenClipImageEmbedder:
        import open_clip
        import torch

        self.device_ = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        )
        source = self.spec.source or ""
        offline = os.environ.get("HF_HUB_OFFLINE", "0") not in ("0", "", "false")
        if source.startswith("hf-hub:") and not _in_hf_cache(source):
            # Fail in seconds: the hub client would retry for half a minute before giving up.
            if offline:
                raise RuntimeError(_unreachable_message(self.spec, "HF_HUB_OFFLINE is set and it is not cached"))
            if not hub_reachable():
                raise RuntimeError(_unreachable_message(self.spec, "the model hub is unreachable from here"))
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                self.spec.source, pretrained=self.spec.pretrained, device=self.device_,
                require_pretrained=True,  # never embed with random weights because a file was missing
            )
        except Exception as err:  # hub errors come in many classes; all mean "not reachable here"
            if self.spec.source and self.spec.source.startswith(LOCAL_DIR):
                raise
            raise RuntimeError(_unreachable_message(self.spec, f"{type(err).__name__}: {err}")) from err
        self.model_ = model.eval()
        self.preprocess_ = preprocess
        return self

    def _autocast_dtype(self):
        import torch

        if self.device_.type != "cuda":
            return None
        major, _ = torch.cuda.get_device_capability(self.device_)
        # Turing (T4, capability 7.5) reports bf16 support but has no bf16 hardware: decide by capability.
        return torch.bfloat16 if major >= 8 else torch.float16

    def transform(self, paths: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from torch.utils.data import DataLoader

        dataset = _ImageDataset(paths, self.preprocess_, draft_px=max(self.spec.image_px, 224) * 2)
        workers = (os.cpu_count() or 1) if self.num_workers < 0 else self.num_workers
        loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=workers,
                            pin_memory=self.device_.type == "cuda", collate_fn=_collate)
        chunks, oks = [], []
        amp = self._autocast_dtype()
        with torch.inference_mode():
            for pixels, ok in tqdm(loader, desc=self.spec.name, unit="batch"):
                out = np.full((len(ok), 0), np.nan, dtype=np.float32)
                if ok.any():
                    feats = self._forward(pixels.to(self.device_, non_blocking=True), amp)
                    if not torch.isfinite(feats).all() and amp is not None:
                        feats = self._forward(pixels.to(self.device_), None)  # redo the batch in fp32
                    feats = torch.nn.functional.normalize(feats.float(), dim=-1).cpu().numpy()
                    out = np.full((len(ok), feats.shape[1]), np.nan, dtype=np.float32)
                    out[ok] = feats
                chunks.append(out)
                oks.append(ok)
        dim = max(chunk.shape[1] for chunk in chunks)
        chunks = [c if c.shape[1] == dim else np.full((len(c), dim), np.nan, np.float32) for c in chunks]
        return np.concatenate(chunks).astype(np.float16), np.concatenate(oks)

    def _forward(self, pixels, amp):
        import torch

        if amp is None:
            return self.model_.encode_image(pixels)
        with torch.autocast(self.device_.type, dtype=amp):
            return self.model_.encode_image(pixels)


class _ImageDataset:
    def __init__(self, paths, preprocess, draft_px: int):
        self.paths, self.preprocess, self.draft_px = list(paths), preprocess, draft_px

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img, _ = open_image(self.paths[i], draft_px=self.draft_px)
        return (self.preprocess(img), True) if img is not None else (None, False)


def _collate(items):
    import torch

    ok = np.array([good for _, good in items], dtype=bool)
    tensors = [t for t, good in items if good]
    return (torch.stack(tensors) if tensors else None), ok


LOADERS = {
    "color_stats": lambda spec, **kw: ColorStatsEmbedder(),
    "tfidf_svd": lambda spec, **kw: TfidfSvdEmbedder(dim=spec.dim),
    "open_clip": lambda spec, **kw: OpenClipImageEmbedder(spec, **kw),
}


def create_embedder(name: str, batch_size: int = 64, device: str = "auto"):
    """An unfitted embedder for a registry name or a local-dir folder (open_clip's factory shape)."""
    spec = get_model_spec(name)
    kwargs = {"batch_size": batch_size, "device": device} if spec.loader == "open_clip" else {}
    return spec, LOADERS[spec.loader](spec, **kwargs)


def registry_table():
    """The registry as a DataFrame, one row per model."""
    from dataclasses import asdict

    import pandas as pd

    return pd.DataFrame([asdict(spec) for spec in MODELS.values()]).set_index("name")
