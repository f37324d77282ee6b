"""Outputs Kaggle can carry: 01's image tables stand in for its pictures, the image cache packs into a few tar
shards, every kernel lists what it wrote, and 01 splits its rows over several devices (CPU workers here)."""

from __future__ import annotations

import functools
import http.server
import json
import shutil
import tarfile
import threading

import numpy as np
import pandas as pd
import pytest

from amzkit.app import runners
from amzkit.app.demo import make_demo
from amzkit.app.kaggle_outputs import (
    OUTPUT_LISTING,
    check_fetched,
    pack_image_cache,
    unpack_image_cache,
    write_output_listing,
)
from amzkit.app.parameters import check_parameters, stage_parameters
from amzkit.core.io import read_json
from amzkit.core.schema import get_schema, load_data
from amzkit.images.features import build_image_features
from amzkit.images.records import MANIFEST_NAME
from amzkit.images.tables import ImageSignatures, part_tables_dir, read_image_tables, read_tables, tables_dir
from amzkit.stages.devices import extract_on_devices, resolve_devices
from amzkit.stages.extract import extract, kernel_rows
from amzkit.stages.image_tables import merge_image_tables, write_image_tables
from amzkit.stages.leaks import cached_image_paths, duplicate_report


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    files = make_demo(tmp_path_factory.mktemp("demo") / "data", n_train=90, n_test=30, seed=3, image_px=64)
    return files.train_csv.parent, load_data(files.train_csv.parent, "amazon2025")


def _copy_demo(folder, tmp_path):
    """A copy of the demo data whose pictures the test may delete."""
    return shutil.copytree(folder, tmp_path / "data")


# --- 01's image tables ------------------------------------------------------------------------------------------

def test_image_tables_give_the_same_features_and_hashes_once_the_pictures_are_gone(demo, tmp_path):
    folder, data = demo
    data_dir = _copy_demo(folder, tmp_path)
    from_files = build_image_features(data, "amazon2025", data_dir, tmp_path / "files", ["image_meta", "colour"],
                                      progress=False)
    paths = cached_image_paths(data, _schema(), data_dir, tmp_path / "files")
    report_files = duplicate_report(data["train"], data["test"], "amazon2025", paths)
    work = tmp_path / "work"
    assert write_image_tables(data, "amazon2025", data_dir, work, progress=False) == tables_dir(work)
    shutil.rmtree(data_dir / "images")  # a later kernel: no picture at hand, only 01's tables
    from_tables = build_image_features(data, "amazon2025", data_dir, work, ["image_meta", "colour"], progress=False)
    for got, want in zip(from_tables, from_files, strict=True):
        pd.testing.assert_frame_equal(got, want)
        assert want["has_image"].sum() > 0
    signatures = cached_image_paths(data, _schema(), data_dir, work)
    assert all(isinstance(s, ImageSignatures) for s in signatures.values())
    report_tables = duplicate_report(data["train"], data["test"], "amazon2025", signatures)
    pd.testing.assert_frame_equal(report_tables, report_files)
    assert not (work / "03_train").exists()  # nothing was recomputed from the (absent) pictures


def test_image_tables_count_only_for_the_links_they_were_computed_for(demo, tmp_path):
    folder, data = demo
    write_image_tables(data, "amazon2025", folder, tmp_path, progress=False)
    links = data["test"]["image_link"]
    assert read_image_tables(tmp_path, "test", links) is not None
    assert read_image_tables(tmp_path, "test", links.iloc[::-1].reset_index(drop=True)) is None  # reordered
    changed = links.copy()
    changed.iloc[0] = "images/another.png"
    assert read_image_tables(tmp_path, "test", changed) is None
    assert read_image_tables(tmp_path, "test", links.iloc[:-1]) is None
    (tables_dir(tmp_path) / "manifest.json").unlink()  # a rewrite that did not finish
    assert read_image_tables(tmp_path, "test", links) is None


def _count_picture_reads(monkeypatch) -> dict[str, int]:
    """Count the decodes the colour and hash tables make (amzkit.images.features / hashes)."""
    from amzkit.images import features, hashes

    calls = {"colour": 0, "hash": 0}
    pixels, signature = features.image_pixels, hashes.image_signature

    def counted_pixels(path, *args, **kwargs):
        calls["colour"] += 1
        return pixels(path, *args, **kwargs)

    def counted_signature(path):
        calls["hash"] += 1
        return signature(path)

    monkeypatch.setattr(features, "image_pixels", counted_pixels)
    monkeypatch.setattr(hashes, "image_signature", counted_signature)
    return calls


