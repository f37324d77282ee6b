"""01_extract throughput: amzkit's image path vs a naive loop, in one process run.

Both embed the same generated 1000x1000 JPEGs with the same open_clip model (random weights, loaded from a
`local-dir:` folder). amzkit: DataLoader workers, Pillow draft-mode decoding, batched inference_mode
(fp16/bf16 autocast on CUDA). Naive: sequential PIL open (full decode), the model's preprocess, one
forward per batch, no workers. Also prints the decode-only rate with and without draft mode, and the
model's forward-only rate (on a GPU, end-to-end should reach >= 80% of it).

Targets on a 2-core CPU machine: end-to-end >= 2.5x naive; draft decode >= 1.5x full decode.

    .venv/bin/python benchmarks/extract_throughput.py [--images 1000] [--model tiny|ViT-B-16-SigLIP] [--device cpu]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one


def decode_rate(paths: list[str], draft_px: int | None) -> float:
    from amzkit.images.decode import open_image

    started = time.perf_counter()
    for path in paths:
        img, status = open_image(path, draft_px=draft_px)
        assert img is not None, status
    return len(paths) / (time.perf_counter() - started)


def naive_rate(model_dir: Path, paths: list[str], batch_size: int, device: str) -> tuple[float, np.ndarray]:
    import open_clip
    import torch
    from PIL import Image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{model_dir}", device=device)
    model.eval()
    started = time.perf_counter()
    outputs = []
    with torch.inference_mode():
        for start in range(0, len(paths), batch_size):
            batch = [preprocess(Image.open(p).convert("RGB")) for p in paths[start:start + batch_size]]
            features = model.encode_image(torch.stack(batch).to(device)).float()
            outputs.append(torch.nn.functional.normalize(features, dim=-1).cpu().numpy())
    return len(paths) / (time.perf_counter() - started), np.concatenate(outputs)


def amzkit_rate(model_dir: Path, paths: list[str], batch_size: int, device: str) -> tuple[float, np.ndarray]:
    from amzkit.embed.factory import create_embedder

    _, embedder = create_embedder(f"local-dir:{model_dir}", batch_size=batch_size, device=device)
    embedder.fit()
    started = time.perf_counter()
    embeddings, ok = embedder.transform(paths)
    assert ok.all()
    return len(paths) / (time.perf_counter() - started), embeddings


def forward_rate(model_dir: Path, batch_size: int, device: str, image_px: int, batches: int = 10) -> float:
    import open_clip
    import torch

    model, _, _ = open_clip.create_model_and_transforms(f"local-dir:{model_dir}", device=device)
    model.eval()
    pixels = torch.randn(batch_size, 3, image_px, image_px, device=device)
    amp = torch.float16 if device == "cuda" and torch.cuda.get_device_capability()[0] < 8 else torch.bfloat16
    with torch.inference_mode(), torch.autocast(device, dtype=amp, enabled=device == "cuda"):
        model.encode_image(pixels)
        if device == "cuda":
            torch.cuda.synchronize()
        started = time.perf_counter()
        for _ in range(batches):
            model.encode_image(pixels)
        if device == "cuda":
            torch.cuda.synchronize()
    return batches * batch_size / (time.perf_counter() - started)


def main() -> None:
    from amzkit.testing import TINY_CLIP_CONFIG, save_random_open_clip, write_product_jpegs

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--model", default="tiny", help="'tiny' or an open_clip architecture, e.g. ViT-B-16-SigLIP")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--cache", default=str(Path(tempfile.gettempdir()) / "amzkit_bench_images"))
    args = parser.parse_args()

    started = time.perf_counter()
    paths = write_product_jpegs(args.cache, args.images, size=1000)
    print(f"{len(paths)} JPEGs 1000x1000 ready in {time.perf_counter() - started:.1f} s")
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = save_random_open_clip(Path(tmp) / "model", TINY_CLIP_CONFIG if args.model == "tiny" else args.model)
        import json

        config = json.loads((model_dir / "open_clip_config.json").read_text())
        image_px = config["model_cfg"]["vision_cfg"]["image_size"]
        full = decode_rate(paths[:300], draft_px=None)
        draft = decode_rate(paths[:300], draft_px=max(image_px, 224))
        naive, naive_out = naive_rate(model_dir, paths, args.batch_size, args.device)
        fast, fast_out = amzkit_rate(model_dir, paths, args.batch_size, args.device)
        forward = forward_rate(model_dir, args.batch_size, args.device, image_px)
    agreement = float(np.mean(np.sum(naive_out * fast_out.astype(np.float32), axis=1)))
    print(f"\nmodel {args.model} ({image_px}px) on {args.device}, batch {args.batch_size}")
    print(f"{'path':38s} {'img/s':>9s}")
    print(f"{'decode only, full':38s} {full:9.1f}")
    print(f"{'decode only, draft mode':38s} {draft:9.1f}   ratio {draft / full:.2f}x (target >= 1.5x)")
    print(f"{'naive loop end to end':38s} {naive:9.1f}")
    print(f"{'amzkit end to end':38s} {fast:9.1f}   ratio {fast / naive:.2f}x (target >= 2.5x)")
    print(f"{'model forward only':38s} {forward:9.1f}   amzkit reaches {fast / forward:.0%} of it")
    print(f"mean cosine between the two paths' embeddings: {agreement:.3f} (draft decoding resamples differently)")


if __name__ == "__main__":
    main()
