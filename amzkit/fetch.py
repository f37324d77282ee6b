"""Image links to local files: local paths resolved, remote URLs downloaded once into a verified cache.

Remote URLs are deduplicated and fetched by a thread pool (one keep-alive urllib3 connection pool per thread)
with connect/read timeouts, retries with exponential backoff on 429/5xx/connection errors and a final
low-concurrency pass for what still fails. Every body is verified by decoding it; images larger than
`max_side` are stored resized (JPEG), smaller ones as their original bytes. Cache files are named by
the URL's sha1 and written atomically; a JSONL manifest in the cache folder records each URL's outcome,
so a rerun neither refetches what succeeded nor retries permanent failures.

Failures are a status per link with path None (never a placeholder picture); the vocabulary is
`STATUSES`. Nothing raised for a bad URL or body escapes `fetch_images`. `cached_images` gives the same table
offline, from the manifest and local files' headers (what later stages read; it never downloads).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import heapq
import io
import itertools
import json
import os
import queue
import random
import re
import threading
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import IO, Any

import numpy as np
import pandas as pd
import urllib3
from PIL import Image, ImageFile, UnidentifiedImageError
from tqdm.auto import tqdm

from amzkit.io import atomic_path

STATUSES = (
    "ok",
    "http_<code>",  # any non-2xx HTTP answer, e.g. http_404, http_503
    "timeout",
    "connection_error",
    "not_an_image",  # not identifiable as an image (HTML error page, text, ...)
    "corrupt",  # an image format, but truncated or undecodable data
    "too_large",  # over max_bytes, or over max_pixels by the header
    "empty",
    "missing_file",
    "missing_link",
    "unsupported_scheme",
    "not_fetched",  # cached_images only: a URL the manifest does not know (01_extract never fetched it)
)
HTTP_STATUS_PREFIX = "http_"
RETRYABLE_HTTP_CODES = frozenset({408, 425, 429, *range(500, 600)})
RETRYABLE_STATUSES = frozenset({"timeout", "connection_error"})

CONNECT_TIMEOUT_S = 5.0
READ_TIMEOUT_S = 15.0
MAX_WORKERS = 64
MAX_BYTES = 20_000_000
MAX_PIXELS = 8192 * 8192
MAX_SIDE_PX = 512
JPEG_QUALITY = 90
CHUNK_BYTES = 256 * 1024
VERIFY_DRAFT_PX = 64  # JPEGs are verified at reduced DCT scale: every byte is still decoded
MANIFEST_NAME = "fetch_manifest.jsonl"
MANIFEST_FLUSH_EVERY = 500
MANIFEST_FLUSH_S = 5.0
PROGRESS_POSTFIX_S = 0.5
STALE_TEMP_S = 300.0
ERROR_CHARS = 300
USER_AGENT = "amzkit/0.1 (+image fetch for a Kaggle competition)"
CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # read as requests does
MAX_REDIRECTS = 5
REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})
SMALL_BODY_BYTES = 64 * 1024  # an error page this small is read, so its keep-alive connection is reused
CACHE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})
REMOTE_SCHEMES = frozenset({"http", "https"})
LOCAL_SCHEMES = frozenset({"file"})
SCHEME_PATTERN = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")  # two letters or more: C:\ is a drive
MARKUP_PREFIXES = (b"<", b"{", b"[")
ALPHA_MODES = frozenset({"RGBA", "LA", "PA", "RGBa", "La"})
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N"})
DECODE_ERRORS = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError, ZeroDivisionError,
                 MemoryError)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how patiently a retryable failure (429, 5xx, timeout, connection error) is retried."""

    attempts: int = 4  # per URL in the main pass, the first try included
    backoff_s: float = 0.25  # wait after the first failure; doubles each retry, plus up to as much jitter
    backoff_cap_s: float = 8.0
    retry_after_cap_s: float = 30.0  # a server's Retry-After is honoured up to this
    final_pass_workers: int = 4  # then what still fails is tried again, gently
    final_pass_attempts: int = 2
    final_pass_timeout_factor: float = 2.0

    def delay(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait after the `failures`-th failure of one URL."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        base = min(self.backoff_s * 2 ** (failures - 1), self.backoff_cap_s)
        return base + random.uniform(0, base)


DEFAULT_RETRY = RetryPolicy()


@dataclass(slots=True)
class FetchRecord:
    """One URL's outcome: a manifest line (original width/height/mode and downloaded bytes).

    `mode` is the original Pillow mode (RGB, RGBA, L, P, CMYK, ...); manifests written before it existed
    load with None.
    """

    url: str
    status: str
    bytes: int = 0
    width: int | None = None
    height: int | None = None
    attempts: int = 0
    error: str = ""
    mode: str | None = None

    def as_row(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in MANIFEST_FIELDS}


MANIFEST_FIELDS = tuple(field.name for field in dataclasses.fields(FetchRecord))
TABLE_COLUMNS = ("link", "path", "status", "width", "height", "mode", "bytes", "attempts", "error")


def is_remote(link: str) -> bool:
    """Whether a link is fetched over HTTP(S) (any case of the scheme)."""
    return link_scheme(link) in REMOTE_SCHEMES


def link_scheme(link: str) -> str:
    """The URL scheme in lower case; '' for a plain (relative or absolute) path."""
    match = SCHEME_PATTERN.match(link)
    return match.group(1).lower() if match else ""


def cache_name(url: str) -> str:
    """File name of a downloaded URL in the cache: its sha1 plus the URL's extension."""
    suffix = os.path.splitext(url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1])[1].lower()
    return hashlib.sha1(url.encode()).hexdigest() + (suffix if suffix in CACHE_SUFFIXES else ".img")


