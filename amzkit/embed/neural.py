"""Neural embedders: open_clip image/text towers behind one scikit-learn shape, and the base classes that
transformers_models' embedders share.

The constructor only stores parameters, `fit` loads weights, `transform` returns `(embeddings, ok)` with one
row per input in input order and NaN rows where `ok` is False. Neural embeddings are L2-normalised float16.
Mixed precision on GPU is chosen by compute capability (T4: fp16), and a non-finite batch is redone in fp32.
A batch that runs the GPU out of memory is embedded again in halves, and the smaller batch size is kept from then on.
"""

from __future__ import annotations

import json
import os
from abc import ABC, abstractmethod
from collections.abc import Callable
from pathlib import Path

import numpy as np

from amzkit.core.gpu import out_of_memory_error, pick_device
from amzkit.core.progress import tqdm
from amzkit.core.threads import allowed_cores
from amzkit.embed.hub import (
    hf_tokenizer_folder,
    unreachable_message,
    use_cache_instead,
)
from amzkit.embed.registry import (
    LOCAL_DIR,
    OPEN_CLIP_CONFIG,
    ModelSpec,
)
from amzkit.images.decode import open_image


class NeuralEmbedder(ABC):
    """Shared by the neural embedders: device, mixed precision, fp32 redo of non-finite batches, smaller batches
    after the GPU runs out of memory, L2 + float16. `batch_size_` (set by fit) is the batch size in use."""

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
        import torch  # deferred: torch loads only when a model is used

        self.device_ = pick_device(self.device)
        if self.device_.type == "cuda" and self.device_.index is not None:
            torch.cuda.set_device(self.device_)  # else the loader's pin-memory thread opens a context on GPU 0 too
        self._load()
        self.model_ = self.model_.to(self.device_).eval()
        self.batch_size_ = self._batch_size_said = self.batch_size
        return self

    def _in_batches(self, n_rows: int, embed: Callable[[int, int], None], progress=None) -> None:
        """`embed(start, stop)` over consecutive ranges of at most `batch_size_` of `n_rows` rows, in order. A range
        that runs the GPU out of memory writes nothing and is embedded again in halves (down to one row), and the
        smaller batch size is kept for the rest of the run (said once); a single row that does not fit raises."""
        start = 0
        while start < n_rows:
            stop = min(start + self.batch_size_, n_rows)
            if not self._fits(embed, start, stop):
                self._shrink_batch(stop - start)
                continue
            if self.batch_size_ != self._batch_size_said:
                print(f"{self.spec.name} on {self.device_}: out of GPU memory at batch_size {self._batch_size_said}; "
                      f"embedding the rest of this run in batches of {self.batch_size_} (-p batch_size "
                      f"{self.batch_size_} starts there)")
                self._batch_size_said = self.batch_size_
            if progress is not None:
                progress.update(stop - start)
            start = stop

    def _fits(self, embed: Callable[[int, int], None], start: int, stop: int) -> bool:
        """`embed(start, stop)`; False when the GPU ran out of memory (the error, and the tensors its traceback
        holds, are freed on return). One row that does not fit raises the error with what to do."""
        try:
            embed(start, stop)
        except out_of_memory_error() as err:
            if stop - start > 1:
                return False
            err.add_note(self._memory_advice())
            raise
        return True

    def _shrink_batch(self, rows: int) -> None:
        """Half of the `rows` that did not fit becomes the batch size; the freed GPU memory goes back to CUDA."""
        import torch  # deferred: torch loads only when a model is used

        self.batch_size_ = max(1, min(self.batch_size_, rows) // 2)
        if torch.cuda.is_available():
            torch.cuda.empty_cache()

    def _memory_advice(self) -> str:
        """What to do when one row does not fit in the GPU's memory."""
        halved = f", halved down from {self.batch_size}" if self.batch_size > 1 else ""
        return (f"{self.spec.name} on {self.device_}: out of GPU memory embedding one row at a time (batch_size 1"
                f"{halved}; it already runs in fp16 / bf16 on a GPU): the model does not "
                "fit in the GPU memory left free. Free it (in an interactive session, restart the notebook's kernel: "
                "models of earlier cells hold GPU memory; nvidia-smi lists the processes on the GPU), give each "
                "device worker a GPU of its own (-p device naming one GPU twice puts two models on it), or embed "
                "with a smaller model (-p model / -p text_model; amzkit.registry_table() lists their params_m); "
                "-p device cpu runs it, slowly")

    def _autocast_dtype(self):
        import torch  # deferred: torch loads only when a model is used

        if self.device_.type != "cuda":
            return None
        major, _ = torch.cuda.get_device_capability(self.device_)
        # Turing (T4, capability 7.5) reports bf16 support but has no bf16 hardware: decide by capability.
        return torch.bfloat16 if major >= 8 else torch.float16

    def _embed(self, batch) -> np.ndarray:
        """float32 rows of one batch (a dict of tensors or a tensor), L2-normalised when the spec says so."""
        import torch  # deferred: torch loads only when a model is used

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


class ImageEmbedder(NeuralEmbedder):
    """Images decoded (draft mode) and preprocessed in DataLoader workers, in input order."""

    def _draft_px(self) -> int:
        return self.spec.image_px or 224

    def transform(self, paths: list[str | None]) -> tuple[np.ndarray, np.ndarray]:
        import torch  # deferred: torch loads only when a model is used
        from torch.utils.data import DataLoader

        self._check_fitted()
        dataset = _ImageDataset(paths, self.preprocess_, draft_px=self._draft_px())
        workers = allowed_cores() if self.num_workers < 0 else self.num_workers  # the cgroup quota, not the host
        loader = DataLoader(dataset, batch_size=self.batch_size_, num_workers=workers,
                            pin_memory=self.device_.type == "cuda", collate_fn=_collate)
        out = np.full((len(paths), self.spec.dim), np.nan, dtype=np.float32)
        ok = np.zeros(len(paths), dtype=bool)
        start = 0
        with torch.inference_mode():
            for pixels, batch_ok in tqdm(loader, desc=self.spec.name, unit="batch"):
                self._embed_loaded(pixels, batch_ok, start, out, ok)
                start += len(batch_ok)
        return self._output(out), ok

    def _embed_loaded(self, pixels, batch_ok: np.ndarray, first: int, out: np.ndarray, ok: np.ndarray) -> None:
        """One loaded batch (`pixels`: its ok rows' images) into rows `first`.. of `out` and `ok`, in pieces of
        `batch_size_` rows (smaller after running out of GPU memory: the pieces a run at that size embeds)."""
        offsets = np.concatenate([[0], np.cumsum(batch_ok)])  # where each row's image would start in `pixels`

        def embed(start: int, stop: int) -> None:
            rows = np.flatnonzero(batch_ok[start:stop]) + start
            if len(rows):
                out[first + rows] = self._embed(pixels[offsets[start]:offsets[stop]])
                ok[first + rows] = True

        self._in_batches(len(batch_ok), embed)


class TextEmbedder(NeuralEmbedder):
    """Texts tokenized in batches of `batch_size_`, longest first (a deterministic order), rows back in input order."""

    @abstractmethod
    def _tokenize(self, texts: list[str]):
        """Model inputs for a batch of texts."""

    def transform(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
        import torch  # deferred: torch loads only when a model is used

        self._check_fitted()
        ok = np.array([isinstance(text, str) for text in texts], dtype=bool)
        rows = np.flatnonzero(ok)
        rows = rows[np.argsort([-len(texts[i]) for i in rows], kind="stable")]
        out = np.full((len(texts), self.spec.dim), np.nan, dtype=np.float32)

        def embed(start: int, stop: int) -> None:
            chunk = rows[start:stop]
            out[chunk] = self._embed(self._tokenize([texts[i] for i in chunk]))

        with torch.inference_mode(), tqdm(total=len(rows), desc=self.spec.name, unit="row") as progress:
            self._in_batches(len(rows), embed, progress)
        return self._output(out), ok


class OpenClipLoading:
    """Loads an open_clip model: hub (`hf-hub:`), built-in name + pretrained tag, local-dir, or the HF cache."""

    def _open_clip_target(self) -> tuple[str, str | None]:
        """(model name, pretrained) to give open_clip; a cache snapshot / file when the hub cannot be used."""
        import open_clip  # deferred: open_clip loads only when a model is used

        source, tag = self.spec.source or "", self.spec.pretrained
        if source.startswith(LOCAL_DIR):
            return source, tag
        if source.startswith("hf-hub:"):
            cached = use_cache_instead(self.spec, source.removeprefix("hf-hub:"), (OPEN_CLIP_CONFIG,))
            return (source, tag) if cached is None else (f"{LOCAL_DIR}{cached.parent}", None)
        hf_hub = (open_clip.get_pretrained_cfg(source, tag or "") or {}).get("hf_hub", "")
        if not hf_hub:
            return source, tag  # a URL download (or no weights): open_clip's own cache
        repo, filename = os.path.split(hf_hub)  # "org/name/" -> open_clip's default weight file names
        weights = (filename,) if filename else ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
        cached = use_cache_instead(self.spec, repo, weights)
        return (source, tag) if cached is None else (source, str(cached))

    def _load_open_clip(self):
        """(model, image preprocess, model name used) with the weights required to load, strictly."""
        import open_clip  # deferred: open_clip loads only when a model is used

        name, pretrained = self._open_clip_target()
        try:
            model, _, preprocess = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device="cpu",
                require_pretrained=True,  # never embed with random weights because a file was missing
            )
        except Exception as err:  # hub errors come in many classes; all mean "not reachable here"
            if name.startswith(LOCAL_DIR) or (pretrained and os.path.isfile(pretrained)):
                raise  # a local file: its own error (missing weights, keys that do not match) says it best
            raise RuntimeError(unreachable_message(self.spec, f"{type(err).__name__}: {err}")) from err
        return model, preprocess, name


class OpenClipImageEmbedder(OpenClipLoading, ImageEmbedder):
    """Image tower of an open_clip model (hub, pretrained tag or local-dir folder); L2-normalised output."""

    def _load(self) -> None:
        self.model_, self.preprocess_, _ = self._load_open_clip()

    def _encode(self, pixels):
        return self.model_.encode_image(pixels)


class OpenClipTextEmbedder(OpenClipLoading, TextEmbedder):
    """Text tower of an open_clip model, tokenized by `open_clip.get_tokenizer` of the same model name."""

    def _load(self) -> None:
        import open_clip  # deferred: open_clip loads only when a model is used

        self.model_, _, name = self._load_open_clip()
        # a local-dir folder supplies its own tokenizer files
        self.tokenizer_ = self._cached_hf_tokenizer(name) or open_clip.get_tokenizer(name)

    def _cached_hf_tokenizer(self, name: str):
        """The tokenizer that the `hf_tokenizer_name` of a folder's config names, from the Hugging Face cache, when
        the folder (`name`: a local-dir folder or a cached snapshot) lacks its tokenizer files; None otherwise.

        open_clip caches only the config and weights in the model's snapshot and the tokenizer under its own repo
        (the Marqo SigLIPs: timm/ViT-B-16-SigLIP), while it reads a local-dir folder's tokenizer from the folder:
        a folder copied from such a snapshot holds no tokenizer.
        """
        from open_clip.tokenizer import DEFAULT_CONTEXT_LENGTH, HFTokenizer  # deferred: loads only when used

        if not name.startswith(LOCAL_DIR):
            return None
        folder = Path(name[len(LOCAL_DIR):])
        text_cfg = json.loads((folder / OPEN_CLIP_CONFIG).read_text()).get("model_cfg", {}).get("text_cfg", {})
        cached = hf_tokenizer_folder(self.spec, folder, text_cfg.get("hf_tokenizer_name"))
        if cached is None:
            return None
        return HFTokenizer(str(cached), context_length=text_cfg.get("context_length", DEFAULT_CONTEXT_LENGTH),
                           tokenizer_mode=text_cfg.get("tokenizer_mode"), **text_cfg.get("tokenizer_kwargs", {}))

    def _tokenize(self, texts: list[str]):
        return self.tokenizer_(texts)

    def _encode(self, tokens):
        return self.model_.encode_text(tokens)


class _ImageDataset:
    def __init__(self, paths, preprocess, draft_px: int):
        self.paths, self.preprocess, self.draft_px = list(paths), preprocess, draft_px

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        img, _ = open_image(self.paths[i], draft_px=self.draft_px)
        return (self.preprocess(img), True) if img is not None else (None, False)


def _collate(items):
    import torch  # deferred: torch loads only when a model is used

    ok = np.array([good for _, good in items], dtype=bool)
    tensors = [t for t, good in items if good]
    return (torch.stack(tensors) if tensors else None), ok
