"""Transformers embedders: loading (hub, bundling package, folder or cache; no remote code), the checkpoint-fit
check, and the image / text towers and sentence encoders built on `neural`'s ImageEmbedder / TextEmbedder."""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from amzkit.embed.hub import (
    IMAGE_PROCESSOR_FILE,
    bundled_folder,
    check_files,
    load_tokenizer,
    unreachable_message,
    use_cache_instead,
)
from amzkit.embed.neural import ImageEmbedder, TextEmbedder
from amzkit.embed.registry import (
    LOCAL_DIR,
    SENTENCE_MODULES_FILE,
    SENTENCE_SETTINGS_FILES,
    TRANSFORMERS_CONFIG,
    sentence_modules_beyond,
)

# Checkpoint keys allowed to be absent when a model loads: the pooler head of BERT-style checkpoints saved
# without it is never used by mean / CLS pooling. Anything else missing or unexpected refuses the load.
BENIGN_MISSING_KEYS: dict[str, tuple[str, ...]] = {
    "mean": ("pooler.dense.weight", "pooler.dense.bias"),
    "cls": ("pooler.dense.weight", "pooler.dense.bias"),
}


def _non_persistent_buffers(model) -> set[str]:
    """The model's buffers that no checkpoint needs (position_ids of BERT-style embeddings: made by the model)."""
    return {f"{name}.{buffer}" if name else buffer for name, module in model.named_modules()
            for buffer in getattr(module, "_non_persistent_buffers_set", ())}


def loading_problems(model, info: dict, pooling: str | None, ignored_prefixes: tuple[str, ...] = ()) -> str:
    """What in a checkpoint does not fit `model` ('' when it all fits), from `from_pretrained`'s loading info.

    Allowed: the pooler keys of BENIGN_MISSING_KEYS, unexpected keys of the model's own non-persistent buffers
    (older checkpoints saved `embeddings.position_ids`; transformers 5.0 reports them, later ones do not) and
    unexpected keys under `ignored_prefixes`."""
    own = _non_persistent_buffers(model)

    def made_by_model(key: str) -> bool:
        return any(key == buffer or key.endswith("." + buffer) for buffer in own)

    problems = {
        "missing": sorted(set(info.get("missing_keys", ())) - set(BENIGN_MISSING_KEYS.get(pooling or "", ()))),
        "unexpected": sorted(key for key in info.get("unexpected_keys", ())
                             if not made_by_model(key) and not key.startswith(ignored_prefixes)),
        "mismatched": sorted(str(key) for key in info.get("mismatched_keys", ())),
    }
    return "; ".join(f"{kind} keys: {keys[:20]}" for kind, keys in problems.items() if keys)


class TransformersLoading:
    """Loads a transformers model from a hub id, a bundling package, a folder or the HF cache; no remote code."""

    def _transformers_target(self) -> str:
        source = self.spec.source or ""
        if source.startswith(LOCAL_DIR):
            return source[len(LOCAL_DIR):]
        if (bundled := bundled_folder(source)) is not None:
            return str(bundled)
        cached = use_cache_instead(self.spec, source, (TRANSFORMERS_CONFIG,))
        return source if cached is None else str(cached.parent)

    def _load_transformers(self, target: str):
        """The model in float32, refused when any checkpoint key is missing or unexpected."""
        from transformers import AutoModel  # deferred: transformers loads only when a model is used

        try:
            model, info = AutoModel.from_pretrained(target, output_loading_info=True)  # never trust_remote_code
        except Exception as err:  # hub errors come in many classes; all mean "not reachable here"
            if os.path.isdir(target):
                raise  # a local folder: its own error says it best
            raise RuntimeError(unreachable_message(self.spec, f"{type(err).__name__}: {err}")) from err
        if listed := loading_problems(model, info, self.spec.pooling):
            raise RuntimeError(f"{self.spec.name}: the weights at {target} do not fit {type(model).__name__} "
                               f"({listed}); refusing to embed with a model that is not the checkpoint's")
        return model.float()


class TransformersImageEmbedder(TransformersLoading, ImageEmbedder):
    """Image features of a transformers model: `get_image_features` (CLIP / SigLIP) or `pooler_output` (DINOv2)."""

    def _load(self) -> None:
        from transformers import AutoImageProcessor  # deferred: transformers loads only when a model is used

        target = self._transformers_target()
        check_files(self.spec, target, "image processor", (IMAGE_PROCESSOR_FILE,))
        self.preprocess_ = _PixelValues(AutoImageProcessor.from_pretrained(target))
        self.model_ = self._load_transformers(target)

    def _draft_px(self) -> int:
        # draft to the processor's resize size when it resizes larger than the model input (DINOv2: 256 -> 224)
        return max(super()._draft_px(), _resize_px(self.preprocess_.processor))

    def _encode(self, pixels):
        if hasattr(self.model_, "get_image_features"):
            return _pooled(self.model_.get_image_features(pixel_values=pixels))
        return self.model_(pixel_values=pixels).pooler_output


