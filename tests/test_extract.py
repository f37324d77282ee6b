"""01_extract: featurizers, image fetching, the open_clip path from a local folder, id-hash refusal."""

from __future__ import annotations

import http.server
import threading

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amzkit.app.demo import make_demo
from amzkit.stages.extract import extract
from amzkit.core.schema import load_data
from amzkit.embed.runs import load_embeddings
from amzkit.images.fetch import fetch_images
from amzkit.embed.registry import MODELS, get_model_spec
from amzkit.embed.simple import ColorStatsEmbedder
from amzkit.embed.factory import create_embedder


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory):
    files = make_demo(tmp_path_factory.mktemp("data"), n_train=40, n_test=20, seed=3)
    return files.train_csv.parent


def _png(path, color, size=(64, 48)):
    Image.new("RGB", size, color).save(path)
    return str(path)


def test_color_stats_tell_images_apart_and_mark_failures(tmp_path):
    red, blue = _png(tmp_path / "r.png", (220, 20, 20)), _png(tmp_path / "b.png", (20, 20, 220))
    (tmp_path / "bad.jpg").write_bytes(b"<html>not an image</html>")
    x, ok = ColorStatsEmbedder().transform([red, blue, str(tmp_path / "bad.jpg"), None])
    assert ok.tolist() == [True, True, False, False]
    assert np.isnan(x[2:]).all() and np.isfinite(x[:2]).all()
    names = ColorStatsEmbedder().feature_names
    assert x.shape[1] == len(names)
    assert x[0, names.index("mean_r")] > 0.8 > x[1, names.index("mean_r")]
    assert x[0, names.index("aspect_log")] == pytest.approx(np.log(64 / 48), abs=1e-6)


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    body = b""

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path.startswith("/ok"):
            self.send_response(200)
            self.send_header("Content-Length", str(len(self.body)))
            self.end_headers()
            self.wfile.write(self.body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture()
def server(tmp_path):
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), (10, 200, 10)).save(buffer, format="JPEG")
    _Handler.body, _Handler.hits = buffer.getvalue(), {}
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


def test_fetch_resolves_local_and_remote_links_and_caches(tmp_path, server):
    _png(tmp_path / "local.png", (1, 2, 3))
    links = pd.Series(["local.png", f"{server}/ok/a.jpg", f"{server}/ok/a.jpg", f"{server}/missing.jpg",
                       "nope.png", "", "ftp://x/y.jpg"])
    table = fetch_images(links, base_dir=tmp_path, cache_dir=tmp_path / "cache", max_workers=4)
    assert table["status"].tolist() == ["ok", "ok", "ok", "http_404", "missing_file", "missing_link",
                                        "unsupported_scheme"]
    assert _Handler.hits["/ok/a.jpg"] == 1, "duplicate URLs are downloaded once"
    assert table["path"][1] == table["path"][2] and Image.open(table["path"][1]).size == (32, 32)
    fetch_images(links, base_dir=tmp_path, cache_dir=tmp_path / "cache", max_workers=4)
    assert _Handler.hits["/ok/a.jpg"] == 1, "a rerun reuses the cache"
    assert not list((tmp_path / "cache").glob("*.tmp")) and not list((tmp_path / "cache").glob(".*"))


def test_extract_writes_aligned_runs_and_refuses_reordered_rows(small_demo, tmp_path):
    data = load_data(small_demo, "amazon2025")
    for model in ("color-stats", "tfidf-svd"):
        manifest = extract(data, small_demo, tmp_path, "amazon2025", model)
        assert manifest["splits"]["train"]["rows"] == 40 and manifest["splits"]["test"]["ok"] == 20
        x, ok = load_embeddings(tmp_path, model, "train", data["train"]["sample_id"])
        assert x.shape == (40, manifest["dim"]) and ok.all() and np.isfinite(x).all()
    shuffled = data["train"]["sample_id"].sample(frac=1, random_state=0)
    with pytest.raises(ValueError, match="row order"):
        load_embeddings(tmp_path, "color-stats", "train", shuffled)
    with pytest.raises(FileNotFoundError, match="run 01_extract"):
        load_embeddings(tmp_path, "fashion-clip", "train", data["train"]["sample_id"])


