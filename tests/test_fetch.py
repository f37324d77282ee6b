"""amzkit.fetch against a local keep-alive server serving real images and every fault the web has."""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import re
import socket
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

from amzkit.images.records import MANIFEST_NAME, STATUSES, cache_name, is_remote, link_scheme, read_manifest, summarize
from amzkit.images.http import RetryPolicy, parse_retry_after
from amzkit.images.fetch import fetch_images
from amzkit.images.decode import open_image, prepare_image

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.05, backoff_cap_s=0.2, retry_after_cap_s=2.0,
                         final_pass_workers=2, final_pass_attempts=1, final_pass_timeout_factor=1.0)
ONE_TRY = RetryPolicy(attempts=1, final_pass_attempts=0)
TIMEOUT_S = 1.0  # short, so the stalled URL times out quickly; generous enough for a loaded machine
STALL_S = 5.0
MAX_BYTES = 300_000


def encode(img: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def gradient(size: tuple[int, int]) -> Image.Image:
    """A smooth RGB picture (compresses well, so a big one stays under the byte limit)."""
    x = np.linspace(0, 255, size[0], dtype=np.float32)[None, :]
    y = np.linspace(0, 255, size[1], dtype=np.float32)[:, None]
    rgb = np.stack([x + 0 * y, y + 0 * x, (x + y) / 2], axis=-1).astype(np.uint8)
    return Image.fromarray(rgb)


def huge_jpeg(width: int = 40_000, height: int = 40_000) -> bytes:
    """A real 8x8 JPEG whose SOF header is forged to declare width x height."""
    body = bytearray(encode(Image.new("RGB", (8, 8), (200, 10, 10)), "JPEG"))
    sof = body.index(b"\xff\xc0")
    body[sof + 5:sof + 9] = height.to_bytes(2, "big") + width.to_bytes(2, "big")
    return bytes(body)


def alpha_png() -> bytes:
    img = Image.new("RGBA", (40, 30), (255, 0, 0, 255))
    img.paste((0, 0, 0, 0), (0, 0, 20, 30))  # left half fully transparent black
    return encode(img, "PNG")


def gif_bytes() -> bytes:
    frames = [Image.new("RGB", (30, 20), color).convert("P") for color in ((0, 0, 255), (255, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def sixteen_bit_png() -> bytes:
    ramp = np.tile(np.linspace(0, 65535, 64), (16, 1)).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def cmyk_jpeg() -> bytes:
    return encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG", quality=95)  # pure red in CMYK


GOOD_JPEG = encode(Image.new("RGB", (32, 24), (10, 200, 10)), "JPEG")
SMALL_PNG = encode(gradient((100, 60)), "PNG")
LARGE_JPEG = encode(gradient((1500, 1000)), "JPEG", quality=85)
PAYLOADS = {
    "/cmyk.jpg": cmyk_jpeg(),
    "/alpha.png": alpha_png(),
    "/anim.gif": gif_bytes(),
    "/deep.png": sixteen_bit_png(),
    "/small.png": SMALL_PNG,
    "/large.jpg": LARGE_JPEG,
    "/huge.jpg": huge_jpeg(),
    "/truncated.jpg": LARGE_JPEG[: len(LARGE_JPEG) // 2],
    "/page.jpg": b"<!DOCTYPE html><html><body>Robot check</body></html>",
    "/empty.jpg": b"",
    "/big.jpg": os.urandom(MAX_BYTES + 100_000),
}


@dataclass
class Server:
    url: str
    hits: Counter = field(default_factory=Counter)
    times: dict = field(default_factory=lambda: defaultdict(list))
    ports: set = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)

    def snapshot(self) -> Counter:
        return Counter(self.hits)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: a session reuses its connection
    disable_nagle_algorithm = True  # headers and body leave at once (no 40 ms delayed-ACK wait)
    state: Server

    def log_message(self, *args) -> None:
        pass

    def handle(self) -> None:
        with contextlib.suppress(ConnectionError):  # clients drop connections on purpose (byte limit)
            super().handle()

    def reply(self, code: int, body: bytes = b"", headers: dict[str, str] | None = None,
              content_length: bool = True) -> None:
        self.send_response(code)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        if content_length:
            self.send_header("Content-Length", str(len(body)))
        else:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self) -> None:  # noqa: N802 (http.server's name)
        state, path = self.state, self.path
        state.hits[path] += 1
        state.times[path].append(time.monotonic())
        state.ports.add(self.client_address[1])
        try:
            ROUTES.get(path, Handler.default)(self, state.hits[path])
        except (BrokenPipeError, ConnectionResetError):
            pass

    def default(self, hit: int) -> None:
        if path_match := re.fullmatch(r"/img/(\d+)\.jpg", self.path):
            shade = int(path_match.group(1)) % 256
            self.reply(200, encode(Image.new("RGB", (24, 24), (shade, 80, 160)), "JPEG"))
        elif self.path in PAYLOADS:
            self.reply(200, PAYLOADS[self.path], {"Content-Type": "image/jpeg"})
        else:
            self.reply(404, b"not found")


ROUTES: dict[str, Callable[[Handler, int], None]] = {
    "/good.jpg": lambda h, hit: h.reply(200, GOOD_JPEG),
    "/flaky500.jpg": lambda h, hit: h.reply(500, b"oops") if hit == 1 else h.reply(200, GOOD_JPEG),
    "/throttled.jpg": lambda h, hit: (h.reply(429, b"slow down", {"Retry-After": "1"}) if hit == 1
                                      else h.reply(200, GOOD_JPEG)),
    "/stall.jpg": lambda h, hit: None if h.state.stop.wait(STALL_S) else h.reply(200, GOOD_JPEG),
    "/big-nolength.jpg": lambda h, hit: h.reply(200, PAYLOADS["/big.jpg"], content_length=False),
    "/moved.jpg": lambda h, hit: h.reply(302, b"", {"Location": "/img/777.jpg"}),
    "/moved-ftp.jpg": lambda h, hit: h.reply(301, b"", {"Location": "ftp://elsewhere/a.jpg"}),
}


@pytest.fixture(scope="module")
def server():
    state = Server(url="")
    handler = type("BoundHandler", (Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    state.url = f"http://127.0.0.1:{httpd.server_address[1]}"
    yield state
    state.stop.set()
    httpd.shutdown()
    httpd.server_close()


def dead_port() -> int:
    with socket.socket() as sock:  # bound, never listening: connections are refused at once
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


EXPECTED = {  # path on the server -> status
    "/good.jpg": "ok", "/cmyk.jpg": "ok", "/alpha.png": "ok", "/anim.gif": "ok", "/deep.png": "ok",
    "/small.png": "ok", "/large.jpg": "ok", "/flaky500.jpg": "ok", "/throttled.jpg": "ok",
    "/missing.jpg": "http_404", "/stall.jpg": "timeout", "/truncated.jpg": "corrupt", "/page.jpg": "not_an_image",
    "/huge.jpg": "too_large", "/empty.jpg": "empty", "/big.jpg": "too_large", "/big-nolength.jpg": "too_large",
    "/moved.jpg": "ok", "/moved-ftp.jpg": "unsupported_scheme",
}
PERMANENT = ("/missing.jpg", "/truncated.jpg", "/page.jpg", "/huge.jpg", "/empty.jpg", "/big.jpg",
             "/big-nolength.jpg")


def run(links, cache: Path, base: Path, **options) -> pd.DataFrame:
    settings = {"max_workers": 8, "timeout": TIMEOUT_S, "max_bytes": MAX_BYTES, "retry": FAST_RETRY}
    return fetch_images(pd.Series(links) if isinstance(links, list) else links, base_dir=base, cache_dir=cache,
                        **{**settings, **options})


@pytest.fixture(scope="module")
def first(server, tmp_path_factory):
    """One fetch of every fault, plus local links and duplicates, under a shuffled non-range index."""
    base = tmp_path_factory.mktemp("csv_dir")
    Image.new("RGB", (10, 10), (1, 2, 3)).save(base / "local.png")
    (base / "zero.jpg").write_bytes(b"")
    dead = f"http://127.0.0.1:{dead_port()}/x.jpg"
    links = [server.url + path for path in EXPECTED]
    links += [server.url + "/good.jpg", server.url + "/small.png", "local.png", f"file://{base / 'local.png'}",
              "nope.png", "zero.jpg", "", None, "ftp://host/a.jpg", "data:image/png;base64,iVBOR", dead]
    index = pd.Index(np.random.default_rng(0).permutation(len(links)) * 7 + 1000, name="row")
    series = pd.Series(links, index=index, dtype=object)
    cache = tmp_path_factory.mktemp("cache")
    started = time.monotonic()
    table = run(series, cache, base, progress=True)
    return {"series": series, "table": table, "cache": cache, "base": base, "dead": dead,
            "hits": server.snapshot(), "seconds": time.monotonic() - started}


def test_every_fault_ends_in_its_status(first, server):
    table = first["table"].drop_duplicates("link").set_index("link")
    for path, status in EXPECTED.items():
        assert table.loc[server.url + path, "status"] == status, path
    local = table["status"].to_dict()
    assert [local[k] for k in ("local.png", "nope.png", "zero.jpg", "", "ftp://host/a.jpg")] == [
        "ok", "missing_file", "empty", "missing_link", "unsupported_scheme"]
    assert local["data:image/png;base64,iVBOR"] == "unsupported_scheme"
    assert local[first["dead"]] == "connection_error"
    for status in first["table"]["status"]:
        assert status in STATUSES or re.fullmatch(r"http_\d{3}", status)
    failed = first["table"][first["table"]["status"] != "ok"]
    assert failed["path"].isna().all() and all(p is None for p in failed["path"])


def test_output_keeps_the_input_index_and_order(first):
    table, series = first["table"], first["series"]
    assert table.index.equals(series.index)
    assert table["link"].tolist() == series.fillna("").tolist()
    assert {"link", "path", "status", "width", "height", "bytes", "attempts", "error"} <= set(table.columns)


def test_good_rows_open_as_rgb(first, server):
    table = first["table"].drop_duplicates("link").set_index("link")
    for path in table.loc[table["status"] == "ok", "path"]:
        img, status = open_image(path)
        assert status == "ok" and img.mode == "RGB"
        drafted, status = open_image(path, draft_px=8)
        assert status == "ok" and drafted.mode == "RGB" and min(drafted.size) >= 8

    def pixels(name: str) -> np.ndarray:
        img, _ = open_image(table.loc[server.url + name, "path"])
        return np.asarray(img, dtype=int)

    assert (pixels("/alpha.png")[:, :18] == 255).all(), "transparent pixels are composited on white"
    assert (pixels("/alpha.png")[:, 22:] == [255, 0, 0]).all()
    red = pixels("/cmyk.jpg")[15, 20]
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, "CMYK JPEG converted to RGB"
    assert (np.abs(pixels("/anim.gif")[5, 5] - [0, 0, 255]) < 10).all(), "GIF: first frame"
    deep = pixels("/deep.png")[8, :, 0]
    assert deep[0] < 10 and deep[-1] > 245 and 100 < deep[32] < 160, "16-bit scaled to 8-bit, not clipped white"
    assert np.all(np.diff(deep) >= 0)


def test_large_images_are_stored_resized_small_ones_as_their_bytes(first, server):
    table = first["table"].drop_duplicates("link").set_index("link")
    large = table.loc[server.url + "/large.jpg"]
    with Image.open(large["path"]) as img:
        assert img.format == "JPEG" and max(img.size) == 512 and img.size == (512, 341)
    assert (large["width"], large["height"]) == (1500, 1000), "the table keeps the original size"
    assert large["bytes"] == len(LARGE_JPEG)
    small = table.loc[server.url + "/small.png", "path"]
    assert Path(small).read_bytes() == SMALL_PNG, "images already small are kept as their original bytes"
    assert Path(small).name == cache_name(server.url + "/small.png")
    assert "pixels" in table.loc[server.url + "/huge.jpg", "error"], "the header was read, not the pixels"


def test_duplicates_once_retries_as_told(first, server):
    hits = first["hits"]
    assert hits["/good.jpg"] == 1 and hits["/small.png"] == 1, "duplicate URLs are fetched once"
    assert hits["/flaky500.jpg"] == 2 and hits["/throttled.jpg"] == 2
    gap = server.times["/throttled.jpg"][1] - server.times["/throttled.jpg"][0]
    assert 0.9 < gap < 5.0, "Retry-After: 1 is honoured"
    for path in PERMANENT:
        assert hits[path] == 1, f"{path} is a permanent failure: not retried"
    assert hits["/stall.jpg"] == FAST_RETRY.attempts + FAST_RETRY.final_pass_attempts
    table = first["table"].drop_duplicates("link").set_index("link")
    assert table.loc[server.url + "/flaky500.jpg", "attempts"] == 2
    assert hits["/moved.jpg"] == 1 and hits["/img/777.jpg"] == 1, "redirects are followed"
    assert first["seconds"] < 25


def test_manifest_records_every_url(first, server):
    records = read_manifest(first["cache"] / MANIFEST_NAME)
    assert {server.url + p for p in EXPECTED} <= set(records)
    large = records[server.url + "/large.jpg"]
    assert (large.status, large.width, large.height, large.attempts) == ("ok", 1500, 1000, 1)
    assert records[server.url + "/missing.jpg"].status == "http_404"
    assert not [p for p in first["cache"].iterdir() if p.name.startswith(".")], "no temp files left"


def test_rerun_requests_only_what_may_still_succeed(first, server):
    before = server.snapshot()
    again = run(first["series"], first["cache"], first["base"], progress=False, retry=ONE_TRY)
    new = server.snapshot() - before
    assert set(new) == {"/stall.jpg"}, "ok and permanently failed URLs are not fetched again"
    pd.testing.assert_frame_equal(again[["link", "path", "status"]], first["table"][["link", "path", "status"]])
    forced = run([server.url + "/missing.jpg", server.url + "/good.jpg"], first["cache"], first["base"],
                 retry_failed=True)
    assert forced["status"].tolist() == ["http_404", "ok"]
    assert server.snapshot() - before - new == Counter({"/missing.jpg": 1})


def test_keep_alive_reuses_connections(server, tmp_path):
    server.ports.clear()
    links = [f"{server.url}/img/{i}.jpg" for i in range(60)]
    table = run(links, tmp_path / "cache", tmp_path, max_workers=4, progress=False)
    assert (table["status"] == "ok").all()
    assert len(server.ports) <= 8, f"{len(server.ports)} connections for 60 requests on 4 threads"


def test_killed_download_is_not_trusted(server, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    url, other, known = (f"{server.url}/img/{i}.jpg" for i in (901, 902, 903))
    half = encode(Image.new("RGB", (24, 24)), "JPEG")[:200]
    leftover = cache / f".{cache_name(url)}.x1y2.tmp"  # what atomic_path leaves when killed mid-write
    leftover.write_bytes(half)
    os.utime(leftover, (time.time() - 3600, time.time() - 3600))
    (cache / cache_name(other)).write_bytes(half)  # a half file under the real name, no manifest record
    good = encode(Image.new("RGB", (24, 24), (1, 80, 160)), "JPEG")
    (cache / cache_name(known)).write_bytes(good)  # a complete file whose manifest line was never flushed
    (cache / MANIFEST_NAME).write_text(json.dumps({"url": "http://gone/a.jpg", "status": "ok"}) + '\n{"url": "ht')
    before = server.snapshot()
    table = run([url, other, known], cache, tmp_path, progress=False)
    assert table["status"].tolist() == ["ok", "ok", "ok"]
    new = server.snapshot() - before
    assert new == Counter({"/img/901.jpg": 1, "/img/902.jpg": 1}), "a verified complete file is reused"
    assert not leftover.exists(), "stale temp files are removed"
    assert open_image(table["path"][1])[1] == "ok"
    records = read_manifest(cache / MANIFEST_NAME)
    assert {url, other, known, "http://gone/a.jpg"} <= set(records), "a half line does not swallow the next"


def test_strict_truncation_is_local(server, tmp_path, monkeypatch):
    monkeypatch.setattr(ImageFile, "LOAD_TRUNCATED_IMAGES", True)
    table = run([server.url + "/truncated.jpg"], tmp_path / "cache", tmp_path, progress=False)
    assert table["status"].tolist() == ["corrupt"]
    assert ImageFile.LOAD_TRUNCATED_IMAGES is True, "the caller's Pillow setting is restored"


def test_bad_links_never_raise(tmp_path):
    links = pd.Series(["http://", "http://[::1", "https:///nohost.jpg", 12345, float("nan"), "   ",
                       "HTTP://127.0.0.1:1/x.jpg", "mailto:a@b.c"], index=list("abcdefgh"))
    table = run(links, tmp_path / "cache", tmp_path, progress=False, retry=ONE_TRY)
    assert table.index.tolist() == list("abcdefgh")
    statuses = table["status"].tolist()
    assert statuses[3:6] == ["missing_file", "missing_link", "missing_link"]
    assert statuses[7] == "unsupported_scheme"
    assert statuses[6] == "connection_error" and table["path"].isna().all()
    empty = run(pd.Series([], dtype=object), tmp_path / "cache", tmp_path, progress=False)
    assert empty.empty and list(empty.columns)[:3] == ["link", "path", "status"]


@pytest.mark.parametrize(("body", "status"), [
    (b"", "empty"),
    (b"<html><body>captcha</body></html>", "not_an_image"),
    (b"\x00\x01garbage" * 10, "not_an_image"),
    (LARGE_JPEG[:3000], "corrupt"),
    (SMALL_PNG[:-40], "corrupt"),
    (huge_jpeg(), "too_large"),
    (huge_jpeg(9000, 9000), "too_large"),
    (GOOD_JPEG, "ok"),
])
def test_prepare_image_statuses(body, status):
    started = time.perf_counter()
    assert prepare_image(body).status == status
    assert time.perf_counter() - started < 2.0, "huge headers are refused before decoding"


def test_manifest_reads_are_incremental_and_skip_half_lines(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({"url": "a", "status": "ok", "width": 3}) + '\n{"url": "b", "sta')
    assert set(read_manifest(path)) == {"a"}
    with open(path, "a") as fh:
        fh.write('tus": "http_404"}\n' + json.dumps({"url": "a", "status": "timeout"}) + "\n")
    records = read_manifest(path)
    assert records["b"].status == "http_404" and records["a"].status == "timeout", "the last line wins"
    path.unlink()
    path.write_text(json.dumps({"url": "c", "status": "ok"}) + "\n")
    assert set(read_manifest(path)) == {"c"}, "a replaced manifest is read afresh"


def test_open_image_never_raises(tmp_path):
    (tmp_path / "page.jpg").write_bytes(b"<html></html>")
    (tmp_path / "cut.jpg").write_bytes(LARGE_JPEG[:5000])
    (tmp_path / "huge.jpg").write_bytes(huge_jpeg())
    assert open_image(None) == (None, "missing_file")
    assert open_image(str(tmp_path / "absent.jpg")) == (None, "missing_file")
    assert open_image(str(tmp_path / "page.jpg")) == (None, "not_an_image")
    assert open_image(str(tmp_path / "cut.jpg")) == (None, "corrupt")
    assert open_image(str(tmp_path / "huge.jpg")) == (None, "too_large")


def test_retry_policy_and_retry_after():
    policy = RetryPolicy(backoff_s=1.0, backoff_cap_s=4.0, retry_after_cap_s=10.0)
    assert 1.0 <= policy.delay(1, None) <= 2.0 and 2.0 <= policy.delay(2, None) <= 4.0
    assert 4.0 <= policy.delay(6, None) <= 8.0, "capped"
    assert policy.delay(1, 3.0) == 3.0 and policy.delay(1, 999.0) == 10.0
    assert parse_retry_after("7") == 7.0 and parse_retry_after(None) is None and parse_retry_after("soon") is None
    assert 50 < parse_retry_after(time.strftime("%a, %d %b %Y %H:%M:%S GMT", time.gmtime(time.time() + 60))) <= 61


def test_link_kinds_and_summary():
    assert [link_scheme(x) for x in ("https://a/b.jpg", "HTTP://a", "file:///x", "C:\\img.jpg", "a/b.jpg")] == [
        "https", "http", "file", "", ""]
    assert is_remote("https://m.media-amazon.com/images/I/x.jpg") and not is_remote("ftp://x")
    table = pd.DataFrame({"status": ["ok", "ok", "http_404", "ok"]})
    summary = summarize(table)
    assert summary["status"].tolist() == ["ok", "http_404"] and summary["count"].tolist() == [3, 1]
    assert summary["share"].sum() == pytest.approx(1.0)


def test_manifest_and_table_record_the_original_mode(first, server):
    records = read_manifest(first["cache"] / MANIFEST_NAME)
    modes = {path: records[server.url + path].mode for path in
             ("/good.jpg", "/cmyk.jpg", "/alpha.png", "/anim.gif", "/deep.png", "/large.jpg")}
    assert modes == {"/good.jpg": "RGB", "/cmyk.jpg": "CMYK", "/alpha.png": "RGBA", "/anim.gif": "P",
                     "/deep.png": "I;16", "/large.jpg": "RGB"}
    table = first["table"].drop_duplicates("link").set_index("link")
    assert table.loc[server.url + "/cmyk.jpg", "mode"] == "CMYK"
    assert table.loc["local.png", "mode"] is None, "fetch_images does not open local files"


def test_old_manifest_lines_without_mode_still_load(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({"url": "a", "status": "ok", "bytes": 10, "width": 3, "height": 2, "attempts": 1,
                                "error": ""}) + "\n")
    record = read_manifest(path)["a"]
    assert (record.status, record.width, record.mode) == ("ok", 3, None)


def test_cached_images_needs_no_server(first, server):
    from amzkit.images.fetch import cached_images

    before = server.snapshot()
    table = cached_images(first["series"], first["base"], first["cache"])
    assert server.snapshot() == before, "no request made"
    fetched = first["table"]
    assert table.index.equals(fetched.index) and list(table.columns) == list(fetched.columns)
    remote = fetched["link"].str.startswith(server.url)
    pd.testing.assert_frame_equal(table.loc[remote, ["path", "status", "width", "height", "mode", "bytes"]],
                                  fetched.loc[remote, ["path", "status", "width", "height", "mode", "bytes"]])
    local = table.drop_duplicates("link").set_index("link")
    assert local.loc["local.png", ["width", "height", "mode"]].tolist() == [10, 10, "RGB"]
    assert local.loc["nope.png", "status"] == "missing_file" and local.loc["", "status"] == "missing_link"
    unknown = cached_images(pd.Series([server.url + "/never-fetched.jpg"]), first["base"], first["cache"])
    assert unknown["status"].tolist() == ["not_fetched"] and unknown["path"].tolist() == [None]
