"""A fetch's tries over threads: fresh URLs and retries after their backoff (`WorkQueue`), the network watch's
probe first, and the stops: a network found down, a host the downloader stopped sending to, a time budget."""

from __future__ import annotations

import heapq
import itertools
import queue
import threading
import time
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

from amzkit.images.http import UNTOLD, Downloader, NetworkWatch
from amzkit.images.records import NOT_FETCHED, FetchRecord, is_retryable, link_host


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


@dataclass(frozen=True)
class _Stop:
    """run_attempts' signal to stop trying the URLs of `host` (every URL when None); those not finished get their
    latest record, or a not_fetched one saying `why`."""

    host: str | None
    why: str


def run_attempts(downloader: Downloader, urls: list[str], workers: int, attempts: int, timeout_factor: float,
                 earlier: dict[str, int], watch: NetworkWatch | None = None, failed_before: Collection[str] = (),
                 witness: str | None = None, budget_s: float | None = None,
                 stop_hosts: bool = True) -> Iterator[FetchRecord]:
    """Each URL's final record after up to `attempts` tries, in completion order, from `workers` threads.

    A retryable failure is tried again after its backoff (or the server's Retry-After, capped); a Retry-After also
    holds back every try at that host till it ends (sent anyway, under a rate limit, they would fail too).
    Stopping the iteration early cancels what is left. With a `watch` (see NetworkWatch) whose verdict is
    pending, the first `watch.probe_links` URLs not in `failed_before` are tried first, once each (their retries
    wait for the verdict, as do the other URLs); when none of them reached a server, one try at `witness` (an
    image fetched before) settles the verdict. Three things stop tries: a network found down (every URL), a host
    the downloader stops sending to (`Downloader.note`, counting this pass's tries only with `stop_hosts`: its
    URLs) and `budget_s` seconds passed (every URL). Each URL they stop gets its latest record when it was tried,
    else a not_fetched record saying why. With `stop_hosts`, the tries at a host an earlier fetch of the run stopped
    wait while its probe is under way (`Downloader.claim`) and go back to the queue after each try at it.
    """
    if not urls:
        return
    deadline = None if budget_s is None else time.monotonic() + budget_s
    work = WorkQueue()
    results: queue.SimpleQueue = queue.SimpleQueue()
    latest: dict[str, FetchRecord] = {}
    probe: set[str] = set()
    if watch is not None and watch.verdict == NetworkWatch.UNDECIDED:
        probe = set([url for url in urls if url not in failed_before][:watch.probe_links])
    probing = bool(probe)  # no URL that tells something (each failed before): no verdict from this fetch
    gate = {"untried": len(probe), "decided": not probing, "down": False, "deferred": [],  # the probe's retries
            "held": [url for url in urls if url not in probe] if probing else []}  # wait too, until the verdict
    gate_lock = threading.Lock()
    parked: dict[str, list[tuple[str, int]]] = {}  # host -> tries waiting for the probe of a host on probation
    park_lock = threading.Lock()
    if watch is not None and watch.verdict == NetworkWatch.DOWN:
        results.put(_Stop(None, f"not tried: {watch.summary()}"))
    else:
        for url in (probe if probing else urls):
            work.put((url, 1))

    def first_try_done(record: FetchRecord, reach: str, watch: NetworkWatch) -> None:
        """Count a probe URL's first try; on a verdict, stop (down) or release what waited for it."""
        watch.observe(record, reach)
        with gate_lock:
            gate["untried"] -= 1
            verdict = watch.verdict if gate["untried"] else watch.conclude(witness, downloader.reach)
            if gate["decided"] or (verdict == NetworkWatch.UNDECIDED and gate["untried"]):
                return
            gate["decided"] = True
            if verdict == NetworkWatch.DOWN:
                gate["down"] = True  # no try after this one: each URL's latest record is its last
                results.put(_Stop(None, f"not tried: {watch.summary()}"))
                return
            for url in gate["held"]:
                work.put((url, 1))
            for task, delay in gate["deferred"]:
                work.put_later(task, delay)

    def retry_later(task: tuple[str, int], delay: float) -> None:
        with gate_lock:
            if not gate["decided"]:
                gate["deferred"].append((task, delay))
            if gate["down"] or not gate["decided"]:
                return
        work.put_later(task, delay)

    def claimed(task: tuple[str, int]) -> bool:
        """Whether a try may be sent now (`Downloader.claim`); else it waits, parked, for the next try at its host."""
        with park_lock:
            if downloader.claim(task[0]):
                return True
            parked.setdefault(link_host(task[0]), []).append(task)
            return False

    def unpark(url: str) -> None:
        """After a try at `url`'s host, what waited for it goes back to the queue (to be claimed again, or to find
        the host stopped or answering)."""
        with park_lock:
            for task in parked.pop(link_host(url), ()):
                work.put(task, WorkQueue.DUE)

    def fetch_loop() -> None:
        while (task := work.get()) is not None:
            url, number = task
            try:
                if downloader.is_stopped(url):  # its host is sent nothing more: its record comes from the _Stop
                    if watch is not None and number == 1 and url in probe:
                        first_try_done(FetchRecord(url, NOT_FETCHED), UNTOLD, watch)  # tells nothing
                    continue
                if (paused := downloader.paused_for(url)) > 0:  # its host asked for a pause: no try spent on it now
                    work.put_later(task, paused)
                    continue
                if stop_hosts and not claimed(task):  # its host's probe is under way: it waits for its outcome
                    continue
                record, retry_after, reach = downloader.attempt(url, earlier.get(url, 0) + number, timeout_factor)
                latest[url] = record
                if stop_hosts and (stop := downloader.note(url, record.status, reach)):
                    results.put(_Stop(stop.host, f"not tried: {stop.why()}"))
                if retry_after is not None and is_retryable(record.status):
                    downloader.pause_host(url, retry_after)
                if stop_hosts:
                    unpark(url)
                if watch is not None and number == 1 and url in probe:
                    first_try_done(record, reach, watch)
                if number < attempts and is_retryable(record.status) and not downloader.is_stopped(url):
                    retry_later((url, number + 1), downloader.retry.delay(number, retry_after))
                else:
                    results.put(record)
            except BaseException as err:  # handed to the caller's thread, raised there
                results.put(err)

    workers = max(1, min(workers, len(urls)))
    for i in range(workers):
        threading.Thread(target=fetch_loop, daemon=True, name=f"amzkit-fetch-{i}").start()
    finished: set[str] = set()
    try:
        while len(finished) < len(urls):
            try:
                result = results.get(timeout=None if deadline is None else max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                result = _Stop(None, f"not tried: the time budget of this pass ({budget_s:.0f} s) ran out")
            if isinstance(result, BaseException):
                raise result
            if isinstance(result, _Stop):
                for url in urls:
                    if url not in finished and (result.host is None or link_host(url) == result.host):
                        finished.add(url)
                        yield latest.get(url) or FetchRecord(url, NOT_FETCHED, error=result.why)
                if result.host is None:
                    return
            elif result.url not in finished:  # else a try under way when its host was stopped: already given
                finished.add(result.url)
                yield result
    finally:
        work.close(workers)
