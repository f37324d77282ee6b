"""amzkit.fetch against a local keep-alive server serving real images and every fault the web has.

Nothing here depends on timing: the server answers at once (or never, for the stalled URL, which only its own
test fetches with a short read timeout), every other fetch runs with timeouts no loaded machine reaches, and
the tests assert what the server saw and what the table says, which agree whatever the scheduling.
"""

from __future__ import annotations

import contextlib
import http.server
import io
import json
import os
import re
import threading
import time
import tracemalloc
import zlib
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageFile

import amzkit.images.http as http_module
from amzkit.images.decode import BoundedDecoder, open_image, prepare_image
from amzkit.images.fetch import cached_images, fetch_images
from amzkit.images.http import HostStops, NetworkWatch, RetryPolicy, parse_retry_after
from amzkit.images.records import (
    MANIFEST_NAME,
    STATUSES,
    FetchRecord,
    ManifestWriter,
    cache_name,
    is_remote,
    is_retryable,
    link_scheme,
    read_manifest,
    summarize,
)

FAST_RETRY = RetryPolicy(attempts=3, backoff_s=0.05, backoff_cap_s=0.2, retry_after_cap_s=2.0,
                         final_pass_workers=2, final_pass_attempts=1, final_pass_timeout_factor=1.0)
ONE_TRY = RetryPolicy(attempts=1, final_pass_attempts=0)
TIMEOUT_S = 60.0  # no answer of the local server takes this long, however loaded the machine
STALL_TIMEOUT_S = 0.5  # the stalled URL's own test: it never answers, so any read timeout is reached
STALL_S = 120.0  # the stalled URL answers only when the server stops
MAX_BYTES = 300_000
BOMB_BYTES = 64 * 1024 * 1024  # a gzip body of ~65 KB that decodes to 64 MiB


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


def compress(body: bytes, wbits: int) -> bytes:
    """`body` as gzip (wbits 31), zlib deflate (15) or raw deflate (-15)."""
    packer = zlib.compressobj(9, zlib.DEFLATED, wbits)
    return packer.compress(body) + packer.flush()


def placeholder_gif() -> bytes:
    """A 1x1 transparent GIF (43 bytes): what an image CDN answers, with 200, for a product without a picture."""
    return encode(Image.new("RGBA", (1, 1), (0, 0, 0, 0)).convert("P"), "GIF", transparency=0)


def gzip_bomb(size: int = BOMB_BYTES) -> bytes:
    """A gzip body that decodes to `size` zero bytes, built without holding them."""
    packer, zeros = zlib.compressobj(9, zlib.DEFLATED, 31), bytes(1 << 20)
    return b"".join(packer.compress(zeros) for _ in range(size >> 20)) + packer.flush()


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
    "/pixel.gif": placeholder_gif(),
}
BOMB = gzip_bomb()
ENCODED = {  # path -> (Content-Encoding, body as sent)
    "/gzip.jpg": ("gzip", compress(GOOD_JPEG, 31)),
    "/twice-gzipped.jpg": ("gzip", compress(GOOD_JPEG[:100], 31) + compress(GOOD_JPEG[100:], 31)),  # two members
    "/deflate.png": ("deflate", compress(SMALL_PNG, 15)),
    "/raw-deflate.png": ("deflate", compress(SMALL_PNG, -15)),
    "/bomb.jpg": ("gzip", BOMB),
    "/brotli.jpg": ("br", GOOD_JPEG),
    "/bad-gzip.jpg": ("gzip", b"\x1f\x8b\x08\x00garbage, not deflate" * 3),
}


@dataclass
class Server:
    url: str
    hits: Counter = field(default_factory=Counter)
    times: dict = field(default_factory=lambda: defaultdict(list))
    ports: set = field(default_factory=set)
    stop: threading.Event = field(default_factory=threading.Event)
    busy_until: float | None = None  # /busy-host/: the end of the pause its first answer asked for
    refused_while_busy: int = 0
    refusing: bool = True  # /refusing/: 429 to every request while True, then images

    def hits_under(self, prefix: str) -> int:
        return sum(count for path, count in self.hits.items() if path.startswith(prefix))

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
        elif self.path.startswith("/busy-host/"):  # a host whose first answer asks for a 1 s pause, then serves
            state = self.state
            if state.busy_until is None or time.monotonic() < state.busy_until:
                state.refused_while_busy += state.busy_until is not None
                state.busy_until = state.busy_until or time.monotonic() + 1.0
                self.reply(429, b"slow down", {"Retry-After": "1"})
            else:
                self.reply(200, GOOD_JPEG)
        elif self.path.startswith("/refusing/"):
            self.reply(429, b"slow down") if self.state.refusing else self.reply(200, GOOD_JPEG)
        elif self.path.startswith("/blip/"):  # a rate limit that lets up: 429 to its first 3 requests, then images
            self.reply(429, b"slow down") if self.state.hits_under("/blip/") <= 3 else self.reply(200, GOOD_JPEG)
        elif self.path.startswith("/stall/"):  # as /stall.jpg, under many names
            None if self.state.stop.wait(STALL_S) else self.reply(200, GOOD_JPEG)
        elif self.path in PAYLOADS:
            self.reply(200, PAYLOADS[self.path], {"Content-Type": "image/jpeg"})
        elif self.path in ENCODED:
            encoding, body = ENCODED[self.path]
            self.reply(200, body, {"Content-Type": "image/jpeg", "Content-Encoding": encoding})
        else:
            self.reply(404, b"not found")


