"""Images/s of amzkit.fetch.fetch_images vs the official challenge helper's approach, on a local server.

A server process on 127.0.0.1 (keep-alive capable, 50 ms latency per request by default) serves a few
distinct small real JPEGs under N distinct URLs. Round 1: every request succeeds. Round 2: 5% of the
URLs answer 503 on their first request (the server remembers first hits per URL), then succeed.
Each method runs against a fresh server and writes into a fresh temp folder; the methods alternate
and the median of --repeats runs is reported, as the machine may be shared. Exit code 0 when amzkit is
faster in both rounds and loses no image in round 2.

    .venv/bin/python benchmarks/download_throughput.py --n 2000 --latency-ms 50
"""

from __future__ import annotations

import argparse
import http.server
import io
import multiprocessing
import os
import re
import statistics
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # this checkout's amzkit, not an installed one
from amzkit.images.fetch import fetch_images
from amzkit.images.http import MAX_WORKERS

DEFAULT_N = 2000
DEFAULT_LATENCY_MS = 50.0
FAIL_FRACTION = 0.05
DEFAULT_REPEATS = 3
DISTINCT_PAYLOADS = 8
PAYLOAD_PX = 200
OFFICIAL_PROCESSES = 100
REQUEST_QUEUE_SIZE = 1024


