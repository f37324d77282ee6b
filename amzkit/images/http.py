"""HTTP downloading: keep-alive pools per thread, timeouts, the retry policy, byte limits on decoded bodies, a
stop for a host that keeps failing (`Downloader.note`) and an early verdict when the network is down
(`NetworkWatch`). The threads that schedule the tries are in attempts.py."""

from __future__ import annotations

import os
import random
import threading
import time
import urllib.parse
import urllib.request
import zlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from pathlib import Path

import urllib3

from amzkit.core.io import atomic_path
from amzkit.images.decode import CONTENT_ENCODING_WBITS, IDENTITY_ENCODINGS, BoundedDecoder, prepare_image
from amzkit.images.records import (
    HTTP_STATUS_PREFIX,
    REMOTE_SCHEMES,
    FetchRecord,
    cache_name,
    describe,
    is_retryable,
    link_host,
    link_scheme,
    utf8_location,
)

CONNECT_TIMEOUT_S = 5.0


READ_TIMEOUT_S = 15.0


MAX_WORKERS = 64


MAX_BYTES = 20_000_000


CHUNK_BYTES = 256 * 1024


USER_AGENT = "amzkit/0.1 (+image fetch for a Kaggle competition)"


CA_BUNDLE_VARIABLES = ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE")  # read as requests does


MAX_REDIRECTS = 5


REDIRECT_CODES = frozenset({301, 302, 303, 307, 308})


SMALL_BODY_BYTES = 64 * 1024  # an error page this small is read, so its keep-alive connection is reused


OFFLINE_PROBE_LINKS = 200  # the first tries of this many distinct URLs decide whether the network is down


REACHED, UNREACHABLE, UNTOLD = "reached", "unreachable", "untold"  # how far one try got (see NetworkWatch)


HOST_STOP_FAILURES = 100  # a host whose last this many requests all failed for a passing reason (429, 5xx, timeout,
HOST_STOP_S = 60.0  # connection error), over at least this many seconds with no answer between, is sent no more
# (reached sooner, the host is sent nothing until this long after its first failure: a failure then stops it)
HOST_PROBE_TRIES = 3  # a later fetch of the run (01's next shard) sends such a host this many requests first


FINAL_PASS_TIME_SHARE = 0.5  # the final retry pass stops after this share of the main pass's time ...
FINAL_PASS_MIN_S = 120.0  # ... or this many seconds when that is longer; what it did not reach keeps its failure


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
    final_pass_time_share: float = FINAL_PASS_TIME_SHARE  # its time budget: this share of the main pass's time,
    final_pass_min_s: float = FINAL_PASS_MIN_S  # and at least this
    host_stop_failures: int = HOST_STOP_FAILURES  # a host failing this many requests in a row (passing failures)
    host_stop_s: float = HOST_STOP_S  # over at least this long is sent nothing more by this fetch
    host_probe_tries: int = HOST_PROBE_TRIES  # and by the run's later fetches (see HostStops) unless one of this
    # many requests sent it first is answered

    def delay(self, failures: int, retry_after: float | None) -> float:
        """Seconds to wait after the `failures`-th failure of one URL."""
        if retry_after is not None:
            return min(max(retry_after, 0.0), self.retry_after_cap_s)
        base = min(self.backoff_s * 2 ** (failures - 1), self.backoff_cap_s)
        return base + random.uniform(0, base)


DEFAULT_RETRY = RetryPolicy()


@dataclass
class HostStop:
    """Why a fetch sent a host nothing more: its last `failures` requests over `seconds` all failed (`statuses`);
    `probe`: they were the probe a host stopped by an earlier fetch of the run is sent (see HostStops)."""

    host: str
    failures: int
    seconds: float
    statuses: Counter
    probe: bool = False

    def why(self) -> str:
        seen = ", ".join(f"{status} {count}" for status, count in self.statuses.most_common())
        if self.probe:
            return (f"image host {self.host}, stopped by an earlier fetch of this run, failed each of the "
                    f"{self.failures} requests this fetch sent it first ({seen}), so it sent it nothing more")
        return (f"image host {self.host} failed each of its last {self.failures} requests over {self.seconds:.0f} s "
                f"for a passing reason ({seen}) with no answer between, so this fetch sent it nothing more")


