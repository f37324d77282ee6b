"""Image links to local files: local paths resolved, remote URLs downloaded once into a verified cache.

Remote URLs are deduplicated and fetched by a thread pool (one keep-alive urllib3 connection pool per thread)
with connect/read timeouts, retries with exponential backoff on 429/5xx/connection errors and a final
low-concurrency pass for what still fails, within a time budget (`RetryPolicy.final_pass_time_share` of the
download's time, at least `final_pass_min_s`; what it does not reach keeps its failure). A host whose last
`RetryPolicy.host_stop_failures` requests over `host_stop_s` or more all failed for a passing reason (a rate limit
answering 429 to everything, the network gone mid-run) is sent nothing more by this fetch: its links not tried get
status not_fetched (no manifest line: a rerun fetches them), and the fetch says so once per host (one answering
that many failures sooner is sent nothing till `host_stop_s` after the first, then stopped by the next). With a
`HostStops` (01 passes one to each fetch of a run), later fetches send such a host `host_probe_tries` requests
first, and its other links only when one of them is answered. Every body is
verified by decoding it; images larger than `max_side` are stored resized (JPEG), smaller ones as their original
bytes. Cache files are named by the URL's sha1 and written atomically; a JSONL manifest in the cache folder records
each URL's outcome, so a rerun neither refetches what succeeded nor retries permanent failures.

Local links (plain paths, file: URLs) are read only inside the CSV's folder (`base_dir`) or `allowed_dirs`:
`../../etc/passwd`, `/etc/passwd` or `file:///etc/passwd` get status outside_data_dir and are never opened.
With a `NetworkWatch`, a fetch whose first links all fail to connect stops early (network down) and records
the links it did not try as not_fetched (no manifest line, so a later run tries them); links that failed in an
earlier run are no evidence of it, and an image fetched before that still answers proves the network up.

Failures are a status per link with path None (never a placeholder picture); the vocabulary is
`records.STATUSES`. Nothing raised for a bad URL or body escapes `fetch_images`. `cached_images` gives the same
table offline, from the manifest and local files' headers (what later stages read; it never downloads).
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
import stat
import time
import urllib.parse
import urllib.request
from collections import Counter
from collections.abc import Collection, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd

from amzkit.core.io import remove_stale_temporaries
from amzkit.core.progress import tqdm
from amzkit.images.attempts import run_attempts
from amzkit.images.decode import MAX_PIXELS, MAX_SIDE_PX, placeholder_note, read_header, strict_truncation
from amzkit.images.http import (
    CONNECT_TIMEOUT_S,
    DEFAULT_RETRY,
    MAX_BYTES,
    MAX_WORKERS,
    READ_TIMEOUT_S,
    Downloader,
    HostStop,
    HostStops,
    NetworkWatch,
    RetryPolicy,
)
from amzkit.images.records import (
    LOCAL_SCHEMES,
    MANIFEST_NAME,
    NOT_FETCHED,
    OUTSIDE_DATA_DIR,
    REMOTE_SCHEMES,
    TABLE_COLUMNS,
    FetchRecord,
    ManifestWriter,
    cache_name,
    describe,
    is_passing,
    is_retryable,
    link_host,
    link_scheme,
    malformed_url,
    read_manifest,
)

PROGRESS_POSTFIX_S = 0.5


def local_roots(base_dir: str | Path, allowed_dirs: Sequence[str | Path] = ()) -> list[str]:
    """The folders local image links may point into: the CSV's folder, then `allowed_dirs` (real paths)."""
    return [os.path.realpath(folder) for folder in (base_dir, *allowed_dirs)]