def test_image_tables_written_again_decode_only_the_pictures_that_changed(demo, tmp_path, monkeypatch):
    """Every 01 call with an image model computed every picture's colour and hash again (~4 ms a picture: about
    10 minutes of one core at 75,000 + 75,000 rows), though the pictures had not changed."""
    folder, data = demo
    data_dir = _copy_demo(folder, tmp_path)
    work = tmp_path / "work"
    write_image_tables(data, "amazon2025", data_dir, work, progress=False)
    first = _table_files(tables_dir(work))
    calls = _count_picture_reads(monkeypatch)
    write_image_tables(data, "amazon2025", data_dir, work, progress=False)
    assert calls == {"colour": 0, "hash": 0}
    assert _table_files(tables_dir(work)) == first

    links = data["train"]["image_link"]
    row = int(np.flatnonzero(read_image_tables(work, "train", links).images["status"] == "ok")[0])
    picture = data_dir / links.iloc[row]
    from PIL import Image

    Image.new("RGB", (97, 61), (10, 200, 30)).save(picture)  # the same file name, another picture
    shared = int((links == links.iloc[row]).sum() + (data["test"]["image_link"] == links.iloc[row]).sum())
    write_image_tables(data, "amazon2025", data_dir, work, progress=False)
    assert calls == {"colour": 1, "hash": shared}  # colours decode each distinct file once; hashes each row
    write_image_tables(data, "amazon2025", data_dir, tmp_path / "fresh", progress=False)
    assert _table_files(tables_dir(work)) == _table_files(tables_dir(tmp_path / "fresh"))

    manifest = tables_dir(work) / "manifest.json"  # tables from before pictures were read upright: all again
    written = read_json(manifest)
    del written["orientation"]
    manifest.write_text(json.dumps(written))
    calls.update(colour=0, hash=0)
    write_image_tables(data, "amazon2025", data_dir, work, progress=False)
    assert calls["hash"] > shared and calls["colour"] > 1
    assert _table_files(tables_dir(work)) == _table_files(tables_dir(tmp_path / "fresh"))


# --- several kernels: each writes its rows' part of the tables, the merging run joins them ---------------------

def _table_files(folder) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.name != "manifest.json"}


def test_kernels_table_parts_merge_into_the_tables_of_one_kernel(demo, tmp_path):
    folder, data = demo
    whole = write_image_tables(data, "amazon2025", folder, tmp_path / "one", progress=False)
    kernels = [tmp_path / f"kernel{k}" for k in range(3)]
    for k, work in enumerate(kernels):  # 7-row shards over 3 kernels, as extract(shard_rows=7) splits them
        rows = {split: kernel_rows(len(data[split]), k, 3, shard_rows=7) for split in ("train", "test")}
        assert write_image_tables(data, "amazon2025", folder, work, rows=rows, progress=False) == (
            part_tables_dir(work))
        assert read_image_tables(work, "train", data["train"]["image_link"]) is None, "a part is not the tables"
    part = read_tables(part_tables_dir(kernels[1]), "train", data["train"]["image_link"])
    assert 0 < part.owned.sum() < len(part.owned) and np.isnan(part.colour[~part.owned]).all()

    merged = merge_image_tables(data, "amazon2025", kernels, tmp_path / "merged")
    assert _table_files(merged) == _table_files(whole)
    for split in ("train", "test"):
        links = data[split]["image_link"]
        assert read_image_tables(tmp_path / "merged", split, links) is not None
        assert np.isfinite(read_image_tables(tmp_path / "merged", split, links).colour).any()

    with pytest.raises(ValueError, match=r"train: 28 rows \(first: \[7, 8, 9, 10, 11\]\) are in none of the image "
                                         r"table parts.*merge the work folders of every kernel"):
        merge_image_tables(data, "amazon2025", [kernels[0], kernels[2]], tmp_path / "two_of_three")
    shorter = {split: frame.iloc[:-1] for split, frame in data.items()}  # parts written for another CSV
    with pytest.raises(ValueError, match=r"no image tables for this train.csv in .*kernel0.*rerun 01_extract"):
        merge_image_tables(shorter, "amazon2025", kernels, tmp_path / "other")


@pytest.fixture()
def served_demo(tmp_path):
    """The demo competition whose image links are URLs of a server on 127.0.0.1 serving its pictures."""
    data_dir = make_demo(tmp_path / "data", n_train=40, n_test=20, seed=3, image_px=64).train_csv.parent
    handler = functools.partial(QuietHandler, directory=str(data_dir))
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    for name in ("train.csv", "test.csv"):
        frame = pd.read_csv(data_dir / name, dtype=str, keep_default_na=False)
        frame["image_link"] = url + "/" + frame["image_link"]
        frame.to_csv(data_dir / name, index=False)
    yield data_dir
    httpd.shutdown()
    httpd.server_close()


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args) -> None:
        pass