class HostStops:
    """The hosts the fetches of one run (01's shards) stopped sending to, carried from each fetch to the next: a
    later fetch sends such a host `RetryPolicy.host_probe_tries` requests first and the rest of its links only when
    one of them is answered (it is then used as ever, and no longer carried); else they are not_fetched too. A new
    run starts with none, so it tries every link again. Thread-safe; a copy travels to a worker process (pickled)."""

    def __init__(self, stopped: dict[str, HostStop] | None = None):
        self._stopped = dict(stopped or {})
        self._lock = threading.Lock()

    def current(self) -> dict[str, HostStop]:
        """The hosts stopped so far, by host."""
        with self._lock:
            return dict(self._stopped)

    def carry(self, downloader: Downloader) -> None:
        """Take in what one fetch found: the hosts it stopped, and those it was handed that answered again."""
        released, stopped = downloader.hosts_found()
        with self._lock:
            for host in released:
                self._stopped.pop(host, None)
            self._stopped.update(stopped)

    def __getstate__(self) -> dict:
        return {"stopped": self.current()}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["stopped"])


@dataclass
class Response:
    """What one HTTP attempt gave: a body, or a failure status (with Retry-After when the server sent one)."""

    status: str
    body: bytes = b""
    retry_after: float | None = None
    error: str = ""
    reach: str = REACHED  # UNREACHABLE: no connection could be made; UNTOLD: a malformed URL


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
    (zlib.error, "corrupt"),
)


UNREACHABLE_ERRORS = (  # no connection made: DNS failure, refused, no route, connect timeout, proxy down
    urllib3.exceptions.ConnectTimeoutError,  # NewConnectionError and NameResolutionError are ones
    urllib3.exceptions.ProxyError,
)


MALFORMED_URL_ERRORS = (urllib3.exceptions.LocationValueError,)  # no host, bad port, ...


def exception_status(err: BaseException) -> str:
    """Status of a download exception (dropped connections, bad URLs, TLS errors: connection_error)."""
    return next((status for kind, status in EXCEPTION_STATUSES if isinstance(err, kind)), "connection_error")


def exception_reach(err: BaseException) -> str:
    """How far a try that raised `err` before any answer got: UNREACHABLE, UNTOLD (malformed URL) or REACHED."""
    if isinstance(err, UNREACHABLE_ERRORS):
        return UNREACHABLE
    return UNTOLD if isinstance(err, MALFORMED_URL_ERRORS) else REACHED


