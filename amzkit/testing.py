"""Helpers for tests and benchmarks: small random-weight models saved the way hub models are, and images.

They exercise the real loading paths (`local-dir:` folders) without a network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter

from amzkit.core.io import atomic_path, id_hash, write_json, write_npy
from amzkit.core.schema import get_schema, load_split
from amzkit.core.workdir import stage_dir
from amzkit.embed.aesthetic import aesthetic_mlp
from amzkit.embed.registry import AESTHETIC_HEAD_FILES
from amzkit.images.decode import read_header
from amzkit.ml.base import RunInputs
from amzkit.ml.featureset import FeatureSet
from amzkit.ml.folds import make_folds
from amzkit.ml.trees import LightGBMLearner, TreeLearner

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


def save_random_open_clip(folder: str | Path, model_cfg: dict | str = TINY_CLIP_CONFIG, seed: int = 0) -> Path:
    """Save an open_clip model with random weights as a `local-dir:` folder (config + weights).

    `model_cfg` is a config dict or the name of a built-in open_clip architecture (e.g. "ViT-B-16-SigLIP").
    """
    import open_clip  # deferred: open_clip loads only when a model is used
    import torch

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    if isinstance(model_cfg, str):
        config = open_clip.get_model_config(model_cfg)
        model = open_clip.create_model(model_cfg, pretrained=None)
        preprocess = {"size": config["vision_cfg"]["image_size"]}
    else:
        config, model, preprocess = model_cfg, open_clip.CLIP(**model_cfg), {}
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}))
    return folder


def save_random_aesthetic(folder: str | Path, model_cfg: dict | str = TINY_CLIP_CONFIG, seed: int = 0,
                          head_name: str | None = None, head_in: int | None = None) -> Path:
    """A `local-dir:` folder for the aesthetic loader: a random open_clip model plus a random aesthetic MLP head.

    The head's input width is the model's embed_dim (`head_in` overrides it, to build a mismatched pair); its
    hidden widths are the real predictor's 1024/128/64/16. `head_name` defaults to aesthetic_mlp.pth.
    """
    import open_clip  # deferred: open_clip loads only when a model is used
    import torch


    folder = save_random_open_clip(folder, model_cfg, seed)
    config = open_clip.get_model_config(model_cfg) if isinstance(model_cfg, str) else model_cfg
    torch.manual_seed(seed + 1)
    head = aesthetic_mlp((head_in or config["embed_dim"], 1024, 128, 64, 16, 1))
    torch.save({f"layers.{key}": value for key, value in head.state_dict().items()},
               folder / (head_name or AESTHETIC_HEAD_FILES[0]))
    return folder


def write_product_jpegs(folder: str | Path, count: int, size: int = 1000, seed: int = 0) -> list[str]:
    """`count` photo-like JPEGs of size x size, quality 90, each written atomically and reused when present and
    whole (one cut short by an interrupted run is written again).

    Gradient, shapes and smoothed sensor noise give files of ~100 KB at 1000 px, like real product photos
    (pure noise would make entropy decoding dominate and hide what draft-mode decoding saves).
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    paths = []
    ramp = np.linspace(0, 1, size, dtype=np.float32)
    for i in range(count):
        path = folder / f"photo_{size}_{i:05d}.jpg"
        paths.append(str(path))
        colour = rng.uniform(40, 220, 3)
        if read_header(str(path), verify=True)[:3] == ("ok", size, size):
            continue
        base = colour[None, None, :] * (0.6 + 0.4 * ramp[:, None, None] * ramp[None, :, None])
        noise = rng.normal(0, 12, (size, size, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = rng.integers(0, size // 2, 2)
            draw.ellipse([x0, y0, x0 + size // 3, y0 + size // 4], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        with atomic_path(path) as tmp:
            img.save(tmp, format="JPEG", quality=90)
    return paths


def write_embedding_run(work_dir: str | Path, name: str, splits: dict[str, tuple[np.ndarray, np.ndarray]]) -> Path:
    """Write a finished 01_extract run from arrays: splits maps 'train'/'test' to (embeddings, ids)."""
    run = stage_dir(work_dir, "01_extract") / name
    manifest = {"model": name, "splits": {}}
    for split, (embeddings, ids) in splits.items():
        ok = np.isfinite(embeddings).all(axis=1)
        write_npy(run / f"{split}.npy", embeddings)
        write_npy(run / f"{split}_ok.npy", ok)
        manifest["splits"][split] = {"rows": len(ids), "ok": int(ok.sum()), "id_sha256": id_hash(ids)}
        manifest["dim"] = int(embeddings.shape[1])
    write_json(run / "manifest.json", manifest)
    write_json(run / "metrics.json", manifest)
    return run


def dev_competition(train_csv: str | Path, schema: str = "amazon2023", n_test: int = 64) -> dict:
    """A train/test pair from one labelled CSV of real rows (benchmarks): test = the first `n_test` rows,
    unlabelled and with negated ids so that no id is shared."""
    schema_ = get_schema(schema)
    train = load_split(train_csv, schema_, "train")
    test = train.head(n_test).drop(columns=[schema_.target])
    test[schema_.id_column] = [str(-1 - int(i)) for i in test[schema_.id_column]]  # ids are text as written
    return {"train": train, "test": test}


def synthetic_inputs(y: np.ndarray, n_test: int = 0, work_dir: str | Path = ".", groups: np.ndarray | None = None,
                     seed: int = 42) -> RunInputs:
    """RunInputs over `len(y)` train rows (target `y`) and `n_test` test rows with no text: for learners whose
    features come from a FeatureSet built in the test. Every row is its own product unless `groups` says otherwise."""
    n_train = len(y)
    data = {"train": pd.DataFrame({"sample_id": np.arange(n_train), "price": np.asarray(y, dtype=float)}),
            "test": pd.DataFrame({"sample_id": np.arange(n_train, n_train + n_test)})}
    rows = np.arange(n_train + n_test) if groups is None else np.asarray(groups)
    return RunInputs(data, get_schema("amazon2025"), Path(work_dir), seed=seed, row_groups=rows)


def feature_learner(features: FeatureSet, y: np.ndarray, learner: type[TreeLearner] = LightGBMLearner,
                    groups: np.ndarray | None = None, **params) -> TreeLearner:
    """A tree learner prepared on a FeatureSet built in the test (its n_train train rows, the rest test rows)."""
    inputs = synthetic_inputs(y, len(features.static) - features.n_train, groups=groups)
    return learner(**{"num_threads": 1, **params}).prepare_with(inputs, features)


TINY_BERT_CONFIG = {"hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 2, "intermediate_size": 64,
                    "max_position_embeddings": 128}
BERT_SPECIAL_TOKENS = ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]")


def save_random_bert(folder: str | Path, texts: list[str], config: dict | None = None, seed: int = 0) -> Path:
    """Save a BERT with random weights and a word-level vocabulary of `texts` as a `local-dir:` folder (config,
    weights, tokenizer), for fine-tuning tests that must not need a network. `config` overrides TINY_BERT_CONFIG."""
    import torch  # deferred: torch / transformers load only for the helpers that need them
    from transformers import BertConfig, BertModel, BertTokenizer

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    words = sorted({token for text in texts for token in _word_pieces(text.lower())})
    vocab = {token: i for i, token in enumerate([*BERT_SPECIAL_TOKENS, *words])}
    torch.manual_seed(seed)
    model = BertModel(BertConfig(vocab_size=len(vocab), **{**TINY_BERT_CONFIG, **(config or {})}))
    model.save_pretrained(folder)
    BertTokenizer(vocab=vocab, do_lower_case=True).save_pretrained(folder)
    return folder


PRICE_WORDS = {"budget": 3.0, "basic": 8.0, "premium": 40.0, "luxury": 150.0}
FILLER_WORDS = ("soft", "blue", "steel", "travel", "kitchen", "home", "pack", "classic", "daily", "fresh", "green",
                "large", "small", "round", "cotton", "glass")


def planted_price_world(n_train: int = 400, n_test: int = 80, seed: int = 0, dim: int = 16) -> dict:
    """A 2025-schema train/test pair whose price is planted twice: a price word in the item name (one of
    PRICE_WORDS, times noise of 10%) and an embedding (the word's centre plus noise) for embedding learners.

    Returns {"data": {"train", "test"}, "embedding": (n_train + n_test, dim) float32, "texts": catalog texts}.
    """
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    ids = rng.permutation(np.arange(10_000, 10_000 + n))
    word = rng.integers(0, len(PRICE_WORDS), n)
    names = list(PRICE_WORDS)
    centres = rng.normal(size=(len(PRICE_WORDS), dim)).astype(np.float32)
    embedding = centres[word] + rng.normal(0, 0.3, (n, dim)).astype(np.float32)
    price = np.array([PRICE_WORDS[names[w]] for w in word]) * np.exp(rng.normal(0, 0.1, n))
    texts = [f"Item Name: {names[w]} {' '.join(rng.choice(FILLER_WORDS, 3))} item\nValue: {rng.integers(1, 13)}.0\n"
             f"Unit: Count" for w in word]
    train = pd.DataFrame({"sample_id": ids[:n_train], "catalog_content": texts[:n_train], "image_link": "",
                          "price": price[:n_train]})
    test = pd.DataFrame({"sample_id": ids[n_train:], "catalog_content": texts[n_train:], "image_link": ""})
    return {"data": {"train": train, "test": test}, "embedding": embedding, "texts": texts}


def _word_pieces(text: str) -> list[str]:
    """Words and single punctuation marks, as BERT's basic tokenizer splits them."""
    pieces, word = [], ""
    for char in text:
        if char.isalnum():
            word += char
            continue
        if word:
            pieces.append(word)
            word = ""
        if not char.isspace():
            pieces.append(char)
    return [*pieces, word] if word else pieces


def kill_after_writing(monkeypatch, module, file_suffix: str, error: BaseException, writer: str = "write_csv"):
    """Make `module.<writer>(frame, path)` raise `error` right after it has written a file whose name ends in
    `file_suffix`: a session killed in the middle of a stage's saving."""
    real = getattr(module, writer)

    def write(frame, path, *args, **kwargs):
        real(frame, path, *args, **kwargs)
        if str(path).endswith(file_suffix):
            raise error

    monkeypatch.setattr(module, writer, write)


def counting_fits(learner_class: type, kill_at: int | None = None) -> type:
    """A subclass of `learner_class` that counts its fit calls (`fits`) and, when `kill_at` is given, raises
    KeyboardInterrupt from inside that fit, as a killed Kaggle session stops mid-run."""

    class Counting(learner_class):
        def fit(self, rows, y, weight=None):
            self.fits = getattr(self, "fits", 0) + 1
            if self.fits == kill_at:
                raise KeyboardInterrupt(f"killed in fit {kill_at}")
            return super().fit(rows, y, weight)

    Counting.__name__ = Counting.__qualname__ = f"Counting{learner_class.__name__}"
    return Counting


GOLDEN_PRICE, ORDINARY_PRICE = 5000.0, 8.0


def golden_copies(price: np.ndarray, n_folds: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Fold 0's first two rows (plain KFold, seed 0, labels ignored) made copies of one product, as group folds
    keep copies together: the prices with both copies at an ordinary price, the prices with both at a price no
    other row has (GOLDEN_PRICE), and the copies' row numbers. A learner that never reads a scored row's label
    gives fold 0 the same predictions under both, and none near GOLDEN_PRICE."""
    copies = np.flatnonzero(make_folds(np.ones(len(price)), n_folds, 0, "kfold") == 0)[:2]
    ordinary, golden = np.array(price, dtype=float), np.array(price, dtype=float)
    ordinary[copies], golden[copies] = ORDINARY_PRICE, GOLDEN_PRICE
    return ordinary, golden, copies


# torch 2.8+'s CUDA 12.8 builds (Kaggle's): no sm_60 (P100) kernels
CU128_ARCHS = ["sm_75", "sm_80", "sm_86", "sm_90", "sm_100", "sm_120", "compute_120"]


def pretend_gpus(monkeypatch, capability: tuple[int, int] | list[tuple[int, int]] = (7, 5), count: int = 1,
                 archs: list[str] | None = None, name: str = "Tesla T4") -> None:
    """Make torch.cuda report `count` GPUs of `capability` (or one capability per GPU) and a build for `archs` (a
    CPU machine's tests of the device choice; nothing runs on them)."""
    import torch  # deferred: only the tests of the device choice need it

    each = list(capability) if isinstance(capability, list) else [capability] * max(count, 1)

    def device_capability(device=None):
        index = torch.device(device).index if isinstance(device, str | torch.device) else device
        return each[index or 0]

    monkeypatch.setattr(torch.cuda, "is_available", lambda: count > 0)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "get_device_capability", device_capability)
    monkeypatch.setattr(torch.cuda, "get_arch_list", lambda: list(CU128_ARCHS if archs is None else archs))
    monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