def test_01_split_over_two_kernels_then_merged_gives_03_the_one_kernel_image_features(served_demo, tmp_path):
    def run_01(work, **params):
        values = {**stage_parameters("01_extract"), "data_dir": str(served_demo), "work_dir": str(work),
                  "model": "color-stats", "text_model": "", **params}
        runners.run_extract(runners.setup(check_parameters(values, "01_extract"), "01_extract"))

    run_01(tmp_path / "one")
    for k in range(2):
        run_01(tmp_path / f"kernel{k}", shard_index=k, num_shards=2)
    run_01(tmp_path / "merged", merge_dirs=[str(tmp_path / f"kernel{k}") for k in range(2)])
    assert not (tmp_path / "merged" / "image_cache").exists(), "the merging run has no picture, only the parts"
    data = load_data(served_demo, "amazon2025")
    groups = ["image_meta", "colour"]
    one = build_image_features(data, "amazon2025", served_demo, tmp_path / "one", groups, progress=False)
    merged = build_image_features(data, "amazon2025", served_demo, tmp_path / "merged", groups, progress=False)
    for got, want in zip(merged, one, strict=True):
        pd.testing.assert_frame_equal(got, want)
        assert want["has_image"].all()


def test_01_run_again_after_its_cache_was_packed_keeps_its_image_tables(served_demo, tmp_path):
    values = {**stage_parameters("01_extract"), "data_dir": str(served_demo), "work_dir": str(tmp_path / "work"),
              "model": "color-stats", "text_model": ""}
    data = load_data(served_demo, "amazon2025")
    runners.run_extract(runners.setup(check_parameters(values, "01_extract"), "01_extract"))
    first = build_image_features(data, "amazon2025", served_demo, tmp_path / "work", ["image_meta"], progress=False)
    assert pack_image_cache(tmp_path / "work"), "what finish() does on Kaggle at the end of 01"
    runners.run_extract(runners.setup(check_parameters(values, "01_extract"), "01_extract"))  # "Run All" again
    again = build_image_features(data, "amazon2025", served_demo, tmp_path / "work", ["image_meta"], progress=False)
    for got, want in zip(again, first, strict=True):
        pd.testing.assert_frame_equal(got, want)
        assert want["has_image"].all()
    cache = tmp_path / "work" / "image_cache"
    loose = [f for f in cache.iterdir() if f.name != MANIFEST_NAME]
    assert len(loose) == 60 and not any(f.suffix == ".tar" for f in loose), "loose again: finish() packs them"


def _schema():
    return get_schema("amazon2025")


# --- the image cache in a few tar shards, and the output listing -------------------------------------------------

def _fake_cache(work, n: int = 7, size: int = 1000) -> dict[str, bytes]:
    cache = work / "image_cache"
    cache.mkdir(parents=True)
    (cache / MANIFEST_NAME).write_text('{"url": "x"}\n')
    files = {f"{i:040x}.jpg": bytes([i]) * size for i in range(n)}
    for name, body in files.items():
        (cache / name).write_bytes(body)
    return files


def test_the_image_cache_packs_into_shards_and_unpacks_unchanged(tmp_path):
    files = _fake_cache(tmp_path)
    shards = pack_image_cache(tmp_path, shard_bytes=2500)
    cache = tmp_path / "image_cache"
    assert [s.name for s in shards] == ["images-00000.tar", "images-00001.tar", "images-00002.tar", "images-00003.tar"]
    assert sorted(p.name for p in cache.iterdir()) == sorted([MANIFEST_NAME, *(s.name for s in shards)])
    members = [m.name for s in shards for m in tarfile.open(s).getmembers()]
    assert sorted(members) == sorted(files)
    assert pack_image_cache(tmp_path, shard_bytes=2500) == []  # nothing loose left
    assert unpack_image_cache(tmp_path) == len(files)
    assert {name: (cache / name).read_bytes() for name in files} == files


def test_packing_after_a_gap_in_the_shard_numbers_keeps_every_shard(tmp_path):
    """New shards were numbered from the count of shards: with images-00000 and images-00002 left, the next was
    images-00002 again, written over it (its pictures lost)."""
    _fake_cache(tmp_path)
    shards = pack_image_cache(tmp_path, shard_bytes=2500)
    shards[1].unlink()  # a gap
    kept = {s.name: s.read_bytes() for s in shards if s.exists()}
    (tmp_path / "image_cache" / "new.jpg").write_bytes(b"a new picture")
    [new] = pack_image_cache(tmp_path, shard_bytes=2500)
    assert new.name == "images-00004.tar"
    assert {name: (tmp_path / "image_cache" / name).read_bytes() for name in kept} == kept