ROUTES: dict[str, Callable[[Handler, int], None]] = {
    "/good.jpg": lambda h, hit: h.reply(200, GOOD_JPEG),
    "/flaky500.jpg": lambda h, hit: h.reply(500, b"oops") if hit == 1 else h.reply(200, GOOD_JPEG),
    "/throttled.jpg": lambda h, hit: (h.reply(429, b"slow down", {"Retry-After": "1"}) if hit == 1
                                      else h.reply(200, GOOD_JPEG)),
    "/always503.jpg": lambda h, hit: h.reply(503, b"busy"),
    "/stall.jpg": lambda h, hit: None if h.state.stop.wait(STALL_S) else h.reply(200, GOOD_JPEG),
    "/big-nolength.jpg": lambda h, hit: h.reply(200, PAYLOADS["/big.jpg"], content_length=False),
    "/bomb-nolength.jpg": lambda h, hit: h.reply(200, BOMB, {"Content-Encoding": "gzip"}, content_length=False),
    "/moved.jpg": lambda h, hit: h.reply(302, b"", {"Location": "/img/777.jpg"}),
    "/moved-ftp.jpg": lambda h, hit: h.reply(301, b"", {"Location": "ftp://elsewhere/a.jpg"}),
    "/moved-utf8.jpg": lambda h, hit: h.reply(302, b"", {"Location": "/caf\u00e9 1.jpg".encode().decode("latin-1")}),
    "/caf%C3%A9%201.jpg": lambda h, hit: h.reply(200, GOOD_JPEG),
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


def wait_for_hits(server: Server, path: str, count: int, deadline_s: float = 60.0) -> int:
    """The server's hits on `path` once they reach `count` (a request the client gave up on may still be on
    its way in); returns what it saw by the deadline, so a shortfall fails the assertion, never the timing."""
    give_up = time.monotonic() + deadline_s
    while server.hits[path] < count and time.monotonic() < give_up:
        time.sleep(0.05)
    return server.hits[path]


EXPECTED = {  # path on the server -> status
    "/good.jpg": "ok", "/cmyk.jpg": "ok", "/alpha.png": "ok", "/anim.gif": "ok", "/deep.png": "ok",
    "/small.png": "ok", "/large.jpg": "ok", "/flaky500.jpg": "ok", "/throttled.jpg": "ok",
    "/missing.jpg": "http_404", "/always503.jpg": "http_503", "/truncated.jpg": "corrupt",
    "/page.jpg": "not_an_image", "/huge.jpg": "too_large", "/empty.jpg": "empty", "/big.jpg": "too_large",
    "/big-nolength.jpg": "too_large", "/moved.jpg": "ok", "/moved-ftp.jpg": "unsupported_scheme",
    "/gzip.jpg": "ok", "/twice-gzipped.jpg": "ok", "/deflate.png": "ok", "/raw-deflate.png": "ok",
    "/bomb.jpg": "too_large", "/bomb-nolength.jpg": "too_large", "/brotli.jpg": "corrupt", "/bad-gzip.jpg": "corrupt",
    "/pixel.gif": "placeholder",
}
PERMANENT = ("/missing.jpg", "/truncated.jpg", "/page.jpg", "/huge.jpg", "/empty.jpg", "/big.jpg",
             "/big-nolength.jpg", "/bomb.jpg", "/bomb-nolength.jpg", "/brotli.jpg", "/bad-gzip.jpg", "/pixel.gif")


def run(links, cache: Path, base: Path, **options) -> pd.DataFrame:
    settings = {"max_workers": 8, "timeout": TIMEOUT_S, "max_bytes": MAX_BYTES, "retry": FAST_RETRY}
    return fetch_images(pd.Series(links) if isinstance(links, list) else links, base_dir=base, cache_dir=cache,
                        **{**settings, **options})


@pytest.fixture(scope="module")
def first(server, dead_url, tmp_path_factory):
    """One fetch of every fault, plus local links and duplicates, under a shuffled non-range index."""
    base = tmp_path_factory.mktemp("csv_dir")
    Image.new("RGB", (10, 10), (1, 2, 3)).save(base / "local.png")
    (base / "zero.jpg").write_bytes(b"")
    dead = f"{dead_url}/x.jpg"
    links = [server.url + path for path in EXPECTED]
    links += [server.url + "/good.jpg", server.url + "/small.png", "local.png", f"file://{base / 'local.png'}",
              "nope.png", "zero.jpg", "", None, "ftp://host/a.jpg", "data:image/png;base64,iVBOR", dead]
    index = pd.Index(np.random.default_rng(0).permutation(len(links)) * 7 + 1000, name="row")
    series = pd.Series(links, index=index, dtype=object)
    cache = tmp_path_factory.mktemp("cache")
    table = run(series, cache, base, progress=True)
    return {"series": series, "table": table, "cache": cache, "base": base, "dead": dead, "hits": server.snapshot()}


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
    table = first["table"].drop_duplicates("link").set_index("link")
    attempts = {path: table.loc[server.url + path, "attempts"] for path in EXPECTED}
    assert {path: hits[path] for path in EXPECTED} == attempts, "the table counts every request the server saw"
    assert hits["/good.jpg"] == 1 and hits["/small.png"] == 1, "duplicate URLs are fetched once"
    assert hits["/flaky500.jpg"] == 2 and hits["/throttled.jpg"] == 2, "a 500 or 429 is retried until ok"
    assert hits["/always503.jpg"] == FAST_RETRY.attempts + FAST_RETRY.final_pass_attempts
    for path in PERMANENT:
        assert hits[path] == 1, f"{path} is a permanent failure: not retried"
    assert hits["/moved.jpg"] == 1 and hits["/img/777.jpg"] == 1, "redirects are followed"
    first_hit, second_hit = server.times["/throttled.jpg"][:2]
    assert second_hit - first_hit >= 0.99, "Retry-After: 1 is honoured (load only lengthens the wait)"


def test_a_retry_after_pauses_every_link_of_its_host(server, tmp_path):
    links = [f"{server.url}/busy-host/{i}.jpg" for i in range(6)]
    table = run(links, tmp_path / "cache", tmp_path, max_workers=1, progress=False,
                retry=RetryPolicy(attempts=2, final_pass_attempts=0))
    assert server.refused_while_busy == 0, "no link is sent to a host within the Retry-After it asked for"
    assert (table["status"] == "ok").all() and table["attempts"].sum() == len(links) + 1


def test_a_redirect_to_a_non_ascii_path_sent_in_utf8_is_followed(server, tmp_path):
    table = run([server.url + "/moved-utf8.jpg"], tmp_path / "cache", tmp_path, progress=False, retry=ONE_TRY)
    assert table["status"].tolist() == ["ok"] and server.hits["/caf%C3%A9%201.jpg"] == 1


def test_a_stalled_server_times_out_and_is_retried_as_told(server, tmp_path):
    before = server.hits["/stall.jpg"]
    table = run([server.url + "/stall.jpg"], tmp_path / "cache", tmp_path, timeout=(TIMEOUT_S, STALL_TIMEOUT_S),
                progress=False)
    tries = FAST_RETRY.attempts + FAST_RETRY.final_pass_attempts
    assert table["status"].tolist() == ["timeout"] and table["attempts"].tolist() == [tries]
    assert "Read timed out" in table["error"][0]
    assert wait_for_hits(server, "/stall.jpg", before + tries) == before + tries, "every try reached the server"


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
    assert new == Counter({"/always503.jpg": 1}), "ok and permanently failed URLs are not fetched again"
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


def test_a_shrunk_copy_reused_without_its_manifest_line_reports_the_originals_size(server, tmp_path):
    links = [f"{server.url}/large.jpg", f"{server.url}/cmyk.jpg"]
    first = run(links, tmp_path / "cache", tmp_path, progress=False)
    assert first["width"].tolist() == [1500, 40] and first["bytes"][0] == len(LARGE_JPEG)
    assert Image.open(first["path"][0]).size == (512, 341), "the cache holds a shrunk copy"
    (tmp_path / "cache" / MANIFEST_NAME).unlink()  # a kill before the manifest's lines were flushed
    before = server.snapshot()
    again = run(links, tmp_path / "cache", tmp_path, progress=False)
    assert server.snapshot() - before == Counter(), "the cached files are reused"
    columns = ["status", "width", "height", "bytes", "mode"]
    assert again[columns].to_dict("records") == first[columns].to_dict("records")


def test_a_full_disk_stops_the_fetch_with_the_cache_named_and_no_link_retried(server, tmp_path, monkeypatch):
    """The cache's disk failing is no network error: it was recorded connection_error and every link retried."""
    @contextlib.contextmanager
    def full_disk(target):
        raise OSError(28, "No space left on device")
        yield target

    monkeypatch.setattr(http_module, "atomic_path", full_disk)
    links = [f"{server.url}/img/{i}.jpg" for i in range(950, 956)]
    before = server.snapshot()
    with pytest.raises(OSError, match=r"image cache could not be read or written at .*cache.* No space left on "
                                      r"device.*free space on that disk .* the images fetched so far are kept"):
        run(links, tmp_path / "cache", tmp_path, progress=False)
    assert max((server.snapshot() - before).values()) == 1, "no link is asked for again"


def test_a_failure_on_one_images_bytes_is_that_links_status_not_a_network_error(server, tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug on these bytes")

    monkeypatch.setattr(http_module, "prepare_image", broken)
    links = [f"{server.url}/img/{i}.jpg" for i in range(960, 963)]
    before = server.snapshot()
    table = run(links, tmp_path / "cache", tmp_path, progress=False)
    assert table["status"].tolist() == ["corrupt"] * 3 and table["error"].str.contains("a bug on these bytes").all()
    asked = server.snapshot() - before  # only these links: the test before may still have one in flight
    assert {path: asked[path] for path in (f"/img/{i}.jpg" for i in range(960, 963))} == dict.fromkeys(
        (f"/img/{i}.jpg" for i in range(960, 963)), 1), "not retried"


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
    (placeholder_gif(), "placeholder"),
    (encode(Image.new("RGB", (600, 5), (9, 9, 9)), "PNG"), "placeholder"),
    (encode(Image.new("RGB", (8, 8), (9, 9, 9)), "PNG"), "ok"),
], ids=["empty", "html", "garbage", "cut-jpeg", "cut-png", "huge-40k", "huge-9k", "good", "pixel-gif", "strip", "8px"])
def test_prepare_image_statuses(body, status):
    prepared = prepare_image(body)
    assert prepared.status == status
    if status == "too_large":
        assert "pixels" in prepared.error, "huge headers are refused from the header, before decoding the pixels"