UNMASKED_TEXT_TOWERS = ("siglip",)  # model_type prefixes of text towers trained without a padding mask (SigLIP 1, 2)


# model types whose position ids start after the padding index (RobertaEmbeddings): max_position_embeddings 514
# holds 512 tokens
PADDING_OFFSET_POSITIONS = ("roberta", "xlm-roberta", "camembert", "mpnet", "longformer", "data2vec-text",
                            "roberta-prelayernorm", "xmod")


def token_limit(config, tokenizer) -> int:
    """The longest input a transformers text model takes: its position embeddings (less the padding offset of
    RoBERTa-style models) and the tokenizer's own limit (tokenizers without one say 1e30)."""
    positions = getattr(config, "max_position_embeddings", None) or 512
    if getattr(config, "model_type", "") in PADDING_OFFSET_POSITIONS:
        positions -= (getattr(config, "pad_token_id", None) or 0) + 1
    return min(n for n in (positions, tokenizer.model_max_length) if n and n < 1_000_000)


class TransformersTextEmbedder(TransformersLoading, TextEmbedder):
    """Text embeddings of a transformers model: a CLIP / SigLIP text tower, or mean / CLS pooling + L2."""

    def _load(self) -> None:
        target = self._transformers_target()
        self.tokenizer_ = load_tokenizer(self.spec, target)  # before the weights: fail early and cheaply
        self.model_ = self._load_transformers(target)
        config = getattr(self.model_.config, "text_config", None) or self.model_.config
        limit = token_limit(config, self.tokenizer_)
        self.max_length_ = min(self.spec.max_tokens or limit, limit)
        self._check_sentence_folder()

    def _check_sentence_folder(self) -> None:
        """A local sentence encoder folder whose modules.json lists more than the encoder, pooling and L2 (a Dense
        layer, as LaBSE's) is refused: 01 would leave it out silently. One without its sentence-transformers files
        is read as mean pooling at the model's full length: said, since a CLS-pooled model (bge) or a shorter
        trained length (minilm's 256) then gives embeddings that are not the model's."""
        source = self.spec.source or ""
        if not self.spec.pooling or not source.startswith(LOCAL_DIR):
            return
        folder = Path(source[len(LOCAL_DIR):])
        if extra := sentence_modules_beyond(folder):
            raise ValueError(f"{self.spec.name}: {folder / SENTENCE_MODULES_FILE} lists {', '.join(extra)} beyond "
                             "the encoder, pooling and normalisation, which are all that 01 computes: its embeddings "
                             "would not be the model's. Choose a sentence encoder without them (minilm, bge-base, or "
                             "a folder of one)")
        missing = [name for name in SENTENCE_SETTINGS_FILES if not (folder / name).is_file()]
        if missing:
            warnings.warn(f"{folder} has no {' or '.join(missing)}: {self.spec.name} is embedded with "
                          f"{self.spec.pooling} pooling over at most {self.max_length_} tokens, which may not be how "
                          "the model was trained; copy those sentence-transformers files from the model's hub "
                          "repository into the folder", stacklevel=2)

    def _tokenize(self, texts: list[str]):
        # contrastive towers were trained on fixed-length sequences (SigLIP pools the last position); a sentence
        # encoder's default prompt goes before every text, as SentenceTransformer.encode puts it
        padding = "longest" if self.spec.pooling else "max_length"
        tokens = self.tokenizer_([self.spec.prompt + text for text in texts], padding=padding, truncation=True,
                                 max_length=self.max_length_, return_tensors="pt")
        keep = tuple(tokens.keys()) if self.spec.pooling else self._tower_inputs()
        return {key: tokens[key] for key in keep if key in tokens}

    def _tower_inputs(self) -> tuple[str, ...]:
        """What a CLIP / SigLIP text tower takes: SigLIP was trained attending to its padding (its pad is its EOS,
        no mask), and transformers 5's SigLIP tokenizer returns a mask (4.x's did not)."""
        unmasked = self.model_.config.model_type.startswith(UNMASKED_TEXT_TOWERS)
        return ("input_ids",) if unmasked else ("input_ids", "attention_mask")

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
