"""The LAION aesthetic predictor: CLIP image embedding -> L2 norm -> MLP head, one float32 score per image.

Tiny random open_clip models with random heads, saved as a `local-dir:` folder, go through the real loading path;
the registry row (ViT-L/14 + sac+logos+ava1-l14-linearMSE.pth) is checked offline for its fast refusal.
"""

from __future__ import annotations

import dataclasses
import functools
import http.server
import shutil
import socket
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

from amzkit.core.schema import load_data
from amzkit.embed.aesthetic import AESTHETIC_LINEAR
from amzkit.embed.factory import create_embedder
from amzkit.embed.registry import AESTHETIC_HEAD_FILES, AESTHETIC_HEAD_URL, MODELS, get_model_spec, registry_table
from amzkit.embed.runs import load_embeddings
from amzkit.stages.extract import extract
from amzkit.testing import TINY_CLIP_CONFIG, save_random_aesthetic, save_random_open_clip, write_product_jpegs

ORIGINAL_HEAD = "sac+logos+ava1-l14-linearMSE.pth"


@pytest.fixture(autouse=True)
def offline_with_empty_caches(tmp_path, monkeypatch):
    """No hub, empty Hugging Face and torch hub caches: nothing the test machine holds can leak in."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf_cache"))
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))


@pytest.fixture(scope="module")
def aesthetic_dir(tmp_path_factory) -> Path:
    return save_random_aesthetic(tmp_path_factory.mktemp("aesthetic") / "tiny-aesthetic")


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> list[str | None]:
    folder = tmp_path_factory.mktemp("photos")
    paths = write_product_jpegs(folder, 4, size=200)
    (folder / "bad.jpg").write_bytes(b"<html>not an image</html>")
    return [paths[0], None, paths[1], str(folder / "bad.jpg"), paths[2], paths[3]]


EXPECTED_OK = [True, False, True, False, True, True]


def _scores(folder: Path, paths, **kw):
    spec, embedder = create_embedder(f"local-dir:{folder}", batch_size=2, device="cpu", num_workers=0, **kw)
    return (spec, embedder.fit(), *embedder.transform(paths))


def _by_hand(folder: Path, head_file: Path, paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """(scores of the normalised embeddings, scores of the raw ones): open_clip's own load, the head as matmuls."""
    import open_clip
    import torch

    from amzkit.images.decode import open_image

    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", pretrained=None)
    state = torch.load(folder / "open_clip_pytorch_model.bin", weights_only=True)
    model.load_state_dict(state)
    model.eval()
    pixels = torch.stack([preprocess(open_image(path, draft_px=32)[0]) for path in paths])
    with torch.no_grad():
        raw = model.encode_image(pixels).float()
    head = torch.load(head_file, weights_only=True)

    def mlp(x):
        for i in AESTHETIC_LINEAR:  # Linear and Dropout only: in eval mode an affine chain
            x = x @ head[f"layers.{i}.weight"].T + head[f"layers.{i}.bias"]
        return x.numpy()

    return mlp(raw / raw.norm(dim=-1, keepdim=True)), mlp(raw)


# --------------------------------------------------------------------------- a local folder


def test_a_folder_with_a_head_file_is_routed_to_one_score_column(aesthetic_dir, tmp_path):
    spec = get_model_spec(f"local-dir:{aesthetic_dir}")
    assert (spec.name, spec.modality, spec.loader, spec.dim, spec.normalize, spec.image_px) == (
        "tiny-aesthetic", "image", "aesthetic", 1, False, 32)
    assert spec.head == str(aesthetic_dir / AESTHETIC_HEAD_FILES[0]) and spec.source == f"local-dir:{aesthetic_dir}"
    text = get_model_spec(f"local-dir-text:{aesthetic_dir}")  # the text tower ignores the head
    assert (text.loader, text.dim, text.head) == ("open_clip_text", 16, "")
    plain = get_model_spec(f"local-dir:{save_random_open_clip(tmp_path / 'plain')}")
    assert (plain.loader, plain.dim, plain.normalize, plain.head) == ("open_clip", 16, True, "")