def test_a_malformed_link_is_its_own_permanent_status_never_requested_nor_a_network_failure(server, tmp_path):
    """An http(s) link without a host, or one that does not parse, was a connection_error: a passing failure, so it
    was tried again and again, every rerun of 01 fetched it again and it counted towards 'the network dropped'."""
    malformed = ["http://", "https:///nohost.jpg", "http://[::1", "http://a b.com/x.jpg", "http://127.0.0.1:99999/x"]
    links = [*malformed, server.url + "/good.jpg"]
    table = run(links, tmp_path / "cache", tmp_path, progress=False)
    assert table["status"].tolist() == ["malformed_link"] * len(malformed) + ["ok"]
    assert (table["attempts"][:len(malformed)] == 0).all() and table["error"][:len(malformed)].str.len().gt(0).all()
    assert not is_retryable("malformed_link") and "malformed_link" in STATUSES
    assert set(read_manifest(tmp_path / "cache" / MANIFEST_NAME)) == {server.url + "/good.jpg"}
    offline = cached_images(pd.Series(links), tmp_path, tmp_path / "cache")
    assert offline["status"].tolist() == table["status"].tolist(), "01's later stages see the same status"


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


def test_a_manifest_deleted_and_started_anew_is_read_whole(tmp_path):
    path = tmp_path / MANIFEST_NAME

    def write(urls: list[str]) -> None:
        writer = ManifestWriter(path)
        for url in urls:
            writer.write(FetchRecord(url, "ok", 100, 10, 10, 1, mode="RGB"))
        writer.close()

    write([f"old/{i}" for i in range(10)])
    assert len(read_manifest(path)) == 10
    path.unlink()  # the cache deleted to start over, in the same session (the new file may take the old inode)
    assert read_manifest(path) == {}
    write([f"new/{i}" for i in range(40)])
    assert sorted(read_manifest(path)) == sorted(f"new/{i}" for i in range(40))
    path.unlink()
    write([f"newer/{i}" for i in range(60)])  # deleted and written anew with no read in between
    assert sorted(read_manifest(path)) == sorted(f"newer/{i}" for i in range(60))


