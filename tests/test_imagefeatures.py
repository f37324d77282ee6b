"""Image feature groups for 03_train: metadata from the fetch manifest and file headers, colour statistics and
dominant colours from the cached images, chunked caching and resume, never a download."""

from __future__ import annotations

import http.server
import io
import json
import shutil
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from amzkit.images import features as imagefeatures
from amzkit.images.features import (
    IMAGE_FEATURE_GROUPS,
    build_image_features,
    colour_feature_names,
    colour_features,
    colour_of_paths,
    colour_stats,
    image_meta_features,
    image_pixels,
    kmeans_colours,
    report_missing,
)
from amzkit.images.fetch import cached_images, fetch_images
from amzkit.images.records import MANIFEST_NAME
from amzkit.testing import write_product_jpegs


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def red_white(width: int = 320, height: int = 200) -> Image.Image:
    """70% pure red (left) and 30% white (right)."""
    pixels = np.full((height, width, 3), 255, dtype=np.uint8)
    pixels[:, : int(width * 0.7)] = (255, 0, 0)
    return Image.fromarray(pixels)


def gradient(size: tuple[int, int]) -> Image.Image:
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    return Image.fromarray(np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8))


def rgba_png() -> bytes:
    img = Image.new("RGBA", (100, 80), (0, 0, 255, 255))
    img.paste((0, 0, 0, 0), (0, 0, 100, 40))  # top half transparent: white once composited
    return encode(img, "PNG")


PAYLOADS = {  # path -> (body, original width, height, mode)
    "/large.jpg": (encode(gradient((1500, 1000)), "JPEG", quality=85), 1500, 1000, "RGB"),
    "/tall.png": (encode(gradient((300, 900)).convert("L"), "PNG"), 300, 900, "L"),
    "/alpha.png": (rgba_png(), 100, 80, "RGBA"),
    "/cmyk.jpg": (encode(Image.new("CMYK", (40, 40), (0, 255, 255, 0)), "JPEG", quality=95), 40, 40, "CMYK"),
    "/palette.gif": (encode(Image.new("RGB", (64, 64), (0, 200, 0)).convert("P"), "GIF"), 64, 64, "P"),
    "/redwhite.jpg": (encode(red_white(), "JPEG", quality=95), 320, 200, "RGB"),
}


class Handler(http.server.BaseHTTPRequestHandler):
    hits: Counter = Counter()

    def do_GET(self):  # noqa: N802 (http.server's name)
        Handler.hits[self.path] += 1
        if self.path in PAYLOADS:
            body = PAYLOADS[self.path][0]
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        else:
            self.send_error(404)

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def server():
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()


@pytest.fixture(scope="module")
def fetched(server, tmp_path_factory):
    """A work folder whose image_cache 01_extract filled from the server (one URL is a 404)."""
    work = tmp_path_factory.mktemp("work")
    urls = [server + path for path in PAYLOADS] + [server + "/gone.jpg"]
    table = fetch_images(pd.Series(urls), base_dir=work, cache_dir=work / "image_cache", max_workers=4,
                         progress=False)
    assert table["status"].tolist() == ["ok"] * len(PAYLOADS) + ["http_404"]
    return {"work": work, "server": server, "table": table}


def local_images(folder: Path) -> dict[str, tuple[int, int, str]]:
    """Local files of several modes: name -> (width, height, mode)."""
    folder.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (300, 200), (200, 30, 30)).save(folder / "wide.jpg", quality=90)
    Image.new("RGBA", (120, 120), (0, 0, 0, 0)).save(folder / "clear.png")
    gradient((50, 120)).convert("L").save(folder / "grey.png")
    Image.new("RGB", (80, 81), (10, 10, 200)).convert("P").save(folder / "pal.gif")
    (folder / "page.jpg").write_bytes(b"<html>not an image</html>")
    return {"wide.jpg": (300, 200, "RGB"), "clear.png": (120, 120, "RGBA"), "grey.png": (50, 120, "L"),
            "pal.gif": (80, 81, "P")}


