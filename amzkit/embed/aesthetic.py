"""The LAION aesthetic predictor: an MLP head on L2-normalised OpenAI CLIP ViT-L/14 image embeddings."""

from __future__ import annotations

import warnings
from pathlib import Path
from urllib.parse import unquote, urlparse

from amzkit.embed.hub import hub_offline, unreachable_message, url_reachable
from amzkit.embed.neural import ImageEmbedder, OpenClipLoading
from amzkit.embed.registry import AESTHETIC_HEAD_FILES, LAION_HEAD_WIDTH, OPEN_CLIP_CONFIG, ModelSpec

AESTHETIC_DROPOUT = {1: 0.2, 3: 0.2, 5: 0.1}  # positions of the Dropout layers in its nn.Sequential `layers`


AESTHETIC_LINEAR = (0, 2, 4, 6, 7)  # positions of its Linear layers: state-dict keys layers.<i>.weight / .bias


class AestheticEmbedder(OpenClipLoading, ImageEmbedder):
    """LAION aesthetic score: an MLP head on the L2-normalised open_clip image embedding; (n, 1) float32 rows.

    The CLIP runs under the device's autocast like every image tower; the head runs in float32, as the reference.
    """

    def _load(self) -> None:
        import torch  # deferred: torch loads only when a model is used

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
        import torch  # deferred: torch loads only when a model is used

        unit = torch.nn.functional.normalize(self.model_["clip"].encode_image(pixels).float(), dim=-1)
        with torch.autocast(unit.device.type, enabled=False):
            return self.model_["head"](unit)


def aesthetic_mlp(widths: tuple[int, ...] = (768, 1024, 128, 64, 16, 1)):
    """The aesthetic predictor's layers (Linear / Dropout, no activations) as an nn.Sequential.

    Its state dict, with keys prefixed by "layers.", is the file format of sac+logos+ava1-l14-linearMSE.pth.
    """
    import torch  # deferred: torch loads only when a model is used

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
    import torch  # deferred: torch loads only when a model is used

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # truncated download, not a torch file, pickled classes
        raise RuntimeError(f"could not read the aesthetic MLP head {path}: {type(err).__name__}: {err}") from err


def _aesthetic_head_file(spec: ModelSpec) -> Path:
    """The head's file: the folder's own, or the URL's download in the torch hub cache (fetched when reachable)."""
    import torch  # deferred: torch loads only when a model is used

    if not spec.head.startswith(("https://", "http://")):
        path = Path(spec.head).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"{spec.name}: the aesthetic MLP head {path} is missing")
        return path
    cached = Path(torch.hub.get_dir()) / "checkpoints" / unquote(urlparse(spec.head).path.rsplit("/", 1)[-1])
    if cached.is_file():
        return cached
    if hub_offline():
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
    raise RuntimeError(unreachable_message(spec, reason))


def _uses_quick_gelu(clip) -> bool:
    from open_clip.transformer import QuickGELU  # deferred: open_clip loads only when a model is used

    return any(isinstance(module, QuickGELU) for module in clip.visual.modules())


def _image_embed_dim(clip, image_px: int) -> int:
    """Width of an open_clip model's image embedding (its vision tower's output_dim, else one probe image)."""
    import torch  # deferred: torch loads only when a model is used

    dim = getattr(clip.visual, "output_dim", None)
    if dim:
        return int(dim)
    with torch.inference_mode():
        return int(clip.encode_image(torch.zeros(1, 3, image_px, image_px)).shape[-1])