def test_every_output_is_listed_and_a_missing_one_is_named(tmp_path):
    work = tmp_path / "working" / "amzkit"
    (work / "01_extract" / "run").mkdir(parents=True)
    (work / "01_extract" / "run" / "train.npy").write_bytes(b"0123")
    (work / "01_extract" / "metrics.json").write_text("{}")
    linked = tmp_path / "input" / "02_correlate"
    linked.mkdir(parents=True)
    (linked / "metrics.json").write_text("{}")
    (work / "02_correlate").symlink_to(linked)  # an earlier kernel's output: not this kernel's
    half = work / "image_cache" / ".images-00001.tar.bxlzez5z.tmp"  # a kill while packing, then a quick rerun
    half.parent.mkdir()
    half.write_bytes(b"half a shard")
    write_output_listing(work)
    assert not half.exists()
    assert read_json(work / OUTPUT_LISTING)["files"] == {"01_extract/metrics.json": 2, "01_extract/run/train.npy": 4}
    fetched = tmp_path / "fetched" / "amzkit"
    shutil.copytree(work, fetched, symlinks=True)
    assert check_fetched(tmp_path / "fetched") == []
    (fetched / "01_extract" / "run" / "train.npy").write_bytes(b"01")  # cut short
    (fetched / "01_extract" / "metrics.json").unlink()
    assert sorted(check_fetched(tmp_path / "fetched")) == [str(fetched / "01_extract" / "metrics.json"),
                                                           str(fetched / "01_extract" / "run" / "train.npy")]


# --- several devices ----------------------------------------------------------------------------------------------

def test_devices_are_resolved_from_the_parameter():
    assert resolve_devices("auto", "open_clip", gpus=lambda: [0, 1]) == ["cuda:0", "cuda:1"]
    assert resolve_devices("auto", "open_clip", gpus=lambda: [0]) == ["auto"]
    assert resolve_devices("auto", "color_stats", gpus=lambda: [0, 1]) == ["auto"]  # ignores devices anyway
    assert resolve_devices("cuda:0, cuda:1", "open_clip") == ["cuda:0", "cuda:1"]
    assert resolve_devices("cpu,cpu", "tfidf_svd") == ["cpu", "cpu"]
    assert resolve_devices("cuda:1", "open_clip", gpus=lambda: [0, 1]) == ["cuda:1"]


@pytest.mark.parametrize("model", ["color-stats", "tfidf-svd"])
def test_two_device_workers_give_the_one_device_result(demo, tmp_path, model):
    folder, data = demo
    one = extract(data, folder, tmp_path / "one", "amazon2025", model, device="cpu", shard_rows=25)
    two = extract_on_devices(data, folder, tmp_path / "two", "amazon2025", model, device="cpu,cpu", shard_rows=25)
    assert two["splits"] == one["splits"] and two["splits"]["train"]["shards"] == 4
    for split in ("train", "test"):
        for suffix in (".npy", "_ok.npy"):
            a = np.load(tmp_path / "one" / "01_extract" / model / f"{split}{suffix}")
            b = np.load(tmp_path / "two" / "01_extract" / model / f"{split}{suffix}")
            assert a.dtype == b.dtype and np.array_equal(a, b, equal_nan=True), (split, suffix)
    shards = sorted(p.name for p in (tmp_path / "two" / "01_extract" / model / "shards").glob("*.json"))
    assert shards == sorted(p.name for p in (tmp_path / "one" / "01_extract" / model / "shards").glob("*.json"))
    if model == "color-stats":
        for split in ("train", "test"):
            pd.testing.assert_frame_equal(
                pd.read_csv(tmp_path / "one" / "01_extract" / model / f"{split}_fetch.csv", keep_default_na=False),
                pd.read_csv(tmp_path / "two" / "01_extract" / model / f"{split}_fetch.csv", keep_default_na=False))


def test_a_failing_device_worker_is_reported_by_device(demo, tmp_path):
    folder, data = demo
    broken = {split: frame.drop(columns=["catalog_content"]) for split, frame in data.items()}  # no text to embed
    with pytest.raises(RuntimeError, match=r"2 of 2 device workers failed.*\ncpu:0: .*\ncpu:1: "):
        extract_on_devices(broken, folder, tmp_path, "amazon2025", "tfidf-svd", device="cpu:0,cpu:1", shard_rows=25)
