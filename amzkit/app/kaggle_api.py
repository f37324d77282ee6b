"""Talking to Kaggle: credentials (never printed) and the kaggle CLI, whose wording differs between versions."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path


class KaggleError(RuntimeError):
    """A Kaggle step that cannot go on; the message says what to do."""


class KaggleCredentialsWarning(UserWarning):
    """The Kaggle token file is readable by other users."""


@dataclass(frozen=True)
class Credentials:
    """Who pushes. The key is kept out of repr/str and is only used to scrub command output."""

    username: str
    source: str
    key: str = field(repr=False)

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text


def _config_dir(home: Path | None, environ: Mapping[str, str]) -> Path:
    if environ.get("KAGGLE_CONFIG_DIR"):
        return Path(environ["KAGGLE_CONFIG_DIR"]).expanduser()
    return (Path(home) if home is not None else Path.home()) / ".kaggle"


def read_credentials(home: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """KAGGLE_USERNAME/KAGGLE_KEY, else `<home>/.kaggle/kaggle.json` (warns when group/others can read it)."""
    env = os.environ if environ is None else environ
    if env.get("KAGGLE_USERNAME") and env.get("KAGGLE_KEY"):
        return Credentials(env["KAGGLE_USERNAME"], "KAGGLE_USERNAME/KAGGLE_KEY", env["KAGGLE_KEY"])
    path = _config_dir(Path(home) if home is not None else None, env) / "kaggle.json"
    if path.is_file():
        mode = path.stat().st_mode & 0o777
        if mode & 0o077:
            warnings.warn(f"{path} is readable by group/others (mode {mode:o}); anyone on this machine can use "
                          f"your Kaggle key. Fix it with: chmod 600 {path}", KaggleCredentialsWarning, stacklevel=2)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError:
            raise KaggleError(f"{path} is not valid JSON: download a new token (kaggle.com -> Settings -> "
                              "API -> Create New Token) and save it there") from None
        if not (isinstance(data, dict) and data.get("username") and data.get("key")):
            raise KaggleError(f"{path} lacks 'username' or 'key': download a new token (kaggle.com -> Settings -> "
                              "API -> Create New Token)")
        return Credentials(str(data["username"]), str(path), str(data["key"]))
    if env.get("KAGGLE_API_TOKEN"):
        return Credentials(env.get("KAGGLE_USERNAME", ""), "KAGGLE_API_TOKEN", env["KAGGLE_API_TOKEN"])
    return None


def require_credentials(home: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Credentials:
    """Credentials, or an error that says how to provide them."""
    creds = read_credentials(home, environ)
    if creds is None:
        where = _config_dir(Path(home) if home is not None else None, os.environ if environ is None else environ)
        raise KaggleError(
            "no Kaggle credentials: set KAGGLE_USERNAME and KAGGLE_KEY, or save the token from kaggle.com -> "
            f"Settings -> API -> Create New Token as {where / 'kaggle.json'} and run chmod 600 on it"
        )
    return creds


# Kernel/dataset status words of the CLI versions seen (`has status "complete"`, `KernelWorkerStatus.COMPLETE`,
# `status: running`, `cancelAcknowledged`, dataset `ready`), letters only, lower case -> the normalised status.
STATUS_WORDS: dict[str, str] = {
    "queued": "queued", "new": "queued", "newscript": "queued", "pending": "queued",
    "running": "running", "inprogress": "running",
    "complete": "complete", "completed": "complete", "ready": "complete", "success": "complete",
    "error": "error", "failed": "error", "failure": "error",
    "cancelrequested": "cancelled", "cancelacknowledged": "cancelled", "cancelled": "cancelled",
    "canceled": "cancelled",
}


FINAL_STATUSES = {"complete", "error", "cancelled"}


_STATUS_RE = re.compile(r"(?:\bhas status|\bstatus\s*[:=])\s*[\"']?(?:\w*Status\.)?([A-Za-z_]+)", re.IGNORECASE)


def normalise_status(text: str) -> str:
    """queued / running / complete / error / cancelled from any CLI wording; 'unknown' when none fits."""
    candidates = [m.group(1) for m in _STATUS_RE.finditer(text)] + [text.strip().rsplit(".", 1)[-1]]
    for word in candidates:
        key = re.sub(r"[^a-z]", "", word.lower())
        if key in STATUS_WORDS:
            return STATUS_WORDS[key]
    return "unknown"


Runner = Callable[[list[str]], subprocess.CompletedProcess]


def run_kaggle(args: list[str]) -> subprocess.CompletedProcess:
    """Run `kaggle <args>` (the CLI on PATH) and capture its output."""
    exe = shutil.which("kaggle")
    if exe is None:
        raise KaggleError("the kaggle CLI is not on PATH: pip install kaggle (it reads the same credentials)")
    return subprocess.run([exe, *args], capture_output=True, text=True, check=False)


def _command_line(args: Sequence[str]) -> str:
    return "kaggle " + " ".join(shlex.quote(a) for a in args)


class KaggleCLI:
    """Runs kaggle commands (or prints them when dry), printing their output with the key scrubbed."""

    def __init__(self, creds: Credentials | None, dry_run: bool = False, runner: Runner = run_kaggle,
                 echo: Callable[[str], None] = print) -> None:
        self.creds, self.dry_run, self.runner, self.echo = creds, dry_run, runner, echo

    def _scrub(self, text: str) -> str:
        return self.creds.scrub(text) if self.creds else text

    def __call__(self, args: list[str], quiet: bool = False, comment: str = "") -> subprocess.CompletedProcess:
        note = f"   # {comment}" if comment else ""
        self.echo(("(dry run) " if self.dry_run else "$ ") + _command_line(args) + note)
        if self.dry_run:
            return subprocess.CompletedProcess(args, 0, "", "")
        proc = self.runner(args)
        proc = subprocess.CompletedProcess(proc.args, proc.returncode, self._scrub(proc.stdout or ""),
                                           self._scrub(proc.stderr or ""))
        if not quiet:
            for text in (proc.stdout, proc.stderr):
                if text.strip():
                    self.echo(text.rstrip())
        return proc


def failed(proc: subprocess.CompletedProcess, success_words: Sequence[str] = ()) -> bool:
    """The CLI sometimes exits 0 after printing an error: look at the words too."""
    text = (proc.stdout + proc.stderr).lower()
    if proc.returncode:
        return True
    if success_words and any(w in text for w in success_words):
        return False
    return "error" in text or "invalid" in text


def wait_for(cli: KaggleCLI, args: list[str], what: str, poll_interval: float, timeout: float,
             sleep: Callable[[float], None] = time.sleep) -> str:
    """Poll a `kaggle ... status` command until a final status; returns it (raises on timeout)."""
    started, last = time.monotonic(), None
    while True:
        proc = cli(args, quiet=True)
        status = normalise_status(proc.stdout + " " + proc.stderr) if not proc.returncode else "unknown"
        if status != last:
            cli.echo(f"{what}: {status}" + ("" if status != "unknown" else f" ({(proc.stdout + proc.stderr).strip()})"))
            last = status
        if status in FINAL_STATUSES:
            return status
        if time.monotonic() - started > timeout:
            raise KaggleError(f"{what} still {status} after {timeout:.0f} s: check it on kaggle.com, then re-run "
                              "with --stages for the remaining stages (or a larger --timeout)")
        sleep(poll_interval)
