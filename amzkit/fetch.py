"""Image links to local files: local paths resolved, remote URLs downloaded once into a cache.

Failures are recorded as a status per link (never replaced by a placeholder picture).
"""

from __future__ import annotations

import hashlib
import urllib.error
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
from PIL import Image
from tqdm.auto import tqdm

from amzkit.io import atomic_path

MAX_BYTES = 20_000_000
TIMEOUT_S = 15.0
USER_AGENT = "amzkit/0.1 (+image fetch for a Kaggle competition)"


def is_remote(link: str) -> bool:
    return link.startswith(("http://", "https://"))


def cache_name(url: str) -> str:
    """File name of a downloaded URL in the cache: its sha1 plus the URL's extension."""
    suffix = Path(url.split("?")[0]).suffix.lower()
    return hashlib.sha1(url.encode()).hexdigest() + (suffix if suffix in {".jpg", ".jpeg", ".png"} else ".img")


def _download(url: str, target: Path, timeout: float, max_bytes: int) -> str:
    if target.is_file():
        return "ok"
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            body = response.read(max_bytes + 1)
    except urllib.error.HTTPError as err:
        return f"http_{err.code}"
    except TimeoutError:
        return "timeout"
    except (urllib.error.URLError, OSError) as err:
        return "timeout" if "timed out" in str(err) else "network_error"
    if not body:
        return "empty"
    if len(body) > max_bytes:
        return "too_large"
    with atomic_path(target) as tmp:
        tmp.write_bytes(body)
    return "ok"


def fetch_images(
    links: pd.Series,
    base_dir: str | Path,
    cache_dir: str | Path,
    max_workers: int = 32,
    timeout: float = TIMEOUT_S,
    max_bytes: int = MAX_BYTES,
) -> pd.DataFrame:
    """Resolve each link to a local file. Returns one row per input row: link, path, status.

    Relative links are resolved against `base_dir` (the CSV's folder); URLs are downloaded once each
    (deduplicated) into `cache_dir` with atomic writes, so a rerun reuses what is already there.
    """
    base_dir, cache_dir = Path(base_dir), Path(cache_dir)
    links = links.fillna("").astype(str).str.strip()
    unique = pd.unique(links)
    resolved: dict[str, tuple[str | None, str]] = {}
    remote = []
    for link in unique:
        if not link:
            resolved[link] = (None, "missing_link")
        elif is_remote(link):
            remote.append(link)
        elif "://" in link:
            resolved[link] = (None, "unsupported_scheme")
        else:
            path = Path(link[7:] if link.startswith("file:") else link)
            path = path if path.is_absolute() else base_dir / path
            resolved[link] = (str(path), "ok") if path.is_file() else (None, "missing_file")
    if remote:
        cache_dir.mkdir(parents=True, exist_ok=True)
        targets = [cache_dir / cache_name(url) for url in remote]
        with ThreadPoolExecutor(max_workers=max_workers) as pool:
            statuses = list(tqdm(
                pool.map(lambda pair: _download(*pair, timeout, max_bytes), zip(remote, targets, strict=True)),
                total=len(remote), desc="download", unit="img",
            ))
        for url, target, status in zip(remote, targets, statuses, strict=True):
            resolved[url] = (str(target) if status == "ok" else None, status)
    return pd.DataFrame(
        {"link": links.to_numpy(), "path": [resolved[x][0] for x in links], "status": [resolved[x][1] for x in links]},
        index=links.index,
    )


def open_image(path: str | None, draft_px: int | None = None) -> tuple[Image.Image | None, str]:
    """Open an image as RGB; returns (image, 'ok') or (None, reason). JPEGs decode in draft mode."""
    if path is None:
        return None, "missing"
    try:
        with Image.open(path) as img:
            if draft_px and img.format == "JPEG":
                img.draft("RGB", (draft_px, draft_px))
            img.load()
            if img.mode in ("RGBA", "LA", "P"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return img.convert("RGB"), "ok"
    except Image.DecompressionBombError:
        return None, "too_large"
    except (OSError, ValueError, SyntaxError):
        return None, "not_an_image"
