"""Fetch outcomes: the status vocabulary, one record per URL, link helpers and the JSONL manifest."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
import threading
import time
import urllib.parse
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import pandas as pd
import urllib3

STATUSES = (
    "ok",
    "http_<code>",  # any non-2xx HTTP answer, e.g. http_404, http_503
    "timeout",
    "connection_error",
    "not_an_image",  # not identifiable as an image (HTML error page, text, ...)
    "corrupt",  # an image format, but truncated or undecodable data
    "too_large",  # over max_bytes, or over max_pixels by the header
    "placeholder",  # a side under decode.PLACEHOLDER_SIDE_PX: a CDN's stand-in for a missing image (a 1x1 GIF)
    "empty",
    "missing_file",
    "missing_link",
    "malformed_link",  # an http(s) link without a host or that does not parse (http://, a space in the host): not sent
    "unsupported_scheme",  # not http(s) nor a local path (ftp:, data:, ...), or redirected to such a link
    "outside_data_dir",  # a local link (path or file: URL) resolving outside the CSV's folder and allowed_dirs
    "not_fetched",  # not tried: no manifest line (cached_images), or the fetch stopped (network down, host refusing)
)


HTTP_STATUS_PREFIX = "http_"


NOT_FETCHED = "not_fetched"


OUTSIDE_DATA_DIR = "outside_data_dir"


RETRYABLE_HTTP_CODES = frozenset({408, 425, 429, *range(500, 600)})


RETRYABLE_STATUSES = frozenset({"timeout", "connection_error"})


MANIFEST_NAME = "fetch_manifest.jsonl"


MANIFEST_FLUSH_EVERY = 500


MANIFEST_FLUSH_S = 5.0


ERROR_CHARS = 300


CACHE_SUFFIXES = frozenset({".jpg", ".jpeg", ".png", ".gif", ".webp"})


REMOTE_SCHEMES = frozenset({"http", "https"})


LOCAL_SCHEMES = frozenset({"file"})


SCHEME_PATTERN = re.compile(r"^([A-Za-z][A-Za-z0-9+.\-]+):")  # two letters or more: C:\ is a drive


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


def link_host(url: str) -> str:
    """The host[:port] a URL's requests go to, in lower case ('' for a URL too malformed to tell)."""
    try:
        return urllib.parse.urlsplit(url).netloc.lower()
    except ValueError:  # e.g. http://[::1
        return ""


def malformed_url(url: str) -> str:
    """Why an http(s) URL cannot be requested at all (no host, a host or port that does not parse); '' when it can."""
    try:
        host = urllib3.util.parse_url(url).host
    except urllib3.exceptions.LocationParseError as err:
        return describe(err)
    return "" if host else "no host in the link"


def utf8_location(location: str) -> str:
    """A redirect's Location as sent: http.client decodes header bytes as latin-1, while servers send a non-ASCII
    path in UTF-8 (requests and browsers read it so: café.jpg, not cafÃ©.jpg, which would be a 404)."""
    try:
        return location.encode("latin-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return location


def cache_name(url: str) -> str:
    """File name of a downloaded URL in the cache: its sha1 plus the URL's extension."""
    suffix = os.path.splitext(url.split("?", 1)[0].split("#", 1)[0].rsplit("/", 1)[-1])[1].lower()
    return hashlib.sha1(url.encode()).hexdigest() + (suffix if suffix in CACHE_SUFFIXES else ".img")


def is_retryable(status: str) -> bool:
    """Whether a failure may go away by itself (429, 5xx, timeouts, dropped connections)."""
    if status.startswith(HTTP_STATUS_PREFIX):
        return int(status[len(HTTP_STATUS_PREFIX):]) in RETRYABLE_HTTP_CODES
    return status in RETRYABLE_STATUSES


def is_passing(status: str) -> bool:
    """Whether a link may still get its image on a rerun: a retryable failure, or not tried (not_fetched: the fetch
    stopped, its network down or its host refusing)."""
    return status == NOT_FETCHED or is_retryable(status)


def summarize(table: pd.DataFrame) -> pd.DataFrame:
    """Counts and shares per status of a `fetch_images` table, most frequent first."""
    counts = table["status"].value_counts()
    return pd.DataFrame({"status": counts.index, "count": counts.to_numpy(),
                         "share": (counts / max(len(table), 1)).round(4).to_numpy()})


def describe(err: BaseException) -> str:
    """An exception as a short manifest-friendly error text."""
    return f"{type(err).__name__}: {err}"[:ERROR_CHARS]


_manifest_lock = threading.Lock()


_manifest_memo: dict[str, tuple[tuple[int, int], int, dict[str, FetchRecord]]] = {}  # file id, bytes parsed


def read_manifest(path: Path) -> dict[str, FetchRecord]:
    """The last record per URL; lines cut short by a killed run are skipped.

    Memoized per file: a later call (the next shard of a split) parses only the bytes appended since. A file
    found missing (deleted) is forgotten, so a new one at its path is read whole even when it takes the old one's
    inode (ext4 reuses them at once) and has grown past the bytes read of the old one.
    """
    try:
        stat = path.stat()
    except FileNotFoundError:
        _forget(path)
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


def _forget(path: Path) -> None:
    """Drop what `read_manifest` memoized of the file at `path` (it is gone, or a new one is being started)."""
    with _manifest_lock:
        _manifest_memo.pop(str(path.resolve()), None)


class ManifestWriter:
    """Appends records as JSON lines, flushed every MANIFEST_FLUSH_EVERY lines or MANIFEST_FLUSH_S seconds."""

    def __init__(self, path: Path):
        if not path.is_file():  # a new manifest: nothing memoized of an earlier file at this path applies
            _forget(path)
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
