"""The embedder factory (open_clip's shape): a registry name or model folder -> (spec, unfitted embedder)."""

from __future__ import annotations

from amzkit.embed.aesthetic import AestheticEmbedder
from amzkit.embed.neural import OpenClipImageEmbedder, OpenClipTextEmbedder
from amzkit.embed.registry import get_model_spec
from amzkit.embed.simple import ColorStatsEmbedder, TfidfSvdEmbedder
from amzkit.embed.transformers_models import TransformersImageEmbedder, TransformersTextEmbedder

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