@pytest.mark.parametrize("head_name", AESTHETIC_HEAD_FILES)
def test_score_is_the_head_applied_to_the_normalised_clip_embedding(head_name, tmp_path, photos):
    folder = save_random_aesthetic(tmp_path / "model", head_name=head_name, seed=3)
    spec, _, x, ok = _scores(folder, photos)
    assert spec.head == str(folder / head_name)
    assert x.dtype == np.float32 and x.shape == (len(photos), 1)
    assert ok.tolist() == EXPECTED_OK
    assert np.isnan(x[~ok]).all() and np.isfinite(x[ok]).all()
    good = [path for path, good in zip(photos, EXPECTED_OK, strict=True) if good]
    normalised, raw = _by_hand(folder, folder / head_name, good)
    np.testing.assert_allclose(x[ok], normalised, rtol=1e-5, atol=1e-6)
    assert not np.allclose(x[ok], raw, rtol=1e-3, atol=1e-5), "the head must see the L2-normalised embedding"
    assert np.ptp(x[ok]) > 1e-4, "different photos score differently"


def test_scores_are_deterministic_across_two_loads(aesthetic_dir, photos):
    first, second = _scores(aesthetic_dir, photos)[2], _scores(aesthetic_dir, photos)[2]
    assert first.tobytes() == second.tobytes()


def test_mixed_precision_runs_the_clip_in_bf16_and_the_head_in_fp32(aesthetic_dir, photos):
    """The CUDA autocast path, exercised with CPU bf16 autocast (no GPU here)."""
    import torch

    _, embedder, fp32, _ = _scores(aesthetic_dir, photos)
    embedder._autocast_dtype = lambda: torch.bfloat16
    seen = []
    embedder.model_["head"].register_forward_hook(lambda module, args, out: seen.append((args[0].dtype, out.dtype)))
    mixed, ok = embedder.transform(photos)
    assert seen and set(seen) == {(torch.float32, torch.float32)}
    assert mixed.dtype == np.float32 and ok.tolist() == EXPECTED_OK
    np.testing.assert_allclose(mixed[ok], fp32[ok], atol=2e-3)


def test_extract_stores_one_float32_score_per_row(aesthetic_dir, tmp_path):
    from amzkit.app.demo import make_demo

    data_dir = make_demo(tmp_path / "data", n_train=6, n_test=3, seed=1, image_px=64).train_csv.parent
    data = load_data(data_dir, "amazon2025")
    manifest = extract(data, data_dir, tmp_path / "work", "amazon2025", f"local-dir:{aesthetic_dir}",
                       batch_size=4, device="cpu", num_workers=0)
    assert (manifest["model"], manifest["dim"], manifest["dtype"]) == ("tiny-aesthetic", 1, "float32")
    assert manifest["architecture"] == "open_clip + aesthetic MLP"
    assert manifest["splits"]["train"]["ok"] == 6 and manifest["splits"]["test"]["ok"] == 3
    x, ok = load_embeddings(tmp_path / "work", "tiny-aesthetic", "train", data["train"]["sample_id"])
    assert x.shape == (6, 1) and ok.all() and np.isfinite(x).all() and np.ptp(x) > 0


# --------------------------------------------------------------------------- refusals


def test_a_head_for_another_clip_width_is_refused_naming_the_file(tmp_path, photos):
    folder = save_random_aesthetic(tmp_path / "mismatch", head_in=768)  # the real head's width on a 16-d CLIP
    _, embedder = create_embedder(f"local-dir:{folder}", device="cpu")
    with pytest.raises(ValueError, match=r"takes 768-d embeddings but the CLIP .* embeds images in 16-d") as caught:
        embedder.fit()
    assert str(folder / AESTHETIC_HEAD_FILES[0]) in str(caught.value)


def test_files_that_are_not_an_aesthetic_head_are_refused(aesthetic_dir, tmp_path):
    folder = tmp_path / "wrong-head"
    shutil.copytree(aesthetic_dir, folder)
    head = folder / AESTHETIC_HEAD_FILES[0]
    shutil.copy(folder / "open_clip_pytorch_model.bin", head)  # a state dict, but of the CLIP
    with pytest.raises(ValueError, match=r"wrong-head/aesthetic_mlp.pth is not an aesthetic MLP head.*layers\.7"):
        create_embedder(f"local-dir:{folder}", device="cpu")[1].fit()
    head.write_bytes(b"<html>404</html>")  # a failed download saved as the file
    with pytest.raises(RuntimeError, match=r"could not read the aesthetic MLP head .*wrong-head/aesthetic_mlp.pth"):
        create_embedder(f"local-dir:{folder}", device="cpu")[1].fit()