def ca_bundle() -> str | None:
    """CA file: $REQUESTS_CA_BUNDLE / $CURL_CA_BUNDLE, else certifi's (as requests), else the system's (None)."""
    configured = next((os.environ[key] for key in CA_BUNDLE_VARIABLES if os.environ.get(key)), None)
    if configured:
        return configured
    try:
        import certifi  # optional: requests' CA bundle when installed
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
    """Fetches URLs into the cache with one keep-alive connection pool per thread. Its methods raise only when
    the cache's disk fails (full, read-only), which no retry mends.

    Plain urllib3 rather than requests: requests' per-request bookkeeping (cookies, hooks, environment
    merging) costs about 0.4 ms of GIL-held CPU per image, a quarter of the throughput on two cores.
    Proxies from the environment (http_proxy, https_proxy, no_proxy) are honoured as requests would.
    """

    def __init__(self, cache_dir: Path, timeout: tuple[float, float], max_bytes: int, max_side: int,
                 max_pixels: int, retry: RetryPolicy, pool_size: int, carried: dict[str, HostStop] | None = None):
        self.cache_dir, self.timeout, self.max_bytes = cache_dir, timeout, max_bytes
        self.max_side, self.max_pixels, self.retry, self.pool_size = max_side, max_pixels, retry, pool_size
        self.proxies = {scheme: url for scheme, url in urllib.request.getproxies().items() if scheme in REMOTE_SCHEMES}
        self.ca_certs = ca_bundle()
        self._local = threading.local()
        self._managers: list[urllib3.PoolManager] = []
        self._managers_lock = threading.Lock()
        self._paused_until: dict[str, float] = {}  # host -> monotonic time its Retry-After ends
        self._pauses_lock = threading.Lock()
        self._streaks: dict[str, tuple[float, Counter]] = {}  # host -> its passing failures in a row: since, statuses
        self.stopped: dict[str, HostStop] = {}  # hosts sent nothing more (see `note`)
        self.probation = dict(carried or {})  # hosts an earlier fetch of the run stopped: sent a probe first (`claim`)
        self.released: set[str] = set()  # hosts of `probation` that answered: used as ever
        self._probes_sent: Counter[str] = Counter()

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

    def pause_host(self, url: str, seconds: float) -> None:
        """Send nothing more to `url`'s host for `seconds` (its Retry-After, capped): a try before then fails too."""
        if (seconds := min(seconds, self.retry.retry_after_cap_s)) > 0:
            host, until = link_host(url), time.monotonic() + seconds
            with self._pauses_lock:
                self._paused_until[host] = max(until, self._paused_until.get(host, 0.0))

    def paused_for(self, url: str) -> float:
        """Seconds left of a pause `url`'s host asked for (0: none)."""
        with self._pauses_lock:
            until = self._paused_until.get(link_host(url), 0.0)
        return max(0.0, until - time.monotonic())

    def claim(self, url: str) -> bool:
        """Whether a try at `url` may be sent now: always, unless its host is on probation (stopped by an earlier
        fetch of the run) and `retry.host_probe_tries` requests were sent it with no answer yet, or stopped since
        the caller last looked (a probe's last failure takes it off probation). A claimed try is then `note`d
        (which frees its place when it sent no request)."""
        host = link_host(url)
        with self._pauses_lock:
            if host in self.stopped:
                return False
            if host not in self.probation:
                return True
            if self._probes_sent[host] >= max(1, self.retry.host_probe_tries):
                return False
            self._probes_sent[host] += 1
            return True

    def note(self, url: str, status: str, reach: str) -> HostStop | None:
        """Count one try's outcome for its host; the HostStop when it makes the host's passing failures in a row
        reach `retry.host_stop_failures` over `retry.host_stop_s`, or on probation (see `claim`)
        `retry.host_probe_tries` (the host is then sent nothing more). Failures in a row that reach the count sooner,
        the last an answer (429, 5xx: not a connection that failed, which the network watch must see at once), pause
        the host until `retry.host_stop_s` after the first of them (see `paused_for`): its links' tries wait instead
        of all failing in seconds, and the next try then stops it or, answered, ends the streak. An answer takes a
        host off probation."""
        host = link_host(url)
        with self._pauses_lock:
            if reach == UNTOLD:  # no request made (a cached file, a malformed URL): says nothing of the host
                if host in self.probation:
                    self._probes_sent[host] -= 1
                return None
            if not is_retryable(status):  # an answer (an image, a 404, ...): the host works
                self._streaks.pop(host, None)
                if self.probation.pop(host, None) is not None:
                    self.released.add(host)
                return None
            since, statuses = self._streaks.setdefault(host, (time.monotonic(), Counter()))
            statuses[status] += 1
            failures, seconds = statuses.total(), time.monotonic() - since
            if host in self.stopped:
                return None
            if host in self.probation:
                if failures < max(1, self.retry.host_probe_tries):
                    return None
                del self.probation[host]
                self.stopped[host] = HostStop(host, failures, seconds, Counter(statuses), probe=True)
                return self.stopped[host]
            if failures < self.retry.host_stop_failures:
                return None
            if seconds < self.retry.host_stop_s:  # a host answering failures faster (a rate limit's 429 at once) is
                if reach == REACHED:  # held back till then, not worn out; the next failure stops it. Not one that
                    until = since + self.retry.host_stop_s  # cannot be reached: the watch's verdict waits on it
                    self._paused_until[host] = max(until, self._paused_until.get(host, 0.0))
                return None
            self.stopped[host] = HostStop(host, failures, seconds, Counter(statuses))
            return self.stopped[host]

    def hosts_found(self) -> tuple[set[str], dict[str, HostStop]]:
        """The hosts on probation that answered, and the hosts stopped: a copy (a try may still be under way)."""
        with self._pauses_lock:
            return set(self.released), dict(self.stopped)

    def is_stopped(self, url: str) -> bool:
        """Whether `url`'s host is sent nothing more (see `note`)."""
        return bool(self.stopped) and link_host(url) in self.stopped

    def close(self) -> None:
        with self._managers_lock:
            for manager in self._managers:
                manager.clear()
            self._managers.clear()

    def get(self, url: str, timeout: tuple[float, float]) -> Response:
        """One GET, following redirects: the body, or why not (reading stops past max_bytes)."""
        answered = False
        try:
            for _ in range(MAX_REDIRECTS + 1):
                response = self.manager(url).request(
                    "GET", url, preload_content=False, redirect=False, retries=False,
                    timeout=urllib3.Timeout(connect=timeout[0], read=timeout[1]))
                answered = True
                location = response.headers.get("Location") if response.status in REDIRECT_CODES else None
                if not location:
                    return self.read(response)
                finish(response)
                url = urllib.parse.urljoin(url, utf8_location(location))
                if link_scheme(url) not in REMOTE_SCHEMES:
                    return Response("unsupported_scheme", error=f"redirected to {url[:200]}")
            return Response(f"{HTTP_STATUS_PREFIX}{response.status}", error=f"over {MAX_REDIRECTS} redirects")
        except Exception as err:  # any failure of one URL is its status, never the run's
            return Response(exception_status(err), error=describe(err),
                            reach=REACHED if answered else exception_reach(err))

    def reach(self, url: str) -> str:
        """How far one GET of `url` gets (REACHED, UNREACHABLE or UNTOLD); its body is not kept."""
        return self.get(url, self.timeout).reach

    def read(self, response: urllib3.BaseHTTPResponse) -> Response:
        """The body of a final answer, decoded here (gzip, deflate): past max_bytes, as sent or as decoded,
        reading stops (Content-Length is checked first)."""
        if not 200 <= response.status < 300:
            finish(response)
            return Response(f"{HTTP_STATUS_PREFIX}{response.status}", error=response.reason or "",
                            retry_after=parse_retry_after(response.headers.get("Retry-After")))
        declared = response.headers.get("Content-Length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            response.close()
            return Response("too_large", error=f"Content-Length {declared}")
        encoding = response.headers.get("Content-Encoding", "").strip().lower()
        if encoding not in IDENTITY_ENCODINGS and encoding not in CONTENT_ENCODING_WBITS:
            response.close()
            return Response("corrupt", error=f"Content-Encoding {encoding[:40]!r} is not decoded (only gzip, deflate)")
        decoder = BoundedDecoder(encoding, self.max_bytes) if encoding in CONTENT_ENCODING_WBITS else None
        chunks, sent, size = [], 0, 0
        while raw := response.read(CHUNK_BYTES, decode_content=False):
            sent += len(raw)
            chunk = decoder.decode(raw) if decoder else raw
            size += len(chunk)
            if sent > self.max_bytes or size > self.max_bytes:
                response.close()
                decoded = f" decoded from {encoding} ({sent} bytes sent)" if size > self.max_bytes and decoder else ""
                return Response("too_large", error=f"over {self.max_bytes} bytes{decoded}")
            chunks.append(chunk)
        response.release_conn()
        return Response("ok", b"".join(chunks))

    def attempt(self, url: str, attempts: int, timeout_factor: float = 1.0) -> tuple[FetchRecord, float | None, str]:
        """One try at `url` (its `attempts`-th in all): its record, the server's Retry-After (if any) and how
        far it got (REACHED, UNREACHABLE or UNTOLD: see NetworkWatch).

        On a URL's first try, a cache file no manifest line vouches for is verified and reused when good.
        """
        try:
            target = self.cache_dir / cache_name(url)
            if attempts == 1 and target.is_file():
                record = self.store(url, target.read_bytes(), target, 0, cached=True)
                if record.status == "ok":
                    return record, None, UNTOLD
            timeout = (self.timeout[0] * timeout_factor, self.timeout[1] * timeout_factor)
            response = self.get(url, timeout)
            if response.status == "ok":
                return self.store(url, response.body, target, attempts), None, REACHED
            record = FetchRecord(url, response.status, attempts=attempts, error=response.error)
            return record, response.retry_after, response.reach
        except OSError as err:  # the network's errors are get's statuses: this is the cache's disk, for every URL
            raise OSError(f"the image cache could not be read or written at {self.cache_dir / cache_name(url)} "
                          f"({describe(err)}): free space on that disk (Kaggle's /kaggle/working holds about "
                          "20 GB) or fix its permissions, then rerun: the images fetched so far are kept") from err
        except Exception as err:  # a bug on one URL's bytes must not end the run: a failure, not a network one
            return FetchRecord(url, "corrupt", attempts=attempts, error=describe(err)), None, UNTOLD

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
        nbytes = prepared.nbytes if prepared.nbytes is not None else len(body)
        return FetchRecord(url, "ok", nbytes, prepared.width, prepared.height, attempts, mode=prepared.mode)


class NetworkWatch:
    """An early verdict on the network, from the first tries of the first `probe_links` URLs of a fetch.

    `run_attempts` tries those URLs first and holds the rest back. As soon as one try reaches a server (any
    HTTP answer, or a connection made), the verdict is "up" and the rest are released. When each of them has
    been tried once, none reached a server and some failed to connect (DNS failure, refused, no route,
    connect timeout), the verdict is "down" unless one try at an image fetched before (the fetch's witness,
    when the cache has one) reaches its server: the fetch stops, and the URLs it did not try are recorded as
    not_fetched. Malformed URLs, files already cached and URLs that failed before (a rerun tries them again:
    a dead host fails as ever) tell nothing. One watch serves the several fetches of a run (01's shards):
    after "up" later fetches are not held back; after "down" they try nothing.
    """

    UNDECIDED, UP, DOWN = "undecided", "up", "down"

    def __init__(self, probe_links: int = OFFLINE_PROBE_LINKS):
        self.probe_links = probe_links
        self.verdict = self.UNDECIDED
        self.unreachable = 0
        self.hosts: set[str] = set()
        self.example_error = ""
        self.witness = ""  # an image fetched before that did not answer either
        self._lock = threading.Lock()

    def observe(self, record: FetchRecord, reach: str) -> None:
        """Count one URL's first try; one that reached a server settles the verdict: up."""
        with self._lock:
            if reach == REACHED:
                self.verdict = self.UP
            elif reach == UNREACHABLE:
                self.unreachable += 1
                self.hosts.add(urllib.parse.urlsplit(record.url).hostname or "")
                self.example_error = self.example_error or record.error

    def conclude(self, witness: str | None = None, reach: Callable[[str], str] | None = None) -> str:
        """The verdict once every probe URL was tried once: down when none reached a server, some not connecting,
        and `reach(witness)` (one try at an image fetched before, when there is one) did not reach its server."""
        with self._lock:
            if self.verdict == self.UNDECIDED and self.unreachable:
                answered = witness is not None and reach is not None and reach(witness) == REACHED
                self.verdict = self.UP if answered else self.DOWN
                self.witness = "" if answered else witness or ""
            return self.verdict

    def summary(self) -> str:
        """What the verdict "down" rests on, in one sentence."""
        hosts = sorted(self.hosts)
        named = ", ".join(hosts[:3]) + (", ..." if len(hosts) > 3 else "")
        witness = f", nor did {self.witness[:200]} (fetched before)" if self.witness else ""
        return (f"the first {self.unreachable} image links tried ({len(hosts)} host{'s' * (len(hosts) != 1)}: "
                f"{named}) all failed to connect and none answered (e.g. {self.example_error}){witness}")