def resolve_local(link: str, roots: Sequence[str], real_dirs: dict[str, str] | None = None
                  ) -> tuple[str | None, str, str]:
    """(path, status, error) of a local link: a plain path (relative to roots[0], the CSV's folder) or a file: URL.

    The file must lie inside one of `roots` (see `local_roots`) once `..` and symbolic links are resolved;
    anywhere else it is refused (status outside_data_dir) without being opened. `real_dirs` memoizes the
    real path of each folder (many links share one).
    """
    if link_scheme(link) in LOCAL_SCHEMES:
        link = urllib.request.url2pathname(urllib.parse.urlsplit(link).path)
    path = os.path.join(roots[0], link)  # an absolute link stays as it is
    folder, name = os.path.split(path)
    try:
        if name in ("", ".", ".."):
            real = os.path.realpath(path)
        else:
            real_dirs = {} if real_dirs is None else real_dirs
            if folder not in real_dirs:
                real_dirs[folder] = os.path.realpath(folder)
            real = os.path.join(real_dirs[folder], name)
            if os.path.islink(real):
                real = os.path.realpath(real)
    except (OSError, ValueError) as err:  # a NUL byte in the link
        return None, "missing_file", describe(err)
    if not any(real == root or real.startswith(root.rstrip(os.sep) + os.sep) for root in roots):
        allowed = f" and allowed_dirs {list(roots[1:])}" if len(roots) > 1 else ""
        return None, OUTSIDE_DATA_DIR, (f"{real} is outside the data folder {roots[0]}{allowed}: local image links "
                                        "are read only there: move the image into it (library callers: or "
                                        "pass its folder in allowed_dirs)")
    try:
        info = os.stat(real)
    except (OSError, ValueError) as err:
        return None, "missing_file", describe(err)
    if not stat.S_ISREG(info.st_mode):
        return None, "missing_file", f"{real} is not a file"
    return (str(Path(path)), "ok", "") if info.st_size > 0 else (None, "empty", "")


def _local_file_sizes(links: Sequence[str], base_dir: str | Path) -> list[tuple[str, int]]:
    """(link, size) of each local link in `links` (stripped, as the fetch reads them), in order; 0 for a file
    missing, empty or outside the folder."""
    roots, real_dirs, sizes = local_roots(base_dir), {}, []
    for link in (str(link).strip() for link in links):
        if link and link_scheme(link) in LOCAL_SCHEMES | {""}:
            path, _, _ = resolve_local(link, roots, real_dirs)
            sizes.append((link, _file_size(path) if path is not None else 0))
    return sizes


def local_files_digest(links: Sequence[str], base_dir: str | Path) -> str | None:
    """sha256 of the size of each local image file `links` name (in the CSV's folder), so a file replaced or
    repaired under the same link is embedded again; None when no link is local. Sizes, not modification times:
    a dataset mounted again in another Kaggle session keeps its sizes, not always its times."""
    parts = [f"{link}\x01{size}" for link, size in _local_file_sizes(links, base_dir)]
    return hashlib.sha256("\x00".join(parts).encode("utf-8", "surrogatepass")).hexdigest() if parts else None


def local_sizes_match(links: Sequence[str], base_dir: str | Path, table: pd.DataFrame) -> bool:
    """Whether every local file `links` name still has the size `table` (a shard's fetch table: link, bytes)
    recorded when it was embedded (a missing or unreadable file counts 0)."""
    recorded = dict(zip(table["link"].fillna("").astype(str),
                        pd.to_numeric(table["bytes"], errors="coerce").fillna(0).astype(int), strict=True))
    return all(recorded.get(link, -1) == size for link, size in _local_file_sizes(links, base_dir))


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
    allowed_dirs: Sequence[str | Path] = (),
    watch: NetworkWatch | None = None,
    retry_passing: bool = True,
    host_stops: HostStops | None = None,
    tried: set[str] | None = None,
) -> pd.DataFrame:
    """Resolve each link to a local file. Returns one row per input row, same index and order.

    Columns: link, path (None on failure), status (see STATUSES), width/height/mode (original pixels and
    Pillow mode), bytes (downloaded, or the local file's size), attempts, error. Relative links resolve against
    `base_dir` (the CSV's folder) and are decoded to verify them, as downloads are; URLs are fetched once each
    into `cache_dir`. A rerun reads the manifest there: ok URLs are not fetched again, permanent failures (404,
    not_an_image, ...) are retried only with `retry_failed`, and passing ones (429, 5xx, timeout, connection)
    unless `retry_passing` is False (a caller that has just tried).
    `timeout` is (connect, read) seconds, or one number for both. Local links must lie inside `base_dir` or
    `allowed_dirs`. With a `watch`, a network found down stops the fetch early (see NetworkWatch): the URLs it
    did not try get status not_fetched (their last manifest record when it is a failure; an ok one whose cache file
    is gone has no picture to give) and no manifest line; so do the links of a host that keeps failing (see
    `RetryPolicy.host_stop_failures`), for this call only unless `host_stops` carries the stop to the calls after
    it (the fetches of one run: see HostStops). `tried`: the URLs the run's earlier fetches tried (01's shards and
    splits share one set), whose manifest record stands whatever `retry_passing` and `retry_failed` say, so a link
    in several rows is requested once per run and gives each of them one outcome; this fetch adds the URLs it tries.
    """
    base_dir, cache_dir = Path(base_dir), Path(cache_dir)
    links = _clean_links(links)
    resolved, remote = _resolve_offline(links, base_dir, allowed_dirs)
    _read_local_files(resolved, {link: path for link, (path, _) in resolved.items() if path is not None}, {},
                      max_workers)
    if remote:
        resolved.update(_fetch_remote(remote, cache_dir, max_workers, timeout, max_bytes, max_side, max_pixels,
                                      retry, retry_failed, progress, watch, retry_passing, host_stops, tried))
    return _link_table(links, resolved)