def test_a_768_d_clip_without_quick_gelu_under_the_laion_head_is_warned_about(tmp_path):
    """The released head was trained on OpenAI CLIP ViT-L/14, whose activations are QuickGELU."""
    config = {**TINY_CLIP_CONFIG, "embed_dim": 768}
    gelu = save_random_aesthetic(tmp_path / "gelu", config)
    with pytest.warns(UserWarning, match=r"uses GELU, but .* QuickGELU.*\"quick_gelu\": true"):
        create_embedder(f"local-dir:{gelu}", device="cpu")[1].fit()
    quick = save_random_aesthetic(tmp_path / "quick", {**config, "quick_gelu": True})
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        create_embedder(f"local-dir:{quick}", device="cpu")[1].fit()
    assert not [w for w in caught if "QuickGELU" in str(w.message)]


# --------------------------------------------------------------------------- the registry row


def test_the_registry_row_describes_vit_l14_and_the_laion_head():
    spec = MODELS["laion-aesthetic"]
    assert (spec.modality, spec.loader, spec.dim, spec.normalize, spec.image_px) == ("image", "aesthetic", 1, False,
                                                                                    224)
    assert (spec.source, spec.pretrained) == ("ViT-L-14-quickgelu", "openai")  # OpenAI CLIP uses QuickGELU
    assert spec.head == AESTHETIC_HEAD_URL and AESTHETIC_HEAD_URL.endswith("sac%2Blogos%2Bava1-l14-linearMSE.pth")
    assert 427 < spec.params_m < 430 and spec.license.startswith("MIT") and "Apache-2.0" in spec.license
    assert registry_table().loc["laion-aesthetic", "head"] == AESTHETIC_HEAD_URL


def _closed_port() -> int:
    with socket.socket() as sock:  # a port nobody listens on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_registry_model_offline_fails_at_once_with_the_local_dir_hint():
    _, embedder = create_embedder("laion-aesthetic", device="cpu")
    with pytest.raises(RuntimeError, match="HF_HUB_OFFLINE is set and its MLP head is not in the torch hub cache"
                       ) as caught:
        embedder.fit()
    message = str(caught.value)
    assert "-p model local-dir:/kaggle/input/<dataset>/<folder>" in message
    assert ORIGINAL_HEAD in message and "open_clip_config.json" in message and "ViT-L-14-quickgelu" in message


def test_unreachable_hosts_fail_fast_and_a_cached_head_is_used(aesthetic_dir, tmp_path, monkeypatch):
    port = _closed_port()
    monkeypatch.delenv("HF_HUB_OFFLINE")
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    row = dataclasses.replace(MODELS["laion-aesthetic"], head=f"http://127.0.0.1:{port}/sac%2Blogos%2Bava1-l14-"
                                                               "linearMSE.pth")
    monkeypatch.setitem(MODELS, "laion-aesthetic", row)
    with pytest.raises(RuntimeError, match=r"127\.0\.0\.1 is unreachable from here .*local-dir:"):
        create_embedder("laion-aesthetic", device="cpu")[1].fit()
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / ORIGINAL_HEAD
    cached.parent.mkdir(parents=True)
    shutil.copy(aesthetic_dir / AESTHETIC_HEAD_FILES[0], cached)
    with pytest.raises(RuntimeError, match="hub is unreachable from here and it is not in the Hugging Face cache"):
        create_embedder("laion-aesthetic", device="cpu")[1].fit()  # the head was found: the CLIP is what is missing


def test_a_reachable_head_url_is_downloaded_into_the_torch_hub_cache(aesthetic_dir, tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    shutil.copy(aesthetic_dir / AESTHETIC_HEAD_FILES[0], served / ORIGINAL_HEAD)
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *args: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    try:
        monkeypatch.delenv("HF_HUB_OFFLINE")
        monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{_closed_port()}")
        url = f"http://127.0.0.1:{httpd.server_address[1]}/sac%2Blogos%2Bava1-l14-linearMSE.pth"
        monkeypatch.setitem(MODELS, "laion-aesthetic", dataclasses.replace(MODELS["laion-aesthetic"], head=url))
        with pytest.raises(RuntimeError, match="hub is unreachable from here"):  # no CLIP weights here
            create_embedder("laion-aesthetic", device="cpu")[1].fit()
    finally:
        httpd.shutdown()
    cached = tmp_path / "torch_home" / "hub" / "checkpoints" / ORIGINAL_HEAD
    assert cached.read_bytes() == (served / ORIGINAL_HEAD).read_bytes()
    assert not [p for p in cached.parent.iterdir() if p != cached], "no partial download left behind"