def test_open_image_never_raises(tmp_path):
    (tmp_path / "page.jpg").write_bytes(b"<html></html>")
    (tmp_path / "cut.jpg").write_bytes(LARGE_JPEG[:5000])
    (tmp_path / "huge.jpg").write_bytes(huge_jpeg())
    assert open_image(None) == (None, "missing_file")
    assert open_image(str(tmp_path / "absent.jpg")) == (None, "missing_file")
    assert open_image(str(tmp_path / "page.jpg")) == (None, "not_an_image")
    assert open_image(str(tmp_path / "cut.jpg")) == (None, "corrupt")
    assert open_image(str(tmp_path / "huge.jpg")) == (None, "too_large")


def grey16_png_with_key(width: int, height: int) -> bytes:
    """A 16-bit grey PNG whose left half holds value 0, made transparent by a tRNS key (Pillow cannot write one)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return len(data).to_bytes(4, "big") + kind + data + zlib.crc32(kind + data).to_bytes(4, "big")

    row = b"\x00" + b"".join((0 if x < width // 2 else 50_000).to_bytes(2, "big") for x in range(width))
    header = width.to_bytes(4, "big") + height.to_bytes(4, "big") + bytes([16, 0, 0, 0, 0])
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"tRNS", (0).to_bytes(2, "big"))
            + chunk(b"IDAT", zlib.compress(row * height)) + chunk(b"IEND", b""))


@pytest.mark.parametrize("size", [(40, 30), (800, 600)], ids=["kept", "shrunk"])
def test_a_16_bit_grey_png_with_a_transparency_key_is_white_there(size, tmp_path):
    prepared = prepare_image(grey16_png_with_key(*size))
    assert prepared.status == "ok" and prepared.mode == "I;16"
    (tmp_path / "img").write_bytes(prepared.data)
    img, status = open_image(str(tmp_path / "img"))
    pixels = np.asarray(img, dtype=int)
    assert status == "ok" and (pixels[:, : img.width // 2 - 2] == 255).all(), "transparent: white, as alpha is"
    assert (np.abs(pixels[:, img.width // 2 + 2:] - 195) <= 2).all(), "the opaque half keeps its grey"


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
    local = table.loc["local.png", ["mode", "width", "bytes"]].tolist()
    assert local == ["RGB", 10, (first["base"] / "local.png").stat().st_size], "local files are read"


def test_a_local_file_that_does_not_decode_is_not_ok_before_or_after_01(tmp_path):
    good = encode(gradient((300, 200)), "JPEG")
    files = {"good.jpg": good, "cut.jpg": good[: len(good) // 2], "page.jpg": b"<html><body>login</body></html>",
             "empty.jpg": b"", "pixel.gif": placeholder_gif()}
    for name, body in files.items():
        (tmp_path / name).write_bytes(body)
    links = pd.Series(list(files))
    expected = ["ok", "corrupt", "not_an_image", "empty", "placeholder"]
    for table in (fetch_images(links, base_dir=tmp_path, cache_dir=tmp_path / "cache", progress=False),
                  cached_images(links, tmp_path, tmp_path / "cache")):
        assert table["status"].tolist() == expected
        assert table["path"].notna().tolist() == [True, False, False, False, False], "a failed image has no path"
        assert table["width"][0] == 300 and table["bytes"][0] == len(good)


def test_old_manifest_lines_without_mode_still_load(tmp_path):
    path = tmp_path / MANIFEST_NAME
    path.write_text(json.dumps({"url": "a", "status": "ok", "bytes": 10, "width": 3, "height": 2, "attempts": 1,
                                "error": ""}) + "\n")
    record = read_manifest(path)["a"]
    assert (record.status, record.width, record.mode) == ("ok", 3, None)


def test_cached_images_needs_no_server(first, server):
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


# --- content encodings: the byte limit counts decoded bytes --------------------------------------------------


def test_encoded_bodies_are_decoded_and_stored_as_the_image(first, server):
    table = first["table"].drop_duplicates("link").set_index("link")
    assert Path(table.loc[server.url + "/gzip.jpg", "path"]).read_bytes() == GOOD_JPEG
    assert Path(table.loc[server.url + "/twice-gzipped.jpg", "path"]).read_bytes() == GOOD_JPEG
    for path in ("/deflate.png", "/raw-deflate.png"):
        assert Path(table.loc[server.url + path, "path"]).read_bytes() == SMALL_PNG, path
    assert table.loc[server.url + "/gzip.jpg", "bytes"] == len(GOOD_JPEG), "bytes counts the decoded body"
    for path in ("/bomb.jpg", "/bomb-nolength.jpg"):
        assert f"over {MAX_BYTES} bytes decoded from gzip" in table.loc[server.url + path, "error"], path
    assert "'br' is not decoded" in table.loc[server.url + "/brotli.jpg", "error"]


def test_a_gzip_bomb_never_takes_more_memory_than_the_limit(server, tmp_path):
    assert len(BOMB) < MAX_BYTES < BOMB_BYTES, "the bomb passes any check on the bytes sent"
    tracemalloc.start()
    try:
        table = run([server.url + "/bomb.jpg", server.url + "/bomb-nolength.jpg"], tmp_path / "cache", tmp_path,
                    progress=False)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert table["status"].tolist() == ["too_large", "too_large"]
    assert peak < 10 * MAX_BYTES, f"{peak:,} bytes at the peak for a limit of {MAX_BYTES:,}"


def test_bounded_decoder_stops_past_its_limit_and_reads_every_gzip_member():
    decoder = BoundedDecoder("gzip", limit=1000)
    out = decoder.decode(BOMB[:5000])
    assert len(out) == 1001 and decoder.size == 1001 and decoder.decode(BOMB[5000:]) == b""
    members = compress(b"a" * 10, 31) + compress(b"b" * 5, 31) + b"\x00\x00trailing padding"
    assert BoundedDecoder("gzip", limit=100).decode(members) == b"a" * 10 + b"b" * 5
    split = BoundedDecoder("deflate", limit=10**6)
    raw = compress(SMALL_PNG, -15)
    assert split.decode(raw[:7]) + split.decode(raw[7:]) == SMALL_PNG, "raw deflate, fed in pieces"


# --- local links: only inside the data folder ----------------------------------------------------------


def test_local_links_resolve_only_inside_the_data_folder(tmp_path):
    base, outside = tmp_path / "csv", tmp_path / "elsewhere"
    (base / "sub").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (10, 10), (1, 2, 3)).save(base / "sub" / "in.png")
    Image.new("RGB", (12, 10), (9, 9, 9)).save(outside / "secret.png")
    (base / "escape.png").symlink_to(outside / "secret.png")
    inside = ["sub/in.png", str(base / "sub" / "in.png"), f"file://{base / 'sub' / 'in.png'}", "sub/../sub/in.png"]
    escaping = ["../elsewhere/secret.png", str(outside / "secret.png"), f"file://{outside / 'secret.png'}",
                "escape.png", "../../../../../../etc/passwd", "/etc/passwd", "file:///etc/passwd"]
    links = pd.Series(inside + escaping)
    for table in (run(links, tmp_path / "cache", base, progress=False), cached_images(links, base, tmp_path / "c")):
        assert table["status"].tolist() == ["ok"] * len(inside) + ["outside_data_dir"] * len(escaping)
        refused = table.iloc[len(inside):]
        assert refused["path"].isna().all() and (refused["bytes"] == 0).all() and refused["width"].isna().all()
        assert refused["error"].str.contains(f"is outside the data folder {base.resolve()}", regex=False).all()
    allowed = run(links, tmp_path / "cache", base, progress=False, allowed_dirs=[outside])
    assert allowed["status"].tolist()[len(inside):] == ["ok"] * 4 + ["outside_data_dir"] * 3, "an allow-list"
    odd = run(["sub/nul\x00.png", "sub/", "sub"], tmp_path / "cache", base, progress=False)
    assert odd["status"].tolist() == ["missing_file"] * 3 and "null byte" in odd["error"][0]
    assert "outside_data_dir" in STATUSES


# --- network down: decided early from the first links, every link still in the table -------------------------


def test_a_network_found_down_stops_early_and_records_every_link(no_dns, dead_url, server, tmp_path):
    probe = [f"{dead_url}/{i}.jpg" for i in range(3)] + [f"http://img{i}.invalid/{i}.jpg" for i in range(3)]
    rest = [f"http://img.invalid/rest{i}.jpg" for i in range(20)] + [f"{dead_url}/rest.jpg", "local-missing.png"]
    watch = NetworkWatch(probe_links=len(probe))
    table = run(probe + rest, tmp_path / "cache", tmp_path, watch=watch)
    assert watch.verdict == NetworkWatch.DOWN and watch.unreachable == len(probe)
    assert len(table) == len(probe) + len(rest), "every link has its row"
    tried, untried = table.iloc[:len(probe)], table.iloc[len(probe):-1]
    assert (tried["status"] == "connection_error").all()
    assert (tried["attempts"] == 1).all(), "the first links are tried once each; their retries wait for the verdict"
    assert tried["error"].str.contains("NameResolutionError").sum() == 3
    assert (untried["status"] == "not_fetched").all() and (untried["attempts"] == 0).all()
    assert untried["error"].str.startswith("not tried: the first 6 image links tried (4 hosts").all()
    assert table["status"].iloc[-1] == "missing_file", "local links are resolved as ever"
    assert set(read_manifest(tmp_path / "cache" / MANIFEST_NAME)) == set(probe), "no manifest line for untried links"
    before = server.snapshot()
    later = run([server.url + "/good.jpg"], tmp_path / "cache2", tmp_path, watch=watch)
    assert later["status"].tolist() == ["not_fetched"] and server.snapshot() == before, "later fetches try nothing"


def test_one_answer_among_the_first_links_means_the_network_is_up(no_dns, dead_url, server, tmp_path):
    dead = [f"{dead_url}/{i}.jpg" for i in range(3)] + ["http://img.invalid/a.jpg"]
    links = dead + [server.url + "/missing.jpg"] + [f"{dead_url}/late{i}.jpg" for i in range(3)]
    watch = NetworkWatch(probe_links=5)  # the 404 is among the first five: an answer, so the network is up
    table = run(links, tmp_path / "cache", tmp_path, watch=watch)
    assert watch.verdict == NetworkWatch.UP
    assert table["status"].tolist() == ["connection_error"] * 4 + ["http_404"] + ["connection_error"] * 3
    tries = FAST_RETRY.attempts + FAST_RETRY.final_pass_attempts
    assert table["attempts"].tolist() == [tries] * 4 + [1] + [tries] * 3, "every link tried and retried as ever"


def test_malformed_links_tell_nothing_about_the_network(server, tmp_path):
    watch = NetworkWatch(probe_links=1)
    table = run(["http://", "https:///nohost.jpg", server.url + "/good.jpg"], tmp_path / "cache", tmp_path,
                watch=watch, retry=ONE_TRY)
    assert watch.verdict == NetworkWatch.UP, "the malformed links are never tried: the good one is the probe"
    assert table["status"].tolist() == ["malformed_link", "malformed_link", "ok"]



def test_an_image_whose_cache_file_is_gone_is_not_ok_when_the_network_is_down(server, tmp_path):
    first = run([server.url + "/good.jpg", server.url + "/missing.jpg"], tmp_path / "cache", tmp_path)
    assert first["status"].tolist() == ["ok", "http_404"]
    Path(first["path"][0]).unlink()  # the cache file lost (a cache copied in part), its manifest line kept
    watch = NetworkWatch()
    watch.verdict = NetworkWatch.DOWN  # found down by an earlier fetch of the run (01's earlier shard)
    table = run([server.url + "/good.jpg", server.url + "/missing.jpg"], tmp_path / "cache", tmp_path, watch=watch,
                retry_failed=True)
    assert table["status"].tolist() == ["not_fetched", "http_404"], "no picture is not ok; a failure keeps its record"
    assert table["path"].isna().all()


def test_links_that_failed_before_are_no_sign_of_the_network_down(dead_url, tmp_path):
    dead = [f"{dead_url}/gone{i}.jpg" for i in range(3)]  # one host that refuses connections
    run(dead, tmp_path / "cache", tmp_path, retry=ONE_TRY)  # a first run: they fail
    watch = NetworkWatch(probe_links=5)
    table = run(dead, tmp_path / "cache", tmp_path, watch=watch)  # a rerun tries only them: they fail as ever
    assert watch.verdict == NetworkWatch.UNDECIDED, "no verdict from links known to fail"
    assert table["status"].tolist() == ["connection_error"] * 3
    tries = FAST_RETRY.attempts + FAST_RETRY.final_pass_attempts
    assert table["attempts"].tolist() == [tries] * 3, "tried and retried as ever, not held back"


def test_an_image_fetched_before_that_still_answers_means_the_network_is_up(dead_url, server, tmp_path):
    run([server.url + "/good.jpg"], tmp_path / "cache", tmp_path)  # the cache holds an image of this work folder
    new_dead = [f"{dead_url}/new{i}.jpg" for i in range(3)]  # then new links, all on a host that is down
    watch, before = NetworkWatch(probe_links=3), server.snapshot()
    table = run(new_dead, tmp_path / "cache", tmp_path, watch=watch)
    assert watch.verdict == NetworkWatch.UP, "the image fetched before answered: one dead host, not the network"
    assert server.snapshot() - before == Counter({"/good.jpg": 1}), "one try at it, and only when the probe failed"
    assert table["status"].tolist() == ["connection_error"] * 3
    tries = FAST_RETRY.attempts + FAST_RETRY.final_pass_attempts
    assert table["attempts"].tolist() == [tries] * 3


def test_a_network_still_down_on_a_rerun_is_found_down_from_the_links_not_tried_before(dead_url, tmp_path):
    links = [f"{dead_url}/{i}.jpg" for i in range(8)]
    first_watch = NetworkWatch(probe_links=3)
    run(links, tmp_path / "cache", tmp_path, watch=first_watch)
    assert first_watch.verdict == NetworkWatch.DOWN
    seen = f"{dead_url}/seen-before.jpg"  # an image of an earlier run, now unreachable as the rest
    with open(tmp_path / "cache" / MANIFEST_NAME, "a", encoding="utf-8") as fh:
        fh.write(json.dumps({"url": seen, "status": "ok", "bytes": 10, "attempts": 1}) + "\n")
    watch = NetworkWatch(probe_links=3)
    table = run(links, tmp_path / "cache", tmp_path, watch=watch)
    assert watch.verdict == NetworkWatch.DOWN and watch.unreachable == 3
    assert f"nor did {seen} (fetched before)" in watch.summary()
    records = read_manifest(tmp_path / "cache" / MANIFEST_NAME)
    assert [records[link].attempts for link in links[:6]] == [1] * 6, "the probe: the 3 links not tried before"
    assert table["status"].tolist() == ["connection_error"] * 6 + ["not_fetched"] * 2


# --- bounds: a host that keeps failing is sent nothing more; the retry pass has a time budget --------------------


def stop_after(failures: int, seconds: float = 0.0, **options) -> RetryPolicy:
    """A policy whose host stop comes after `failures` passing failures in a row over `seconds`; no waits."""
    settings = {"attempts": 2, "backoff_s": 0.0, "backoff_cap_s": 0.0, "final_pass_attempts": 1,
                "final_pass_timeout_factor": 1.0, "host_stop_failures": failures, "host_stop_s": seconds}
    return RetryPolicy(**{**settings, **options})


def test_a_host_that_keeps_refusing_is_sent_nothing_more_and_a_rerun_fetches_its_links(server, tmp_path, capsys):
    refusing = [f"{server.url}/refusing/{i}.jpg" for i in range(30)]
    other = [f"{server.url.replace('127.0.0.1', 'localhost')}/img/{i}.jpg" for i in range(5)]  # another host
    before, server.refusing = server.hits_under("/refusing/"), True
    try:
        table = run(refusing + other, tmp_path / "cache", tmp_path, max_workers=1, retry=stop_after(4))
        assert server.hits_under("/refusing/") - before == 4, "its 4th failure in a row stops it: no 5th request"
        mine = table.iloc[:len(refusing)]
        assert set(mine["status"]) == {"http_429", "not_fetched"} and mine["attempts"].sum() == 4
        untried = mine[mine["status"] == "not_fetched"]
        assert (untried["attempts"] == 0).all() and untried["path"].isna().all()
        host = server.url.removeprefix("http://")
        assert untried["error"].str.startswith(f"not tried: image host {host} failed each of its last 4 requests").all()
        assert (table.iloc[len(refusing):]["status"] == "ok").all(), "another host is fetched as ever"
        said = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"image host {host} ")]
        assert len(said) == 1 and f"{len(untried)} of its links not tried (not_fetched)" in said[0]
        assert "rerun 01 later" in said[0]
        assert set(read_manifest(tmp_path / "cache" / MANIFEST_NAME)) == set(other) | set(mine.loc[
            mine["status"] == "http_429", "link"]), "no manifest line for a link not tried"
        server.refusing = False  # the host answers again: a rerun fetches its links, and only them
        again = run(refusing + other, tmp_path / "cache", tmp_path, max_workers=1, retry=stop_after(4))
        assert (again["status"] == "ok").all()
        assert server.hits_under("/refusing/") - before == 4 + len(refusing)
    finally:
        server.refusing = True


def test_a_host_is_stopped_only_after_failures_in_a_row_over_the_time_given(server, tmp_path, capsys):
    between = [link for i in range(10) for link in (f"{server.url}/refusing/between{i}.jpg",
                                                    f"{server.url}/img/{500 + i}.jpg")]  # an image between failures
    table = run(between, tmp_path / "a", tmp_path, max_workers=1, retry=stop_after(2, attempts=1))
    assert table["status"].tolist() == ["http_429", "ok"] * 10, "each link tried: an answer resets the count"
    assert table["attempts"].tolist() == [2, 1] * 10, "the retry pass (failures only, in a row) stops no host"
    blip = [f"{server.url}/blip/{i}.jpg" for i in range(10)]  # 3 failures hold it back for 2 s, then it answers
    table = run(blip, tmp_path / "b", tmp_path, max_workers=1, retry=stop_after(3, 2.0, attempts=4))
    assert (table["status"] == "ok").all() and server.hits_under("/blip/") == 3 + 10, "no link worn out, none stopped"
    assert "image host" not in capsys.readouterr().out


def test_a_host_refusing_faster_than_the_time_given_is_held_back_then_stopped_not_sent_every_try(
        server, tmp_path, capsys):
    """A rate limit answering 429 at once made its 100 failures in a row long before 60 s: every link wore out its
    tries in seconds and ended http_429, the host was never stopped, and each later shard sent it every try again.
    Now such a host is sent nothing more till the time given has passed since its first failure; a failure then
    stops it (and the run's later fetches send it a probe only)."""
    links = [f"{server.url}/refusing/fast{i}.jpg" for i in range(20)]
    stops, host = HostStops(), server.url.removeprefix("http://")
    before, server.refusing = server.hits_under("/refusing/"), True
    table = run(links, tmp_path / "cache", tmp_path, max_workers=1, retry=stop_after(3, 1.0), host_stops=stops)
    assert server.hits_under("/refusing/") - before <= 4, "3 failures in a row hold it back; the next stops it"
    assert set(table["status"]) == {"http_429", "not_fetched"} and list(stops.current()) == [host]
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith(f"image host {host} ")]
    assert len(said) == 1 and "rerun 01 later" in said[0]