def competition(links_train: list[str], links_test: list[str]) -> dict[str, pd.DataFrame]:
    def frame(links: list[str], offset: int, price: bool) -> pd.DataFrame:
        out = pd.DataFrame({"sample_id": np.arange(len(links)) + offset,
                            "catalog_content": [f"Item Name: thing {i}" for i in range(len(links))],
                            "image_link": links})
        return out.assign(price=np.linspace(1, 50, len(links))) if price else out

    return {"train": frame(links_train, 0, True), "test": frame(links_test, 10_000, False)}


# ---------------------------------------------------------------- cached_images


def test_cached_images_reads_the_manifest_and_never_downloads(fetched, tmp_path):
    server, work = fetched["server"], fetched["work"]
    local_images(tmp_path)
    links = pd.Series([server + "/large.jpg", server + "/alpha.png", server + "/never.jpg", server + "/gone.jpg",
                       "wide.jpg", "nope.png", "page.jpg", "", "ftp://x/y.jpg", server + "/large.jpg"],
                      index=np.arange(10) * 3 + 7)
    before = Counter(Handler.hits)
    table = cached_images(links, tmp_path, work / "image_cache")
    assert Counter(Handler.hits) == before, "cached_images made a request"
    assert table.index.equals(links.index) and list(table.columns) == list(fetched["table"].columns)
    assert table["status"].tolist() == ["ok", "ok", "not_fetched", "http_404", "ok", "missing_file",
                                        "not_an_image", "missing_link", "unsupported_scheme", "ok"]
    large = table.iloc[0]
    assert (large["width"], large["height"], large["mode"]) == (1500, 1000, "RGB"), "the original, not the cache"
    assert large["bytes"] == len(PAYLOADS["/large.jpg"][0])
    with Image.open(large["path"]) as img:
        assert max(img.size) == 512, "the cached file is the resized one"
    assert table.iloc[1][["width", "height", "mode"]].tolist() == [100, 80, "RGBA"]
    local = table.iloc[4]
    assert (local["width"], local["height"], local["mode"]) == (300, 200, "RGB")
    assert local["bytes"] == (tmp_path / "wide.jpg").stat().st_size
    assert table["path"][table["status"] != "ok"].isna().all()


def test_cached_images_fill_the_mode_of_old_manifest_lines(fetched, tmp_path):
    cache = tmp_path / "old_cache"
    shutil.copytree(fetched["work"] / "image_cache", cache)
    lines = [json.loads(line) for line in (cache / MANIFEST_NAME).read_text().splitlines()]
    assert all("mode" in row for row in lines)
    (cache / MANIFEST_NAME).write_text("".join(json.dumps({k: v for k, v in row.items() if k != "mode"}) + "\n"
                                               for row in lines))
    server = fetched["server"]
    table = cached_images(pd.Series([server + "/large.jpg", server + "/alpha.png", server + "/cmyk.jpg"]),
                          tmp_path, cache)
    assert table["status"].tolist() == ["ok", "ok", "ok"]
    assert table["mode"].tolist() == ["RGB", "RGBA", "CMYK"], "from the cached file's header"
    assert table["width"].tolist() == [1500, 100, 40], "sizes still come from the manifest"
    (cache / Path(table["path"][1]).name).unlink()
    again = cached_images(pd.Series([server + "/alpha.png"]), tmp_path, cache)
    assert again["status"].tolist() == ["missing_file"] and again["path"].isna().all()


# ---------------------------------------------------------------- image_meta