def jpeg_payloads(count: int = DISTINCT_PAYLOADS, px: int = PAYLOAD_PX) -> list[bytes]:
    """A handful of distinct small real JPEGs (~200x200, a few KB each)."""
    payloads = []
    for i in range(count):
        img = Image.radial_gradient("L").resize((px, px)).convert("RGB")
        img.paste((40 * i % 256, 90, 200 - 20 * i), (0, 0, px // 3, px // 3))
        buffer = io.BytesIO()
        img.save(buffer, format="JPEG", quality=85)
        payloads.append(buffer.getvalue())
    return payloads


def fails_first(index: int, fraction: float) -> bool:
    """Whether URL number `index` answers 503 on its first request (an even spread of `fraction`)."""
    return fraction > 0 and int(index * fraction) != int((index + 1) * fraction)


class QuietServer(http.server.ThreadingHTTPServer):
    request_queue_size = REQUEST_QUEUE_SIZE  # the official approach opens ~100 connections at once
    daemon_threads = True

    def handle_error(self, request, client_address) -> None:
        pass  # clients closing connections are not the benchmark's business


def serve(address: tuple[str, int], latency_s: float, fail_fraction: float, ready: multiprocessing.Queue) -> None:
    """Server process: /img/<i>.jpg after `latency_s`; 503 on the first hit of the failing share."""
    payloads = jpeg_payloads()
    seen: set[str] = set()
    lock = threading.Lock()

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive for clients that want it; urlretrieve closes anyway
        disable_nagle_algorithm = True  # as real CDNs: no 40 ms delayed-ACK stall between headers and body

        def log_message(self, *args) -> None:
            pass

        def do_GET(self) -> None:  # noqa: N802 (http.server's name)
            time.sleep(latency_s)
            match = re.fullmatch(r"/img/(\d+)\.jpg", self.path)
            if match is None:
                return self.answer(404, b"not found")
            index = int(match.group(1))
            with lock:
                first_hit = self.path not in seen
                seen.add(self.path)
            if first_hit and fails_first(index, fail_fraction):
                return self.answer(503, b"busy, try again")
            self.answer(200, payloads[index % len(payloads)])

        def answer(self, code: int, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", "image/jpeg" if code == 200 else "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = QuietServer(address, Handler)
    ready.put(httpd.server_address[1])
    httpd.serve_forever()


@contextmanager
def local_server(latency_s: float, fail_fraction: float) -> Iterator[str]:
    """A fresh server process (fresh first-hit memory); yields its base URL."""
    ready: multiprocessing.Queue = multiprocessing.Queue()
    process = multiprocessing.Process(target=serve, args=(("127.0.0.1", 0), latency_s, fail_fraction, ready),
                                      daemon=True)
    process.start()
    try:
        yield f"http://127.0.0.1:{ready.get(timeout=30)}"
    finally:
        process.terminate()
        process.join()


# ---- The official 2023/2024 challenge helper's approach, re-implemented small (NOT amzkit code):
# ---- urllib.request.urlretrieve in a multiprocessing.Pool(100), no timeout, no retry,
# ---- files named by the URL's basename; a failed URL is skipped (the helper's bare except).


def official_download_image(args: tuple[str, str]) -> None:
    image_link, save_folder = args
    if not isinstance(image_link, str):
        return
    image_save_path = os.path.join(save_folder, Path(image_link).name)
    if os.path.exists(image_save_path):
        return
    try:
        urllib.request.urlretrieve(image_link, image_save_path)
    except Exception:  # the helper swallows every failure: the image is simply lost
        return


def official_download_images(image_links: list[str], download_folder: str,
                             processes: int = OFFICIAL_PROCESSES) -> None:
    os.makedirs(download_folder, exist_ok=True)
    with multiprocessing.Pool(processes) as pool:
        list(pool.imap(official_download_image, [(link, download_folder) for link in image_links]))


# ---- the two contenders: each returns how many of `urls` did not end as a usable local image


def run_official(urls: list[str], folder: Path) -> int:
    official_download_images(urls, str(folder))
    return sum(not (folder / Path(url).name).is_file() for url in urls)


def run_amzkit(urls: list[str], folder: Path, max_workers: int = MAX_WORKERS) -> int:
    table = fetch_images(pd.Series(urls), base_dir=folder, cache_dir=folder / "cache", max_workers=max_workers,
                         progress=False)
    return int((table["status"] != "ok").sum())


def timed_run(method: Callable[[list[str], Path], int], n: int, latency_s: float,
              fail_fraction: float) -> tuple[float, int]:
    """(seconds, images lost) of one method against a fresh server, into a fresh temp folder."""
    with local_server(latency_s, fail_fraction) as base, tempfile.TemporaryDirectory() as tmp:
        urls = [f"{base}/img/{i}.jpg" for i in range(n)]
        started = time.perf_counter()
        lost = method(urls, Path(tmp) / "images")
        return time.perf_counter() - started, lost


def measure(n: int, latency_s: float, fail_fraction: float, amzkit_workers: int = MAX_WORKERS,
            repeats: int = DEFAULT_REPEATS) -> list[dict]:
    """Median seconds per method over `repeats` alternating runs (the machine may be shared and noisy)."""
    methods: dict[str, Callable[[list[str], Path], int]] = {
        "official": run_official, "amzkit": lambda urls, folder: run_amzkit(urls, folder, amzkit_workers)}
    runs: dict[str, list[tuple[float, int]]] = {name: [] for name in methods}
    for _ in range(repeats):
        for name, method in methods.items():
            runs[name].append(timed_run(method, n, latency_s, fail_fraction))
    rows = []
    for name, results in runs.items():
        seconds = statistics.median(s for s, _ in results)
        rows.append({"method": name, "seconds": round(seconds, 2), "images/s": round(n / seconds, 1),
                     "images lost": max(lost for _, lost in results),
                     "runs (s)": " ".join(f"{s:.2f}" for s, _ in results)})
    return rows


def report(title: str, rows: list[dict]) -> pd.DataFrame:
    table = pd.DataFrame(rows)
    speed = table.set_index("method")["images/s"]
    print(f"\n{title}")
    print(table.to_string(index=False))
    print(f"ratio amzkit/official (images/s): {speed['amzkit'] / speed['official']:.2f}")
    return table


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="distinct URLs per run")
    parser.add_argument("--latency-ms", type=float, default=DEFAULT_LATENCY_MS, help="server latency per request")
    parser.add_argument("--fail-fraction", type=float, default=FAIL_FRACTION, help="share failing once (round 2)")
    parser.add_argument("--workers", type=int, default=MAX_WORKERS, help="amzkit's max_workers")
    parser.add_argument("--repeats", type=int, default=DEFAULT_REPEATS, help="alternating runs per method (median)")
    args = parser.parse_args(argv)
    print(f"{args.n} URLs, {args.latency_ms:g} ms latency, {os.cpu_count()} CPUs, load average "
          f"{os.getloadavg()[0]:.1f}; official: Pool({OFFICIAL_PROCESSES}) + urlretrieve; amzkit: "
          f"{args.workers} threads")
    latency_s = args.latency_ms / 1000
    clean = report("round 1: every request succeeds", measure(args.n, latency_s, 0.0, args.workers, args.repeats))
    flaky = report(f"round 2: {args.fail_fraction:.0%} of URLs answer 503 once",
                   measure(args.n, latency_s, args.fail_fraction, args.workers, args.repeats))
    faster = all(t.set_index("method")["images/s"].pipe(lambda s: s["amzkit"] > s["official"]) for t in (clean, flaky))
    lossless = int(flaky.set_index("method").loc["amzkit", "images lost"]) == 0
    print(f"\namzkit faster in both rounds: {faster}; amzkit lost no image in round 2: {lossless}")
    return 0 if (faster and lossless) else 1


if __name__ == "__main__":
    raise SystemExit(main())