def cached_images(links: pd.Series, base_dir: str | Path, cache_dir: str | Path,
                  max_workers: int = 8, allowed_dirs: Sequence[str | Path] = ()) -> pd.DataFrame:
    """`fetch_images`' table from what is already on disk, without any network access.

    URLs are looked up in `cache_dir`'s manifest: status not_fetched when it has no line for one, missing_file
    when its ok line's cache file is gone. Local links resolve against `base_dir` (inside it or `allowed_dirs`
    only, as in `fetch_images`) and, as there, are decoded to verify them (a file that does not decode gets its
    status) and get width/height/mode and bytes from the file. An ok URL whose manifest line predates the mode
    field gets the mode of its cached file's header (the original's when it was stored unresized, RGB after a
    resize).
    """
    base_dir, cache_dir = Path(base_dir), Path(cache_dir)
    links = _clean_links(links)
    resolved, remote = _resolve_offline(links, base_dir, allowed_dirs)
    headers = {link: path for link, (path, _) in resolved.items() if path is not None}  # local files
    known = read_manifest(cache_dir / MANIFEST_NAME) if remote else {}
    for link in remote:
        if link not in known:
            resolved[link] = (None, FetchRecord(link, NOT_FETCHED, error=f"no line in {cache_dir / MANIFEST_NAME}"))
            continue
        record = dataclasses.replace(known[link])  # the manifest's records are shared: never edit them
        path = str(cache_dir / cache_name(link)) if record.status == "ok" else None
        if path is not None and not os.path.isfile(path):
            path, record.status, record.error = None, "missing_file", f"cache file {path} is gone"
        elif path is not None and record.mode is None:  # a line written before the mode field
            headers[link] = path
        resolved[link] = (path, record)
    _read_local_files(resolved, headers, known, max_workers)
    return _link_table(links, resolved)


def _read_local_files(resolved: dict[str, tuple[str | None, FetchRecord]], paths: dict[str, str],
                      known: dict[str, FetchRecord], max_workers: int) -> None:
    """Fill in the size, mode and bytes of each local file in `paths` (link -> path), decoded to verify it (a
    file that does not decode gets its status and no path), and the mode alone of cached URLs in `known` (from
    the header: the download was verified when it was stored)."""
    if not paths:
        return
    with ThreadPoolExecutor(max(1, max_workers)) as pool:
        read = dict(zip(paths, pool.map(lambda link: read_header(paths[link], verify=link not in known), paths),
                        strict=True))
    for link, (status, width, height, mode) in read.items():
        path, record = resolved[link]
        if link in known:  # only the missing mode is filled in; the rest is the original's
            record.mode = mode if status == "ok" else None
            continue
        record.width, record.height, record.mode, record.bytes = width, height, mode, _file_size(path)
        if status != "ok":
            record.status = status
            record.error = (f"{path}: {placeholder_note(width, height)}" if status == "placeholder"
                            else f"{path} does not decode as an image")
            resolved[link] = (None, record)