def is_retryable(status: str) -> bool:
    """Whether a failure may go away by itself (429, 5xx, timeouts, dropped connections)."""
    if status.startswith(HTTP_STATUS_PREFIX):
        return int(status[len(HTTP_STATUS_PREFIX):]) in RETRYABLE_HTTP_CODES
    return status in RETRYABLE_STATUSES


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Counts and shares per status of a `fetch_images` table, most frequent first."""
    counts = table["status"].value_counts()
    return pd.DataFrame({"status": counts.index, "count": counts.to_numpy(),
                         "share": (counts / max(len(table), 1)).round(4).to_numpy()})


# ---------------------------------------------------------------- decoding


def to_rgb(img: Image.Image) -> Image.Image:
    """RGB view of any Pillow mode: alpha composited on white, 16-bit scaled (not clipped) to 8-bit."""
    if img.mode == "RGB" and "transparency" not in img.info:
        return img
    if img.mode in SIXTEEN_BIT_MODES or img.mode in ("I", "F"):
        return Image.fromarray(_to_uint8(np.asarray(img), img.mode)).convert("RGB")
    if img.mode in ALPHA_MODES or "transparency" in img.info:
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return img.convert("RGB")


def _to_uint8(values: np.ndarray, mode: str) -> np.ndarray:
    if mode in SIXTEEN_BIT_MODES:
        return (values.astype(np.uint32) >> 8).astype(np.uint8)
    values = values.astype(np.float32)
    peak = float(values.max()) if values.size else 0.0
    scale = 255.0 if (mode == "F" and peak <= 1.0) else (255.0 / 65535.0 if peak > 255 else 1.0)
    return np.clip(values * scale, 0, 255).astype(np.uint8)


def open_image(path: str | None, draft_px: int | None = None) -> tuple[Image.Image | None, str]:
    """Open an image as RGB; returns (image, 'ok') or (None, status). JPEGs decode in draft mode.

    With `draft_px`, a JPEG is decoded at the smallest DCT scale that keeps both sides >= draft_px.
    """
    if path is None:
        return None, "missing_file"
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                return None, "too_large"
            if draft_px and img.format == "JPEG":
                img.draft("RGB", (draft_px, draft_px))
            img.load()
            return to_rgb(img), "ok"
    except FileNotFoundError:
        return None, "missing_file"
    except Image.DecompressionBombError:
        return None, "too_large"
    except UnidentifiedImageError:
        return None, "not_an_image"
    except DECODE_ERRORS:
        return None, "corrupt"


@dataclass
class Prepared:
    """A verified body: the bytes to store (original or resized JPEG) and the original size and mode."""

    status: str
    data: bytes = b""
    width: int | None = None
    height: int | None = None
    error: str = ""
    mode: str | None = None


def prepare_image(body: bytes, max_side: int = MAX_SIDE_PX, max_pixels: int = MAX_PIXELS) -> Prepared:
    """Verify `body` decodes; resize it to <= max_side (longest side) when larger. Never raises."""
    if not body:
        return Prepared("empty")
    try:
        with Image.open(io.BytesIO(body)) as img:
            (width, height), mode = img.size, img.mode  # before draft(), which may change the mode
            if width * height > max_pixels:
                return Prepared("too_large", width=width, height=height, error=f"{width}x{height} pixels",
                                mode=mode)
            if min(width, height) < 1:
                return Prepared("corrupt", error=f"size {width}x{height}")
            scale = max_side / max(width, height)
            target = (max(1, round(width * scale)), max(1, round(height * scale))) if scale < 1 else None
            if img.format == "JPEG":
                img.draft("RGB", target or (VERIFY_DRAFT_PX, VERIFY_DRAFT_PX))
            img.load()
            if target is None:
                return Prepared("ok", body, width, height, mode=mode)
            small = to_rgb(img).resize(target, Image.Resampling.LANCZOS, reducing_gap=3.0)
            out = io.BytesIO()
            small.save(out, format="JPEG", quality=JPEG_QUALITY)
            return Prepared("ok", out.getvalue(), width, height, mode=mode)
    except Image.DecompressionBombError as err:
        return Prepared("too_large", error=str(err))
    except UnidentifiedImageError:
        head = body[:256].lstrip().lower()
        kind = "markup/text" if head.startswith(MARKUP_PREFIXES) else "unknown format"
        return Prepared("not_an_image", error=f"{kind}: {body[:40]!r}")
    except Exception as err:  # whatever the decoder raises, the body is bad
        return Prepared("corrupt", error=describe(err))


_strict_lock = threading.Lock()
_strict_users = 0
_strict_saved = False


@contextlib.contextmanager
def strict_truncation() -> Iterator[None]:
    """Temporarily make Pillow refuse truncated images (ImageFile.LOAD_TRUNCATED_IMAGES = False).

    Reference-counted so concurrent fetches nest; the caller's setting is restored when the last exits.
    """
    global _strict_users, _strict_saved
    with _strict_lock:
        if _strict_users == 0:
            _strict_saved = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
        _strict_users += 1
    try:
        yield
    finally:
        with _strict_lock:
            _strict_users -= 1
            if _strict_users == 0:
                ImageFile.LOAD_TRUNCATED_IMAGES = _strict_saved


# ---------------------------------------------------------------- downloading


@dataclass
class Response:
    """What one HTTP attempt gave: a body, or a failure status (with Retry-After when the server sent one)."""

    status: str
    body: bytes = b""
    retry_after: float | None = None
    error: str = ""


def parse_retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date); None when absent or unreadable."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        return parsedate_to_datetime(value).timestamp() - time.time()
    except (TypeError, ValueError, IndexError):
        return None


EXCEPTION_STATUSES: tuple[tuple[type[BaseException], str], ...] = (  # first match wins
    (urllib3.exceptions.NewConnectionError, "connection_error"),  # refused, no route, DNS (a ConnectTimeoutError)
    (urllib3.exceptions.TimeoutError, "timeout"),  # connect and read timeouts
    (TimeoutError, "timeout"),
    (urllib3.exceptions.DecodeError, "corrupt"),  # a Content-Encoding that does not decode
)


def describe(err: BaseException) -> str:
    """An exception as a short manifest-friendly error text."""
    return f"{type(err).__name__}: {err}"[:ERROR_CHARS]


def exception_status(err: BaseException) -> str:
    """Status of a download exception (dropped connections, bad URLs, TLS errors: connection_error)."""
    return next((status for kind, status in EXCEPTION_STATUSES if isinstance(err, kind)), "connection_error")


def ca_bundle() -> str | None:
    """CA file: $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, else certifi's (as requests), else the system's (None)."""
    configured = next((os.environ[key] for key in CA_BUNDLE_VARIABLES if os.environ.get(key)), None)
    if configured:
        return configured
    try:
        import certifi
    except ImportError:
        return None
    return certifi.where()


def finish(response: urllib3.BaseHTTPResponse) -> None:
    """Done with a response whose body is not wanted: keep its connection if the rest is small."""
    declared = response.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) <= SMALL_BODY_BYTES:
        response.drain_conn()
        response.release_conn()
    else:
        response.close()


class Downloader:
    """Fetches URLs into the cache with one keep-alive connection pool per thread. Its methods never raise.

    Plain urllib3 rather than requests: requests' per-request bookkeeping (cookies, hooks, environment
    merging) costs about 0.4 ms of GIL-held CPU per image, a quarter of the throughput on two cores.
    Proxies from the environment (http_proxy, https_proxy, no_proxy) are honoured as requests would.
    """

    def __init__(self, cache_dir: Path, timeout: tuple[float, float], max_bytes: int, max_side: int,
                 max_pixels: int, retry: RetryPolicy, pool_size: int):
        self.cache_dir, self.timeout, self.max_bytes = cache_dir, timeout, max_bytes
        self.max_side, self.max_pixels, self.retry, self.pool_size = max_side, max_pixels, retry, pool_size
        self.proxies = {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme in REMOTE_SCHEMES}
        self.ca_certs = ca_bundle()
        self._local = threading.local()
        self._managers: list[urllib3.PoolManager] = []
        self._managers_lock = threading.Lock()

    def manager(self, url: str) -> urllib3.PoolManager:
        """This thread's connection pool for `url` (a proxy's when the environment sets one for it)."""
        proxy = self.proxies.get(link_scheme(url)) if self.proxies else None
        if proxy and urllib.request.proxy_bypass(urllib.parse.urlsplit(url).hostname or ""):
            proxy = None
        managers: dict[str | None, urllib3.PoolManager] | None = getattr(self._local, "managers", None)
        if managers is None:
            managers = self._local.managers = {}
        if proxy not in managers:
            options = {"num_pools": self.pool_size, "maxsize": self.pool_size, "retries": False,
                       "headers": {"User-Agent": USER_AGENT}, "ca_certs": self.ca_certs}
            managers[proxy] = urllib3.ProxyManager(proxy, **options) if proxy else urllib3.PoolManager(**options)
            with self._managers_lock:
                self._managers.append(managers[proxy])
        return managers[proxy]

    def close(self) -> None:
        with self._managers_lock:
            for manager in self._managers:
                manager.clear()
            self._managers.clear()

    def get(self, url: str, timeout: tuple[float, float]) -> Response:
        """One GET, following redirects: the body, or why not (reading stops past max_bytes)."""
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = self.manager(url).request(
                    "GET", url, preload_content=False, redirect=False, retries=False,
                    timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
                location = response.headers.get("Location") if response.status in REDIRECT_CODES else None
                if not location:
                    return self.read(response)
                finish(response)
                url = urllib.parse.urljoin(url, location)
                if link_scheme(url) not in REMOTE_SCHEMES:
                    return Response("unsupported_scheme", error=f"redirected to {url[:200]}")
            return Response(f"{HTTP_STATUS_PREFIX}{response.status}", error=f"over {MAX_REDIRECTS} redirects")
        except Exception as err:  # any failure of one URL is its status, never the run's
            return Response(exception_status(err), error=describe(err))

    def read(self, response: urllib3.BaseHTTPResponse) -> Response:
        """The body of a final answer: Content-Length checked first, reading stops past max_bytes."""
        if not 200 <= response.status < 300:
            finish(response)
            return Response(f"{HTTP_STATUS_PREFIX}{response.status}", error=response.reason or "",
                            retry_after=parse_retry_after(response.headers.get("Retry-After")))
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            return Response("too_large", error=f"Content-Length {declared}")
        if declared.isdigit():
            body = response.read()
        else:
            chunks, size = [], 0
            while chunk := response.read(CHUNK_BYTES):
                size += len(chunk)
                if size > self.max_bytes:
                    response.close()
                    return Response("too_large", error=f"over {self.max_bytes} bytes")
                chunks.append(chunk)
            body = b"".join(chunks)
        response.release_conn()
        return Response("ok", body)

    def attempt(self, url: str, attempts: int, timeout_factor: float = 1.0) -> tuple[FetchRecord, float | None]:
        """One try at `url` (its `attempts`-th in all): its record and the server's Retry-After, if any.

        On a URL's first try, a cache file no manifest line vouches for is verified and reused when good.
        """
        try:
            target = self.cache_dir / cache_name(url)
            if attempts == 1 and target.is_file():
                record = self.store(url, target.read_bytes(), target, 0, cached=True)
                if record.status == "ok":
                    return record, None
            timeout = (self.timeout[0] * timeout_factor, self.timeout[1] * timeout_factor)
            response = self.get(url, timeout)
            if response.status == "ok":
                return self.store(url, response.body, target, attempts), None
            return FetchRecord(url, response.status, attempts=attempts, error=response.error), response.retry_after
        except Exception as err:  # a disk failure (or a bug) on one URL must not end the run
            return FetchRecord(url, "connection_error", attempts=attempts, error=describe(err)), None

    def store(self, url: str, body: bytes, target: Path, attempts: int, cached: bool = False) -> FetchRecord:
        """Verify (and maybe shrink) a body; write it atomically when it is a good image not yet stored."""
        prepared = prepare_image(body, self.max_side, self.max_pixels)
        if prepared.status != "ok":
            if cached:
                target.unlink(missing_ok=True)
            return FetchRecord(url, prepared.status, len(body), prepared.width, prepared.height, attempts,
                               prepared.error, prepared.mode)
        if not (cached and prepared.data is body):
            with atomic_path(target) as tmp:
                tmp.write_bytes(prepared.data)
        return FetchRecord(url, "ok", len(body), prepared.width, prepared.height, attempts, mode=prepared.mode)


class WorkQueue:
    """Tries for the fetch threads: fresh URLs, and failed ones that come due after their backoff.

    A due retry is served before fresh URLs, so backoffs overlap the rest of the work instead of
    piling up at the end; a scheduler thread releases retries when due, so no fetch thread sleeps.
    """

    STOP, DUE, FRESH = -1, 0, 1  # priorities: lower is served first

    def __init__(self) -> None:
        self._ready: queue.PriorityQueue = queue.PriorityQueue()
        self._delayed: list[tuple[float, int, Any]] = []
        self._wake = threading.Condition()
        self._sequence = itertools.count()
        self._closed = False
        threading.Thread(target=self._release_due, daemon=True, name="amzkit-fetch-scheduler").start()

    def put(self, task: Any, priority: int = FRESH) -> None:
        self._ready.put((priority, next(self._sequence), task))

    def put_later(self, task: Any, delay_s: float) -> None:
        with self._wake:
            heapq.heappush(self._delayed, (time.monotonic() + delay_s, next(self._sequence), task))
            self._wake.notify()

    def get(self) -> Any:
        """The next task; None means stop."""
        return self._ready.get()[2]

    def close(self, workers: int) -> None:
        """Stop `workers` threads: idle ones now, busy ones after their current try."""
        with self._wake:
            self._closed = True
            self._wake.notify()
        for _ in range(workers):
            self.put(None, self.STOP)

    def _release_due(self) -> None:
        with self._wake:
            while not self._closed:
                now = time.monotonic()
                while self._delayed and self._delayed[0][0] <= now:
                    self.put(heapq.heappop(self._delayed)[2], self.DUE)
                self._wake.wait(self._delayed[0][0] - now if self._delayed else None)


def run_attempts(downloader: Downloader, urls: list[str], workers: int, attempts: int, timeout_factor: float,
                 earlier: dict[str, int]) -> Iterator[FetchRecord]:
    """Each URL's final record after up to `attempts` tries, in completion order, from `workers` threads.

    A retryable failure is tried again after its backoff (or the server's Retry-After, capped).
    Stopping the iteration early cancels what is left.
    """
    if not urls:
        return
    work = WorkQueue()
    for url in urls:
        work.put((url, 1))
    results: queue.SimpleQueue = queue.SimpleQueue()

    def fetch_loop() -> None:
        while (task := work.get()) is not None:
            url, number = task
            try:
                record, retry_after = downloader.attempt(url, earlier.get(url, 0) + number, timeout_factor)
                if number < attempts and is_retryable(record.status):
                    work.put_later((url, number + 1), downloader.retry.delay(number, retry_after))
                else:
                    results.put(record)
            except BaseException as err:  # handed to the caller's thread, raised there
                results.put(err)

    workers = max(1, min(workers, len(urls)))
    for i in range(workers):
        threading.Thread(target=fetch_loop, daemon=True, name=f"amzkit-fetch-{i}").start()
    try:
        for _ in urls:
            if isinstance(result := results.get(), BaseException):
                raise result
            yield result
    finally:
        work.close(workers)


# ---------------------------------------------------------------- manifest


_manifest_lock = threading.Lock()
_manifest_memo: dict[str, tuple[tuple[int, int], int, dict[str, FetchRecord]]] = {}  # file id, bytes parsed


def read_manifest(path: Path) -> dict[str, FetchRecord]:
    """The last record per URL; lines cut short by a killed run are skipped.

    Memoized per file: a later call (the next shard of a split) parses only the bytes appended since.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        return {}
    key, file_id = str(path.resolve()), (stat.st_dev, stat.st_ino)
    with _manifest_lock:
        seen_id, offset, records = _manifest_memo.get(key, (file_id, 0, {}))
        if seen_id != file_id or stat.st_size < offset:  # replaced or truncated: start over
            offset, records = 0, {}
        with open(path, "rb") as fh:
            fh.seek(offset)
            data = fh.read()
        complete = data.rfind(b"\n") + 1  # a line still being written is parsed next time
        for line in data[:complete].splitlines():
            try:
                row = json.loads(line)
                records[row["url"]] = FetchRecord(**{k: row[k] for k in MANIFEST_FIELDS if k in row})
            except (ValueError, KeyError, TypeError):
                continue
        _manifest_memo[key] = (file_id, offset + complete, records)
        return dict(records)


class ManifestWriter:
    """Appends records as JSON lines, flushed every MANIFEST_FLUSH_EVERY lines or MANIFEST_FLUSH_S seconds."""

    def __init__(self, path: Path):
        needs_newline = path.is_file() and path.stat().st_size > 0 and _last_byte(path) != b"\n"
        self._fh: IO[str] = open(path, "a", encoding="utf-8")  # closed by close()
        if needs_newline:  # a killed run's half line stays alone on its line
            self._fh.write("\n")
        self._pending, self._flushed_at = 0, time.monotonic()

    def write(self, record: FetchRecord) -> None:
        self._fh.write(json.dumps(record.as_row(), ensure_ascii=False) + "\n")
        self._pending += 1
        if self._pending >= MANIFEST_FLUSH_EVERY or time.monotonic() - self._flushed_at > MANIFEST_FLUSH_S:
            self.flush()

    def flush(self) -> None:
        self._fh.flush()
        self._pending, self._flushed_at = 0, time.monotonic()

    def close(self) -> None:
        self._fh.close()


def _last_byte(path: Path) -> bytes:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1)