@pytest.mark.parametrize(("status", "reach", "held"), [("http_429", http_module.REACHED, True),
                                                       ("http_503", http_module.REACHED, True),
                                                       ("connection_error", http_module.UNREACHABLE, False)])
def test_only_a_host_answering_failures_fast_is_held_back_never_one_out_of_reach(tmp_path, status, reach, held):
    """Internet off fails every connection at once: a hold of 60 s there would keep the network watch (its first
    200 links, one host on Amazon's data) from its verdict, and 01 from stopping at once with what to do."""
    downloader = http_module.Downloader(tmp_path, (1.0, 1.0), 1000, 64, 10_000, stop_after(3, 3600.0), pool_size=1)
    url = "http://images.example/a.jpg"
    assert [downloader.note(url, status, reach) for _ in range(5)] == [None] * 5 and not downloader.stopped
    assert (downloader.paused_for(url) > 3000) == held


@pytest.mark.parametrize("watching", [False, True])
def test_a_network_gone_mid_run_stops_the_fetch_after_a_few_failures(dead_url, server, tmp_path, watching):
    """A later shard of 01 (the watch found the network up) or a plain fetch: connections fail for every link."""
    links = [f"{dead_url}/gone-mid-run{i}.jpg" for i in range(12)]
    watch = NetworkWatch()
    watch.verdict = NetworkWatch.UP
    table = run(links, tmp_path / "cache", tmp_path, max_workers=1, retry=stop_after(5, attempts=3),
                watch=watch if watching else None)
    assert table["attempts"].sum() == 5 and set(table["status"]) == {"connection_error", "not_fetched"}
    assert watch.verdict == NetworkWatch.UP