def test_image_meta_of_local_files_and_missing_rows(tmp_path):
    sizes = local_images(tmp_path)
    links = pd.Series([*sizes, "page.jpg", "absent.jpg", ""])
    meta = image_meta_features(cached_images(links, tmp_path, tmp_path / "cache"))
    assert meta["has_image"].tolist() == [1, 1, 1, 1, 0, 0, 0]
    for i, (name, (width, height, mode)) in enumerate(sizes.items()):
        row = meta.iloc[i]
        assert (row["image_width"], row["image_height"], row["image_mode"]) == (width, height, mode), name
        assert row["image_aspect_log"] == pytest.approx(np.log(width / height))
        assert row["image_pixels_log"] == pytest.approx(np.log(width * height))
        assert row["image_bytes_log"] == pytest.approx(np.log1p((tmp_path / name).stat().st_size))
    flags = meta[["image_is_square", "image_is_landscape", "image_is_portrait"]].to_numpy()
    assert flags[:4].tolist() == [[0, 1, 0], [1, 0, 0], [0, 0, 1], [1, 0, 0]], "80x81 counts as square"
    missing = meta.iloc[4:].drop(columns=["has_image", "image_mode"])
    assert missing.isna().all().all() and meta["image_mode"].iloc[4:].isna().all()


# ---------------------------------------------------------------- colour


def test_planted_dominant_colour_and_statistics(tmp_path):
    red_white().save(tmp_path / "rw.png")
    Image.new("RGB", (64, 64), (0, 0, 255)).save(tmp_path / "blue.png")
    Image.open(io.BytesIO(rgba_png())).save(tmp_path / "alpha.png")
    x = colour_of_paths([str(tmp_path / n) for n in ("rw.png", "blue.png", "alpha.png")], workers=1,
                        progress=False)
    row = dict(zip(colour_feature_names(), x[0], strict=True))
    assert (row["colour_c0_r"], row["colour_c0_g"], row["colour_c0_b"]) == pytest.approx((1, 0, 0), abs=0.02)
    assert row["colour_c0_share"] == pytest.approx(0.7, abs=0.05)
    assert (row["colour_c1_r"], row["colour_c1_g"], row["colour_c1_b"]) == pytest.approx((1, 1, 1), abs=0.02)
    assert row["colour_c1_share"] == pytest.approx(0.3, abs=0.05)
    assert row["colour_c0_h"] == pytest.approx(0, abs=0.01) and row["colour_c0_s"] == pytest.approx(1, abs=0.02)
    assert row["colour_white_share"] == pytest.approx(0.3, abs=0.05) and row["colour_dark_share"] == 0
    assert row["colour_r_mean"] == pytest.approx(1, abs=0.01) and row["colour_g_mean"] == pytest.approx(0.3, abs=0.05)
    assert row["colour_c0_share"] + row["colour_c1_share"] + row["colour_c2_share"] == pytest.approx(1)
    blue = dict(zip(colour_feature_names(), x[1], strict=True))
    assert blue["colour_c0_share"] == 1 and blue["colour_c0_b"] == pytest.approx(1, abs=0.01)
    assert blue["colour_brightness_std"] == pytest.approx(0, abs=1e-6) and blue["colour_edge_mean"] == 0
    assert blue["colour_c0_h"] == pytest.approx(2 / 3, abs=0.01)
    alpha = dict(zip(colour_feature_names(), x[2], strict=True))
    assert alpha["colour_white_share"] == pytest.approx(0.5, abs=0.05), "transparency is composited on white"
    assert alpha["colour_border_white_share"] == pytest.approx(0.5, abs=0.05)


def test_colour_rows_do_not_depend_on_their_batch(tmp_path):
    paths = write_product_jpegs(tmp_path, 12, size=160)
    pixels = np.stack([image_pixels(p) for p in paths])
    together = colour_stats(pixels)
    alone = np.vstack([colour_stats(p[None]) for p in pixels])
    np.testing.assert_allclose(together, alone, atol=1e-5)
    assert np.isfinite(together).all() and together.shape == (12, len(colour_feature_names()))
    shares = together[:, [colour_feature_names().index(f"colour_c{j}_share") for j in range(3)]]
    assert (np.diff(shares, axis=1) <= 0).all(), "clusters sorted by share"
    threaded = colour_of_paths([*paths, None, paths[0]], workers=3, progress=False)
    np.testing.assert_allclose(threaded[:12], together, atol=1e-5)
    assert np.isnan(threaded[12]).all() and np.array_equal(threaded[13], threaded[0])