def remove_stale_temps(cache_dir: Path, older_than_s: float = STALE_TEMP_S) -> int:
    """Delete temp files a killed run left in the cache (never trusted: only complete files get real names)."""
    removed, now = 0, time.time()
    with os.scandir(cache_dir) as entries:
        for entry in entries:
            if entry.name.startswith(".") and entry.name.endswith(".tmp") and entry.is_file():
                with contextlib.suppress(OSError):
                    if now - entry.stat().st_mtime > older_than_s:
                        os.unlink(entry.path)
                        removed += 1
    return removed


# ---------------------------------------------------------------- the public entry point


def resolve_local(link: str, base_dir: Path) -> tuple[str | None, str]:
    """(path, status) of a local link: a plain path (relative to base_dir) or a file: URL."""
    if link_scheme(link) in LOCAL_SCHEMES:
        link = urllib.request.url2pathname(urllib.parse.urlsplit(link).path)
    path = Path(link)
    path = path if path.is_absolute() else base_dir / path
    try:
        size = path.stat().st_size if path.is_file() else None
    except OSError:
        size = None
    if size is None:
        return None, "missing_file"
    return (str(path), "ok") if size > 0 else (None, "empty")


def fetch_images(
    links: pd.Series,
    base_dir: str | Path,
    cache_dir: str | Path,
    max_workers: int = MAX_WORKERS,
    timeout: float | tuple[float, float] = (CONNECT_TIMEOUT_S, READ_TIMEOUT_S),
    max_bytes: int = MAX_BYTES,
    *,
    max_side: int = MAX_SIDE_PX,
    max_pixels: int = MAX_PIXELS,
    retry: RetryPolicy = DEFAULT_RETRY,
    retry_failed: bool = False,
    progress: bool = True,
) -> pd.DataFrame:
    """Resolve each link to a local file. Returns one row per input row, same index and order.

    Columns: link, path (None on failure), status (see STATUSES), width/height/mode (original pixels and
    Pillow mode; URLs only), bytes (downloaded), attempts, error. Relative links resolve against `base_dir`
    (the CSV's folder); URLs are fetched once each into `cache_dir`. A rerun reads the manifest there: ok URLs
    are not fetched again, and permanent failures (404, not_an_image, ...) are retried only with `retry_failed`.
    `timeout` is (connect, read) seconds, or one number for both.
    """
    base_dir, cache_dir = Path(base_dir), Path(cache_dir)
    links = _clean_links(links)
    resolved, remote = _resolve_offline(links, base_dir)
    if remote:
        resolved.update(_fetch_remote(remote, cache_dir, max_workers, timeout, max_bytes, max_side, max_pixels,
                                      retry, retry_failed, progress))
    return _link_table(links, resolved)


