"""Helpers for tests and benchmarks: small random-weight models saved the way hub models are, and images.

They exercise the real loading paths (`local-dir:` folders) without a network.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from amzkit.core.io import id_hash, write_json, write_npy
from amzkit.core.schema import get_schema, load_split
from amzkit.core.workdir import stage_dir
from amzkit.embed.aesthetic import aesthetic_mlp
from amzkit.embed.registry import AESTHETIC_HEAD_FILES

TINY_CLIP_CONFIG = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


def save_random_open_clip(folder: str | Path, model_cfg: dict | str = TINY_CLIP_CONFIG, seed: int = 0) -> Path:
    """Save an open_clip model with random weights as a `local-dir:` folder (config + weights).

    `model_cfg` is a config dict or the name of a built-in open_clip architecture (e.g. "ViT-B-16-SigLIP").
    """
    import open_clip
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
    import open_clip
    import torch


    folder = save_random_open_clip(folder, model_cfg, seed)
    config = open_clip.get_model_config(model_cfg) if isinstance(model_cfg, str) else model_cfg
    torch.manual_seed(seed + 1)
    head = aesthetic_mlp((head_in or config["embed_dim"], 1024, 128, 64, 16, 1))
    torch.save({f"layers.{key}": value for key, value in head.state_dict().items()},
               folder / (head_name or AESTHETIC_HEAD_FILES[0]))
    return folder


def write_product_jpegs(folder: str | Path, count: int, size: int = 1000, seed: int = 0) -> list[str]:
    """`count` photo-like JPEGs of size x size, quality 90, reused when present.

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
        if path.is_file():
            continue
        base = colour[None, None, :] * (0.6 + 0.4 * ramp[:, None, None] * ramp[None, :, None])
        noise = rng.normal(0, 12, (size, size, 1)).astype(np.float32)
        img = Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).filter(ImageFilter.GaussianBlur(1.5))
        draw = ImageDraw.Draw(img)
        for _ in range(4):
            x0, y0 = rng.integers(0, size // 2, 2)
            draw.ellipse([x0, y0, x0 + size // 3, y0 + size // 4], fill=tuple(int(c) for c in rng.integers(0, 255, 3)))
        img.save(path, format="JPEG", quality=90)
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
    test[schema_.id_column] = -1 - test[schema_.id_column]
    return {"train": train, "test": test}