def test_product_jpegs_write_again_a_file_an_interrupted_run_cut_short(tmp_path):
    # a half-written JPEG (a run killed mid-save) used to be reused forever: every later benchmark decoded it
    paths = write_product_jpegs(tmp_path, 3, size=96)
    whole = Path(paths[1]).read_bytes()
    Path(paths[1]).write_bytes(whole[: len(whole) // 2])
    kept = Path(paths[0]).stat().st_mtime_ns, Path(paths[2]).read_bytes()
    assert write_product_jpegs(tmp_path, 3, size=96) == paths
    with Image.open(paths[1]) as img:
        img.load()
        assert img.size == (96, 96)
    assert (Path(paths[0]).stat().st_mtime_ns, Path(paths[2]).read_bytes()) == kept  # whole files are reused
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(Path(p).name for p in paths)  # no temporaries


def test_kmeans_separates_equally_bright_colours():
    red, green = np.array([0.8, 0.1, 0.1]), np.array([0.1, 0.55, 0.1])  # similar luma
    pixels = np.vstack([np.tile(red, (60, 1)), np.tile(green, (40, 1))]).astype(np.float32)[None]
    centres, shares = kmeans_colours(pixels, k=2)
    np.testing.assert_allclose(shares[0], [0.6, 0.4])
    np.testing.assert_allclose(centres[0], [red, green], atol=1e-6)


# ---------------------------------------------------------------- build_image_features and its cache


def test_build_from_the_fetch_cache_without_downloading(fetched, capsys):
    server, work = fetched["server"], fetched["work"]
    data = competition([server + "/large.jpg", server + "/redwhite.jpg", server + "/gone.jpg", server + "/tall.png"],
                       [server + "/cmyk.jpg", server + "/palette.gif", server + "/never.jpg"])
    before = Counter(Handler.hits)
    train, test = build_image_features(data, "amazon2025", work, work, ["image_meta", "colour"], progress=False)
    assert Counter(Handler.hits) == before, "03 never downloads"
    assert list(train.columns) == list(test.columns) and len(train) == 4 and len(test) == 3
    assert train.index.tolist() == [0, 1, 2, 3]
    assert train["image_width"].tolist()[:2] == [1500, 320] and np.isnan(train["image_width"][2])
    assert train["image_is_portrait"].tolist()[3] == 1 and train["has_image"].tolist() == [1, 1, 0, 1]
    assert test["image_mode"].tolist()[:2] == ["CMYK", "P"] and pd.isna(test["image_mode"][2])
    assert isinstance(train["image_mode"].dtype, pd.CategoricalDtype)
    assert list(train["image_mode"].cat.categories) == list(test["image_mode"].cat.categories) == [
        "CMYK", "L", "P", "RGB"]
    assert train["colour_c0_share"][1] == pytest.approx(0.7, abs=0.06) and train["colour_c0_r"][1] > 0.9
    assert train.loc[2, colour_feature_names()].isna().all() and test.loc[2, colour_feature_names()].isna().all()
    assert test["colour_c0_g"][1] > 0.7 > test["colour_c0_r"][1], "the GIF is green"
    out = capsys.readouterr().out
    assert "(train): 3 of 4 rows have an image; 1 get NaN (http_404 1)" in out
    assert "(test): 2 of 3 rows have an image; 1 get NaN (not_fetched 1)" in out


def test_image_groups_are_refused_when_not_one_row_of_a_split_has_an_image(fetched):
    server, work = fetched["server"], fetched["work"]
    # train: every link gone or never fetched (a text-only setup, or 01 run with Internet off)
    data = competition([server + "/gone.jpg", server + "/never.jpg"], [server + "/large.jpg"])
    with pytest.raises(ValueError, match=r"not one of the 2 train rows has an image \(0 of 2 rows have an image; 2 "
                                         r"get NaN .*http_404 1.*\).*leave the image groups out of -p features"):
        build_image_features(data, "amazon2025", work, work, ["image_meta"], progress=False)
    data = competition([server + "/large.jpg"], [server + "/never.jpg"])  # the test split alone has none
    with pytest.raises(ValueError, match="not one of the 1 test rows has an image"):
        build_image_features(data, "amazon2025", work, work, ["colour"], progress=False)


def test_schema_without_images_and_unknown_groups_are_refused(tmp_path):
    data = competition(["a.jpg"], ["b.jpg"])
    with pytest.raises(ValueError, match="no image column"):
        build_image_features(data, "amazon2023", tmp_path, tmp_path, ["image_meta"])
    with pytest.raises(ValueError, match="unknown image feature groups.*colour"):
        build_image_features(data, "amazon2025", tmp_path, tmp_path, ["color"])
    assert set(IMAGE_FEATURE_GROUPS) == {"image_meta", "colour"}


def test_colour_cache_is_reused_and_resumes(tmp_path, monkeypatch):
    names = [Path(p).name for p in write_product_jpegs(tmp_path / "data", 10, size=96)]
    images = cached_images(pd.Series(names + ["absent.jpg"]), tmp_path / "data", tmp_path / "cache")
    out_dir = tmp_path / "features"
    first = colour_features(images, "train", out_dir, workers=1, progress=False, chunk_rows=4)
    chunks = sorted(p.name for p in (out_dir / "colour-k3-32px").iterdir())
    assert chunks == [f"train-0000{i}.{ext}" for i in range(3) for ext in ("json", "npy")]
    assert np.isfinite(first.iloc[:10]).all().all() and first.iloc[10].isna().all()

    def refuse(*args, **kwargs):
        raise AssertionError("recomputed a cached chunk")

    monkeypatch.setattr(imagefeatures, "image_pixels", refuse)
    pd.testing.assert_frame_equal(colour_features(images, "train", out_dir, workers=1, progress=False,
                                                  chunk_rows=4), first)

    decoded: list[str] = []
    monkeypatch.setattr(imagefeatures, "image_pixels", lambda path, size_px: decoded.append(path) or image_pixels(
        path, size_px))
    (out_dir / "colour-k3-32px" / "train-00001.json").unlink()  # killed while writing chunk 1
    pd.testing.assert_frame_equal(colour_features(images, "train", out_dir, workers=1, progress=False,
                                                  chunk_rows=4), first)
    assert sorted(Path(p).name for p in decoded) == sorted(names[4:8]), "only the unfinished chunk is computed"

    decoded.clear()
    changed = images.copy()
    changed.loc[9, ["status", "path"]] = ["corrupt", None]  # 01 now reports another outcome for row 9
    again = colour_features(changed, "train", out_dir, workers=1, progress=False, chunk_rows=4)
    assert sorted(Path(p).name for p in decoded) == [names[8]], "only chunk 2 (rows 8-10) again"
    assert again.iloc[9].isna().all() and np.array_equal(again.iloc[:9].to_numpy(), first.iloc[:9].to_numpy())
    other_k = colour_features(images, "train", out_dir, workers=1, progress=False, k=2)
    assert list(other_k.columns) == colour_feature_names(2) and (out_dir / "colour-k2-32px").is_dir()


def test_the_missing_image_line_adds_up_to_the_rows_without_an_image(capsys) -> None:
    status = ["ok"] * 3 + ["missing_link"] * 3 + ["corrupt", "not_an_image", "http_404", "http_500", "http_500"]
    line = report_missing(pd.DataFrame({"status": status}), "train")
    assert "3 of 11 rows have an image; 8 get NaN" in line
    named = [int(part.rsplit(" ", 1)[1]) for part in line.split("(", 1)[1].rstrip(")").split(", ")]
    assert sum(named) == 8, line
    assert line.endswith(", other 1)")


def test_image_groups_over_01_tables_made_for_other_rows_say_to_rerun_01(tmp_path):
    from amzkit.images.tables import TABLES_MANIFEST, tables_dir

    made = tables_dir(tmp_path) / TABLES_MANIFEST
    made.parent.mkdir(parents=True)
    made.write_text(json.dumps({"version": -1, "splits": {}}))  # 01's tables, of an older train.csv
    data = competition(["http://127.0.0.1:9/a.jpg"], ["http://127.0.0.1:9/b.jpg"])  # pictures not at hand
    with pytest.raises(ValueError, match="image tables .* were made for other rows or links than this train.csv .*"
                                         "Rerun 01_extract with an image model on this data"):
        build_image_features(data, "amazon2025", tmp_path, tmp_path, ["image_meta"], progress=False)
    made.unlink()
    with pytest.raises(ValueError, match="where the links can be fetched"):
        build_image_features(data, "amazon2025", tmp_path, tmp_path, ["image_meta"], progress=False)


def test_colour_missing_from_01_tables_is_computed_from_the_pictures_never_nan(tmp_path):
    from amzkit.images.features import COLOUR_VERSION
    from amzkit.images.tables import TABLES_MANIFEST, tables_dir
    from amzkit.stages.image_tables import write_image_tables

    data_dir = tmp_path / "data"
    names = [Path(p).name for p in write_product_jpegs(data_dir, 6, size=96)]
    data = competition(names[:4], names[4:])
    groups = ["image_meta", "colour"]
    want = build_image_features(data, "amazon2025", data_dir, tmp_path / "no_tables", groups, progress=False)
    work = tmp_path / "work"
    write_image_tables(data, "amazon2025", data_dir, work, progress=False)
    manifest = tables_dir(work) / TABLES_MANIFEST
    made = json.loads(manifest.read_text())
    made["colour"]["version"] = COLOUR_VERSION - 1  # 01 ran with an older amzkit: its colour table is stale
    manifest.write_text(json.dumps(made))
    got = build_image_features(data, "amazon2025", data_dir, work, groups, progress=False)
    for frame, expected in zip(got, want, strict=True):
        assert np.isfinite(frame[colour_feature_names()].to_numpy()).all(), "colour NaN on rows with an image"
        pd.testing.assert_frame_equal(frame, expected)
    for name in names:  # a later kernel: only 01's tables, whose colour group is of another version
        (data_dir / name).unlink()
    with pytest.raises(ValueError, match=r"image tables .* hold no 'colour' features of this amzkit version.*"
                                         r"rerun 01_extract"):
        build_image_features(data, "amazon2025", data_dir, work, groups, progress=False)


def test_a_colour_chunk_computed_without_the_pictures_is_not_reused_once_they_are_at_hand(tmp_path):
    names = [Path(p).name for p in write_product_jpegs(tmp_path / "data", 4, size=96)]
    images = cached_images(pd.Series(names), tmp_path / "data", tmp_path / "cache")
    pathless = images.assign(path=None)  # rows 01's tables call ok, whose pictures are elsewhere (older amzkit's 03)
    out_dir = tmp_path / "features"
    assert colour_features(pathless, "train", out_dir, workers=1, progress=False).isna().all().all()
    again = colour_features(images, "train", out_dir, workers=1, progress=False)
    assert np.isfinite(again.to_numpy()).all(), "the all-NaN chunk of the path-less rows was reused"


def test_a_kill_between_a_chunks_arrays_and_its_marker_never_lets_the_old_marker_vouch_for_them(tmp_path,
                                                                                                 monkeypatch):
    """A chunk recomputed for other rows (another train.csv) and killed before its marker was written kept the old
    rows' marker beside the new rows' features: back on the old rows, those features were read as theirs."""
    names = [Path(p).name for p in write_product_jpegs(tmp_path / "data", 4, size=96)]
    images = cached_images(pd.Series(names), tmp_path / "data", tmp_path / "cache")
    other = cached_images(pd.Series(names[::-1]), tmp_path / "data", tmp_path / "cache")
    out_dir = tmp_path / "features"
    first = colour_features(images, "train", out_dir, workers=1, progress=False)

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(imagefeatures, "write_json", killed)
    with pytest.raises(KeyboardInterrupt):
        colour_features(other, "train", out_dir, workers=1, progress=False)
    monkeypatch.undo()
    again = colour_features(images, "train", out_dir, workers=1, progress=False)
    pd.testing.assert_frame_equal(again, first)