def cached_images(links: pd.Series, base_dir: str | Path, cache_dir: str | Path,
                  max_workers: int = 8) -> pd.DataFrame:
    """`fetch_images`' table from what is already on disk, without any network access.

    URLs are looked up in `cache_dir`'s manifest: status not_fetched when it has no line for one, missing_file
    when its ok line's cache file is gone. Local links resolve against `base_dir` and, unlike in
    `fetch_images`, get width/height/mode from the file's header (a header that does not decode gives its
    status) and bytes from its size. An ok URL whose manifest line predates the mode field gets the mode of
    its cached file (the original's when it was stored unresized, RGB after a resize).
    """
    base_dir, cache_dir = Path(base_dir), Path(cache_dir)
    links = _clean_links(links)
    resolved, remote = _resolve_offline(links, base_dir)
    headers = {link: path for link, (path, _) in resolved.items() if path is not None}  # local files
    known = read_manifest(cache_dir / MANIFEST_NAME) if remote else {}
    for link in remote:
        if link not in known:
            resolved[link] = (None, FetchRecord(link, "not_fetched", error=f"no line in {cache_dir / MANIFEST_NAME}"))
            continue
        record = dataclasses.replace(known[link])  # the manifest's records are shared: never edit them
        path = str(cache_dir / cache_name(link)) if record.status == "ok" else None
        if path is not None and not os.path.isfile(path):
            path, record.status, record.error = None, "missing_file", f"cache file {path} is gone"
        elif path is not None and record.mode is None:  # a line written before the mode field
            headers[link] = path
        resolved[link] = (path, record)
    if headers:
        with ThreadPoolExecutor(max(1, max_workers)) as pool:
            read = dict(zip(headers, pool.map(read_header, headers.values()), strict=True))
        for link, (status, width, height, mode) in read.items():
            path, record = resolved[link]
            if link in known:  # only the missing mode is filled in; the rest is the original's
                record.mode = mode if status == "ok" else None
                continue
            record.width, record.height, record.mode, record.bytes = width, height, mode, _file_size(path)
            if status != "ok":
                record.status, record.error = status, f"the header of {path} does not decode"
                resolved[link] = (None, record)
    return _link_table(links, resolved)