def test_image_model_on_a_schema_without_images_is_refused(small_demo, tmp_path):
    data = {"train": pd.DataFrame(), "test": pd.DataFrame()}
    with pytest.raises(ValueError, match="no image column"):
        extract(data, small_demo, tmp_path, "amazon2023", "color-stats")


def test_registry_has_the_roadmap_models():
    assert {"fashion-siglip", "fashion-clip", "ecommerce-b", "ecommerce-l", "clip-b32", "color-stats",
            "tfidf-svd"} <= set(MODELS)
    assert MODELS["fashion-siglip"].source == "hf-hub:Marqo/marqo-fashionSigLIP"
    assert MODELS["clip-b32"].source == "ViT-B-32-quickgelu"  # plain ViT-B-32 + openai weights is wrong
    with pytest.raises(ValueError, match="unknown model 'fashion-siglp'"):
        get_model_spec("fashion-siglp")


TINY_CLIP = {
    "embed_dim": 16,
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 8, "vocab_size": 49408, "width": 16, "heads": 1, "layers": 1},
}


@pytest.fixture(scope="module")
def tiny_open_clip_dir(tmp_path_factory):
    import json

    import open_clip
    import torch

    folder = tmp_path_factory.mktemp("tiny_clip")
    torch.manual_seed(0)
    model = open_clip.CLIP(**TINY_CLIP)
    torch.save(model.state_dict(), folder / "open_clip_pytorch_model.bin")
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": TINY_CLIP, "preprocess_cfg": {}}))
    return folder


def test_open_clip_model_loads_from_a_local_folder_and_embeds(tiny_open_clip_dir, tmp_path):
    spec, embedder = create_embedder(f"local-dir:{tiny_open_clip_dir}", batch_size=2, device="cpu")
    embedder.num_workers = 0
    embedder.fit()
    paths = [_png(tmp_path / f"{i}.png", (40 * i, 100, 200 - 30 * i)) for i in range(3)] + [None]
    x, ok = embedder.transform(paths)
    assert x.dtype == np.float16 and x.shape == (4, 16)
    assert ok.tolist() == [True, True, True, False] and np.isnan(x[3]).all()
    np.testing.assert_allclose(np.linalg.norm(x[:3].astype(np.float32), axis=1), 1.0, atol=2e-3)
    assert not np.allclose(x[0], x[2])


def test_local_folder_without_weights_is_refused(tiny_open_clip_dir, tmp_path):
    import shutil

    shutil.copy(tiny_open_clip_dir / "open_clip_config.json", tmp_path / "open_clip_config.json")
    _, embedder = create_embedder(f"local-dir:{tmp_path}", device="cpu")
    with pytest.raises(RuntimeError, match="pretrained"):
        embedder.fit()


