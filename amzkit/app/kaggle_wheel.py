"""The amzkit wheel of a Kaggle build: built from a clean copy of the sources, its version stamped with the build
(`<version>+<UTC yyyymmddHHMMSS>.<source hash>`), so a kernel can refuse an older wheel."""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from amzkit.app.kaggle_api import KaggleError

REPO_ROOT = Path(__file__).resolve().parents[2]


def _copy_sources(src_root: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in"):
        if (src_root / name).is_file():
            shutil.copy2(src_root / name, dest / name)
    shutil.copytree(src_root / "amzkit", dest / "amzkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


_VERSION_LINE = re.compile(r'^(version\s*=\s*")([^"+]+)(?:\+[^"]*)?(")', re.MULTILINE)
_DUNDER_VERSION = re.compile(r'^(__version__\s*=\s*")([^"]*)(")', re.MULTILINE)


def source_hash(source: str | Path = REPO_ROOT) -> str:
    """The first 8 hex digits of a sha256 over the package's .py files (path and content)."""
    digest = hashlib.sha256()
    for path in sorted((Path(source) / "amzkit").rglob("*.py")):
        digest.update(path.relative_to(source).as_posix().encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()[:8]


def build_version(source: str | Path = REPO_ROOT, when: float | None = None) -> str:
    """'<pyproject version>+<UTC yyyymmddHHMMSS>.<source hash>': later builds compare greater (PEP 440)."""
    match = _VERSION_LINE.search((Path(source) / "pyproject.toml").read_text(encoding="utf-8"))
    if match is None:
        raise KaggleError(f"{Path(source) / 'pyproject.toml'} has no version = \"...\" line")
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(time.time() if when is None else when))
    return f"{match.group(2)}+{stamp}.{source_hash(source)}"


def wheel_version(wheel: str | Path) -> str:
    """The version in a wheel's file name (name-version-python-abi-platform.whl)."""
    return Path(wheel).name.split("-")[1]


def build_wheel(dest: str | Path, source: str | Path = REPO_ROOT, version: str | None = None) -> Path:
    """`pip wheel --no-deps` of amzkit into `dest` from a clean copy, its version stamped with the build
    (`build_version`, also written as amzkit.__version__), so no stale build/ files ride along."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("amzkit-*.whl"):
        old.unlink()
    version = version or build_version(source)
    offline_ok = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
    with tempfile.TemporaryDirectory(prefix="amzkit-wheel-") as tmp:
        src = Path(tmp) / "src"
        _copy_sources(Path(source), src)
        for path, pattern in ((src / "pyproject.toml", _VERSION_LINE), (src / "amzkit" / "__init__.py",
                                                                         _DUNDER_VERSION)):
            text = path.read_text(encoding="utf-8")
            path.write_text(pattern.sub(lambda m: f"{m.group(1)}{version}{m.group(3)}", text, count=1),
                            encoding="utf-8")
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dest.resolve()), str(src)]
        if offline_ok:  # build with this environment's setuptools: no download of build requirements
            cmd.insert(4, "--no-build-isolation")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("amzkit-*.whl"))
    if proc.returncode or not wheels:
        raise KaggleError(f"building the amzkit wheel failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}\n"
                          "Install the build tools into this environment: pip install 'setuptools>=68' wheel")
    return wheels[-1]