def read_header(path: str) -> tuple[str, int | None, int | None, str | None]:
    """(status, width, height, mode) from an image file's header alone (no pixels decoded). Never raises."""
    try:
        with Image.open(path) as img:
            (width, height), mode = img.size, img.mode
    except FileNotFoundError:
        return "missing_file", None, None, None
    except Image.DecompressionBombError:
        return "too_large", None, None, None
    except UnidentifiedImageError:
        return "not_an_image", None, None, None
    except DECODE_ERRORS:
        return "corrupt", None, None, None
    if width * height > MAX_PIXELS:
        return "too_large", width, height, mode
    return ("ok" if min(width, height) >= 1 else "corrupt"), width, height, mode


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _clean_links(links: pd.Series) -> pd.Series:
    return links.fillna("").astype(str).str.strip()


def _resolve_offline(links: pd.Series, base_dir: Path) -> tuple[dict[str, tuple[str | None, FetchRecord]],
                                                                   list[str]]:
    """(path, record) of each distinct link that needs no network, and the remote URLs left over."""
    resolved: dict[str, tuple[str | None, FetchRecord]] = {}
    remote: list[str] = []
    for link in pd.unique(links):
        scheme = link_scheme(link)
        if not link:
            resolved[link] = (None, FetchRecord(link, "missing_link"))
        elif scheme in REMOTE_SCHEMES:
            remote.append(link)
        elif scheme and scheme not in LOCAL_SCHEMES:
            resolved[link] = (None, FetchRecord(link, "unsupported_scheme", error=f"scheme {scheme!r}"))
        else:
            path, status = resolve_local(link, base_dir)
            resolved[link] = (path, FetchRecord(link, status))
    return resolved, remote