def _file_size(path: str) -> int:
    try:
        return os.path.getsize(path)
    except OSError:
        return 0


def _clean_links(links: pd.Series) -> pd.Series:
    return links.fillna("").astype(str).str.strip()


def _resolve_offline(links: pd.Series, base_dir: Path, allowed_dirs: Sequence[str | Path]
                     ) -> tuple[dict[str, tuple[str | None, FetchRecord]], list[str]]:
    """(path, record) of each distinct link that needs no network, and the remote URLs left over."""
    resolved: dict[str, tuple[str | None, FetchRecord]] = {}
    remote: list[str] = []
    roots, real_dirs = local_roots(base_dir, allowed_dirs), {}
    for link in pd.unique(links):
        scheme = link_scheme(link)
        if not link:
            resolved[link] = (None, FetchRecord(link, "missing_link"))
        elif scheme in REMOTE_SCHEMES and (why := malformed_url(link)):  # a passing failure it never was
            resolved[link] = (None, FetchRecord(link, "malformed_link", error=why))
        elif scheme in REMOTE_SCHEMES:
            remote.append(link)
        elif scheme and scheme not in LOCAL_SCHEMES:
            resolved[link] = (None, FetchRecord(link, "unsupported_scheme", error=f"scheme {scheme!r}"))
        else:
            path, status, error = resolve_local(link, roots, real_dirs)
            resolved[link] = (path, FetchRecord(link, status, error=error))
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
                  progress: bool, watch: NetworkWatch | None,
                  retry_passing: bool = True, host_stops: HostStops | None = None, tried: set[str] | None = None
                  ) -> dict[str, tuple[str | None, FetchRecord]]:
    """Fetch what the manifest does not vouch for: a main pass, then a gentle pass over retryable failures within
    its time budget (none when the watch found the network down, nor for hosts the downloader stopped sending to:
    what was not tried keeps its last manifest record, unless that is an ok one whose file is gone).

    For the watch, the URLs that failed before tell nothing (a dead host fails again on every rerun), and the
    image the manifest lists last as ok is the witness: when no probe URL reaches its server, one try at it
    decides whether the network is down (see NetworkWatch). `host_stops`: the hosts earlier fetches of the run
    stopped (sent a probe first here), and what this fetch found of them and of the rest afterwards. `tried`: the
    URLs earlier fetches of the run tried (a failure of theirs stands), to which this fetch adds its own."""
    cache_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(cache_dir)
    known = read_manifest(cache_dir / MANIFEST_NAME)
    tried = set() if tried is None else tried
    results = {url: known[url] for url in urls if url in known and _still_valid(  # a failure tried this run stands
        known[url], cache_dir, retry_failed and url not in tried, retry_passing and url not in tried)}
    todo = [url for url in urls if url not in results]
    failed_before = {url for url in todo if url in known and known[url].status != "ok"}
    witness = next((url for url in reversed(known) if known[url].status == "ok"), None) if watch is not None else None
    timeouts = (float(timeout), float(timeout)) if isinstance(timeout, int | float) else tuple(timeout)
    downloader = Downloader(cache_dir, timeouts, max_bytes, max_side, max_pixels, retry, pool_size=2,
                            carried=host_stops.current() if host_stops is not None else None)
    writer = ManifestWriter(cache_dir / MANIFEST_NAME)
    try:
        with strict_truncation():
            started = time.monotonic()
            fetched = _run_pass(downloader, todo, max_workers, retry.attempts, 1.0, "download", progress, writer,
                                watch=watch, failed_before=failed_before, witness=witness)
            results.update({url: known[url] if record.status == NOT_FETCHED and _kept_failure(known.get(url))
                            else record for url, record in fetched.items()})
            tried.update(url for url, record in fetched.items() if record.status != NOT_FETCHED)
            again = [url for url, record in fetched.items()
                     if is_retryable(record.status) and not downloader.is_stopped(url)]
            if again and retry.final_pass_attempts > 0 and not (watch and watch.verdict == NetworkWatch.DOWN):
                budget = max(retry.final_pass_min_s, retry.final_pass_time_share * (time.monotonic() - started))
                retried = _run_pass(downloader, again, retry.final_pass_workers, retry.final_pass_attempts,
                                    retry.final_pass_timeout_factor, "retry", progress, writer, results,
                                    budget_s=budget, stop_hosts=False)
                results.update({url: record for url, record in retried.items() if record.status != NOT_FETCHED})
                _say_retry_pass_cut(budget, sum(record.status == NOT_FETCHED and not downloader.is_stopped(url)
                                                for url, record in retried.items()))
    finally:
        writer.close()
        downloader.close()
        if host_stops is not None:
            host_stops.carry(downloader)
    _say_hosts_stopped(downloader.hosts_found()[1], urls, results,
                       retry.host_probe_tries if host_stops is not None else 0)
    return {url: ((str(cache_dir / cache_name(url)) if results[url].status == "ok" else None), results[url])
            for url in urls}