def test_a_host_stopped_while_the_watch_still_probes_ends_the_fetch(dead_url, server, tmp_path):
    links = [f"{dead_url}/probed{i}.jpg" for i in range(10)] + [server.url + "/img/900.jpg"]
    watch = NetworkWatch(probe_links=5)  # the dead host is stopped after 2 of the 5 probe links
    table = run(links, tmp_path / "cache", tmp_path, max_workers=1, retry=stop_after(2), watch=watch)
    statuses = table["status"].tolist()
    assert Counter(statuses[:5]) == {"connection_error": 2, "not_fetched": 3}, "2 probe links tried, in any order"
    assert statuses[5:] == ["not_fetched"] * 6
    assert watch.verdict == NetworkWatch.DOWN, "no probe link answered: the verdict is reached, nothing waits on"


def test_a_host_an_earlier_fetch_of_the_run_stopped_is_sent_a_probe_first_and_used_again_when_it_answers(
        server, tmp_path, capsys):
    """01's shards: the stop lasted one fetch, so a host down for good cost each shard its whole stop rule again."""
    cache, stops, host = tmp_path / "cache", HostStops(), server.url.removeprefix("http://")
    before, server.refusing = server.hits_under("/refusing/"), True
    try:
        run([f"{server.url}/refusing/shard0-{i}.jpg" for i in range(10)], cache, tmp_path, max_workers=1,
            retry=stop_after(4), host_stops=stops)
        assert server.hits_under("/refusing/") - before == 4 and list(stops.current()) == [host]
        later = [f"{server.url}/refusing/shard1-{i}.jpg" for i in range(40)]
        for link in later[:5]:  # images on disk with no manifest line (a killed run): no request, no probe spent
            (cache / cache_name(link)).write_bytes(GOOD_JPEG)
        table = run(later, cache, tmp_path, max_workers=8, retry=stop_after(4, attempts=1),  # a retry, due at
                    host_stops=stops)  # once, could be one of the probe's 3 requests: 2 links http_429
        assert server.hits_under("/refusing/") - before == 4 + 3, "a probe of 3 requests, whatever the threads"
        assert (table["status"] == "http_429").sum() == 3 and table["attempts"].sum() == 3
        assert set(table["status"][:5]) <= {"ok", "not_fetched"}, "those on disk: no request (tried or not)"
        assert set(table["status"][5:]) == {"http_429", "not_fetched"}
        said = capsys.readouterr().out
        assert f"image host {host}, stopped by an earlier fetch of this run, failed each of the 3 requests" in said
        assert list(stops.current()) == [host]
        server.refusing = False  # it answers again: the probe's first answer lets every link through
        table = run(later, cache, tmp_path, max_workers=8, retry=stop_after(4), host_stops=stops)
        assert (table["status"] == "ok").all() and stops.current() == {}
        assert server.hits_under("/refusing/") - before == 4 + 3 + 35
    finally:
        server.refusing = True