def _link_table(links: pd.Series, resolved: dict[str, tuple[str | None, FetchRecord]]) -> pd.DataFrame:
    """One row per input row (same index and order) from the per-link outcomes."""
    per_link = pd.DataFrame(
        [(path, *(getattr(record, column) for column in TABLE_COLUMNS[2:])) for path, record in resolved.values()],
        index=pd.Index(list(resolved), dtype=object), columns=list(TABLE_COLUMNS[1:]),
    ).astype({"width": "Int64", "height": "Int64", "bytes": "int64", "attempts": "int64"})
    table = per_link.reindex(links.to_numpy()).set_axis(links.index)
    table.insert(0, "link", links.to_numpy())
    table["path"] = table["path"].astype(object).where(table["path"].notna(), None)
    return table


def _fetch_remote(urls: list[str], cache_dir: Path, max_workers: int, timeout: float | tuple[float, float],
                  max_bytes: int, max_side: int, max_pixels: int, retry: RetryPolicy, retry_failed: bool,
                  progress: bool) -> dict[str, tuple[str | None, FetchRecord]]:
    """Fetch what the manifest does not vouch for: a main pass, then a gentle pass over retryable failures."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(cache_dir)
    known = read_manifest(cache_dir / MANIFEST_NAME)
    results = {url: known[url] for url in urls if url in known and _still_valid(known[url], cache_dir, retry_failed)}
    todo = [url for url in urls if url not in results]
    timeouts = (float(timeout), float(timeout)) if isinstance(timeout, int | float) else tuple(timeout)
    downloader = Downloader(cache_dir, timeouts, max_bytes, max_side, max_pixels, retry, pool_size=2)
    writer = ManifestWriter(cache_dir / MANIFEST_NAME)
    try:
        with strict_truncation():
            fetched = _run_pass(downloader, todo, max_workers, retry.attempts, 1.0, "download", progress, writer)
            results.update(fetched)
            again = [url for url, record in fetched.items() if is_retryable(record.status)]
            if again and retry.final_pass_attempts > 0:
                results.update(_run_pass(downloader, again, retry.final_pass_workers, retry.final_pass_attempts,
                                         retry.final_pass_timeout_factor, "retry", progress, writer, results))
    finally:
        writer.close()
        downloader.close()
    return {url: ((str(cache_dir / cache_name(url)) if results[url].status == "ok" else None), results[url])
            for url in urls}


def _still_valid(record: FetchRecord, cache_dir: Path, retry_failed: bool) -> bool:
    """Whether a manifest record stands: ok with its file present, or a permanent failure not to retry."""
    if record.status == "ok":
        return (cache_dir / cache_name(record.url)).is_file()
    return not (retry_failed or is_retryable(record.status))


def _run_pass(downloader: Downloader, urls: list[str], workers: int, attempts: int, timeout_factor: float,
              label: str, progress: bool, writer: ManifestWriter,
              earlier: dict[str, FetchRecord] | None = None) -> dict[str, FetchRecord]:
    """Fetch `urls` on `workers` threads, writing each record to the manifest as it completes."""
    done = {url: earlier[url].attempts for url in urls if url in earlier} if earlier else {}
    fetched: dict[str, FetchRecord] = {}
    counts: Counter[str] = Counter()
    bar = tqdm(total=len(urls), desc=label, unit="img", disable=not progress or not urls, smoothing=0.1)
    shown_at = 0.0
    try:
        for record in run_attempts(downloader, urls, workers, attempts, timeout_factor, done):
            fetched[record.url] = record
            writer.write(record)
            counts[record.status] += 1
            bar.update()
            if time.monotonic() - shown_at > PROGRESS_POSTFIX_S:
                bar.set_postfix(dict(counts.most_common()), refresh=False)
                shown_at = time.monotonic()
        bar.set_postfix(dict(counts.most_common()), refresh=False)
    finally:
        writer.flush()
        bar.close()
    return fetched