def _say_hosts_stopped(stopped: dict[str, HostStop], urls: list[str], results: dict[str, FetchRecord],
                       probe_tries: int = 0) -> None:
    """Say once per host the fetch stopped sending to (see `Downloader.note`) how many of its links it left without
    an image, and what to do; `probe_tries`: the requests the run's later fetches send it first (0: none carried)."""
    later = (f"; the later shards of this run send it {max(1, probe_tries)} requests first, and the rest of their "
             "links only when one is answered") if probe_tries else ""
    for host, stop in stopped.items():
        left = [results[url].status for url in urls if link_host(url) == host and is_passing(results[url].status)]
        untried = left.count(NOT_FETCHED)
        print(f"{stop.why()}: {untried:,} of its links not tried (not_fetched) and "
              f"{len(left) - untried:,} failed for a passing reason{later}. It refuses or cannot be reached (a rate "
              "limit, the network down): rerun 01 later (or this fetch): it fetches only these links again")


def _say_retry_pass_cut(budget_s: float, cut: int) -> None:
    """Say that the final retry pass ran out of time with `cut` links not tried again (they keep their failure)."""
    if cut:
        print(f"the retry pass stopped at its time budget ({budget_s:.0f} s, from the download's own time) with "
              f"{cut:,} links not tried again: they keep their failure (timeout, 429, 5xx, connection error), and a "
              "rerun of 01 (or this fetch) tries them again")


def _kept_failure(record: FetchRecord | None) -> bool:
    """Whether a URL not tried keeps its manifest record: a failure does; an ok one is in the todo list only because
    its cache file is gone, so it has no picture (it is not_fetched)."""
    return record is not None and record.status != "ok"


def _still_valid(record: FetchRecord, cache_dir: Path, retry_failed: bool, retry_passing: bool = True) -> bool:
    """Whether a manifest record stands: ok with its file present, or a failure not to retry."""
    if record.status == "ok":
        return (cache_dir / cache_name(record.url)).is_file()
    return not (retry_failed or (retry_passing and is_retryable(record.status)))


def _run_pass(downloader: Downloader, urls: list[str], workers: int, attempts: int, timeout_factor: float,
              label: str, progress: bool, writer: ManifestWriter,
              earlier: dict[str, FetchRecord] | None = None, watch: NetworkWatch | None = None,
              failed_before: Collection[str] = (), witness: str | None = None,
              budget_s: float | None = None, stop_hosts: bool = True) -> dict[str, FetchRecord]:
    """Fetch `urls` on `workers` threads, writing each record to the manifest as it completes (not_fetched
    ones excepted: a URL not tried has no outcome). `watch`, `failed_before`, `witness`, `budget_s`,
    `stop_hosts` (False for the retry pass: it tries only failed links, which may be dead ones on a working
    host): see `run_attempts`."""
    done = {url: earlier[url].attempts for url in urls if url in earlier} if earlier else {}
    fetched: dict[str, FetchRecord] = {}
    counts: Counter[str] = Counter()
    bar = tqdm(total=len(urls), desc=label, unit="img", disable=not progress or not urls, smoothing=0.1)
    shown_at = 0.0
    try:
        for record in run_attempts(downloader, urls, workers, attempts, timeout_factor, done, watch, failed_before,
                                   witness, budget_s, stop_hosts):
            fetched[record.url] = record
            if record.status != NOT_FETCHED:
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