def test_a_host_its_probe_stopped_is_sent_nothing_by_a_try_that_had_not_yet_claimed_its_place(tmp_path):
    """A thread past the stopped-host check when the probe's last failure stopped the host found it off probation
    and sent its try anyway: 01's later shards sent a host refusing everything 7 requests, not 3 (64 threads)."""
    stop = http_module.HostStop("images.example", 4, 60.0, Counter(http_429=4))
    downloader = http_module.Downloader(tmp_path, (1.0, 1.0), 1000, 64, 10_000, stop_after(4), pool_size=1,
                                        carried={"images.example": stop})
    url = "http://images.example/a.jpg"
    assert [downloader.claim(url) for _ in range(4)] == [True, True, True, False], "a probe of 3"
    assert [downloader.note(url, "http_429", http_module.REACHED) is not None for _ in range(3)] == [False] * 2 + [True]
    assert downloader.is_stopped(url) and not downloader.claim(url), "stopped: no more tries"
    other = "http://elsewhere.example/b.jpg"
    assert downloader.claim(other), "another host as ever"


def test_a_probe_that_stops_a_host_while_the_watch_still_probes_ends_the_fetch(dead_url, server, tmp_path):
    stops = HostStops()
    run([f"{dead_url}/earlier{i}.jpg" for i in range(4)], tmp_path / "cache", tmp_path, max_workers=1,
        retry=stop_after(2), host_stops=stops)
    links = [f"{dead_url}/carried{i}.jpg" for i in range(10)]
    watch = NetworkWatch(probe_links=6)  # 3 of its links tried (the host's probe), the other 3 wait, then stop
    table = run(links, tmp_path / "cache", tmp_path, max_workers=4, retry=stop_after(2), host_stops=stops,
                watch=watch)
    assert table["status"].value_counts().to_dict() == {"not_fetched": 7, "connection_error": 3}
    assert table["attempts"].sum() == 3 and watch.verdict == NetworkWatch.DOWN


def test_the_retry_pass_stops_at_its_time_budget_leaving_the_failures_for_a_rerun(server, tmp_path, capsys):
    links = [f"{server.url}/stall/{i}.jpg" for i in range(3)]
    policy = stop_after(1000, attempts=1, final_pass_timeout_factor=200.0,  # its tries could take 100 s each
                        final_pass_time_share=0.0, final_pass_min_s=0.2)
    table = run(links, tmp_path / "cache", tmp_path, timeout=(TIMEOUT_S, STALL_TIMEOUT_S), retry=policy)
    assert table["status"].tolist() == ["timeout"] * 3 and table["attempts"].tolist() == [1] * 3
    manifest = tmp_path / "cache" / MANIFEST_NAME
    assert len(manifest.read_text().splitlines()) == 3, "the main pass's lines only: the retry pass finished none"
    said = [line for line in capsys.readouterr().out.splitlines() if line.startswith("the retry pass stopped")]
    assert len(said) == 1 and "with 3 links not tried again" in said[0]
    run(links, tmp_path / "cache", tmp_path, timeout=(TIMEOUT_S, STALL_TIMEOUT_S), retry=ONE_TRY)
    assert len(manifest.read_text().splitlines()) == 6, "a rerun tries each again"