def test_hub_model_offline_fails_with_how_to_fix(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    _, embedder = create_embedder("fashion-siglip", device="cpu")
    with pytest.raises(RuntimeError, match="local-dir:"):
        embedder.fit()


def test_unreachable_hub_fails_fast(monkeypatch):
    import socket

    with socket.socket() as sock:  # a port nobody listens on: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("HF_ENDPOINT", f"http://127.0.0.1:{port}")
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    _, embedder = create_embedder("fashion-siglip", device="cpu")
    with pytest.raises(RuntimeError, match="hub is unreachable from here.*local-dir:"):
        embedder.fit()  # the probe's message: the hub client's own half-minute of retries never started


# --- shards: kill and resume, several kernels, merge -------------------------------------------------

SHARD_ROWS_SMALL = 8


@pytest.fixture(scope="module")
def shard_data(small_demo):
    return load_data(small_demo, "amazon2025")


def _run_bytes(work_dir, model):
    run = work_dir / "01_extract" / model
    return {name: (run / name).read_bytes() for name in ("train.npy", "test.npy", "train_ok.npy", "test_ok.npy")}


def _counting_factory(monkeypatch, fail_on_call: int | None = None):
    """Wrap create_embedder so transform calls are counted and (optionally) the n-th call dies."""
    import amzkit.stages.extract as extract_module

    calls = {"n": 0}
    real_factory = extract_module.create_embedder

    def factory(*args, **kwargs):
        spec, embedder = real_factory(*args, **kwargs)
        real_transform = embedder.transform

        def transform(inputs):
            calls["n"] += 1
            if fail_on_call is not None and calls["n"] == fail_on_call:
                raise KeyboardInterrupt("simulated kill")
            return real_transform(inputs)

        embedder.transform = transform
        return spec, embedder

    monkeypatch.setattr(extract_module, "create_embedder", factory)
    return calls


@pytest.mark.parametrize("model", ["tfidf-svd", "color-stats"])
def test_killed_run_resumes_from_the_last_shard_and_matches_byte_for_byte(
        model, shard_data, small_demo, tmp_path, monkeypatch):
    extract(shard_data, small_demo, tmp_path / "whole", "amazon2025", model, shard_rows=SHARD_ROWS_SMALL)
    n_shards = len(list((tmp_path / "whole" / "01_extract" / model / "shards").glob("*.json")))
    assert n_shards == 5 + 3  # 40 train rows and 20 test rows in shards of 8

    with monkeypatch.context() as patch:
        _counting_factory(patch, fail_on_call=4)
        with pytest.raises(KeyboardInterrupt):
            extract(shard_data, small_demo, tmp_path / "killed", "amazon2025", model, shard_rows=SHARD_ROWS_SMALL)
    shards = tmp_path / "killed" / "01_extract" / model / "shards"
    assert len(list(shards.glob("*.json"))) == 3 and not (shards.parent / "train.npy").exists()

    calls = _counting_factory(monkeypatch)
    extract(shard_data, small_demo, tmp_path / "killed", "amazon2025", model, shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == n_shards - 3, "finished shards are not embedded again"
    assert _run_bytes(tmp_path / "killed", model) == _run_bytes(tmp_path / "whole", model)


def test_a_half_written_shard_is_not_trusted(shard_data, small_demo, tmp_path, monkeypatch):
    extract(shard_data, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    shards = tmp_path / "01_extract" / "tfidf-svd" / "shards"
    (shards / "train-00002.json").unlink()  # killed between the arrays and the marker
    calls = _counting_factory(monkeypatch)
    extract(shard_data, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == 1


def test_shards_split_across_kernels_merge_into_the_single_kernel_result(shard_data, small_demo, tmp_path):
    from amzkit.stages.extract import merge_shards

    extract(shard_data, small_demo, tmp_path / "single", "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    parts = []
    for index in range(3):
        summary = extract(shard_data, small_demo, tmp_path / f"kernel{index}", "amazon2025", "tfidf-svd",
                          shard_rows=SHARD_ROWS_SMALL, shard_index=index, num_shards=3)
        assert summary["shards_written"] >= 2
        parts.append(tmp_path / f"kernel{index}" / "01_extract" / "tfidf-svd")
    ids = {split: shard_data[split]["sample_id"] for split in ("train", "test")}
    merged = tmp_path / "merged" / "01_extract" / "tfidf-svd"
    manifest = merge_shards(parts, merged, ids)
    assert manifest["splits"]["train"]["rows"] == 40 and manifest["splits"]["test"]["shards"] == 3
    assert _run_bytes(tmp_path / "merged", "tfidf-svd") == _run_bytes(tmp_path / "single", "tfidf-svd")
    with pytest.raises(ValueError, match="shard #1 .* is missing"):
        merge_shards(parts[:1] + parts[2:], tmp_path / "incomplete", ids)
    shuffled = {split: ids[split].sample(frac=1, random_state=1) for split in ids}
    with pytest.raises(ValueError, match="other rows"):
        merge_shards(parts, tmp_path / "wrong", shuffled)


def test_shard_index_out_of_range_is_refused(shard_data, small_demo, tmp_path):
    with pytest.raises(ValueError, match="shard_index"):
        extract(shard_data, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_index=2, num_shards=2)
