"""Talking to Kaggle: credentials (never printed) and the kaggle CLI, whose wording differs between versions."""

from __future__ import annotations

import importlib.metadata
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
    """Who pushes. The key (or token) is kept out of repr/str and is only used to scrub command output."""

    username: str  # '' when only a token is known (it does not name its user)
    source: str
    key: str = field(repr=False)

    def scrub(self, text: str) -> str:
        return text.replace(self.key, "***") if self.key else text


def _config_dir(home: Path | None, environ: Mapping[str, str]) -> Path:
    if environ.get("KAGGLE_CONFIG_DIR"):
        return Path(environ["KAGGLE_CONFIG_DIR"]).expanduser()
    return (Path(home) if home is not None else Path.home()) / ".kaggle"


TOKEN_FILE = "access_token"  # "Generate New Token" on kaggle.com -> Settings -> API: the token alone
LEGACY_FILE = "kaggle.json"  # the legacy key: {"username": ..., "key": ...}
NEW_TOKEN = "kaggle.com -> Settings -> API -> Generate New Token"


def _check_private(path: Path) -> None:
    mode = path.stat().st_mode & 0o777
    if mode & 0o077:
        warnings.warn(f"{path} is readable by group/others (mode {mode:o}); anyone on this machine can use your "
                      f"Kaggle credentials. Fix it with: chmod 600 {path}", KaggleCredentialsWarning, stacklevel=3)


def _token_from_file(path: Path) -> str:
    _check_private(path)
    token = path.read_text(encoding="utf-8").strip()
    if not token or "\n" in token or token.startswith("{"):
        raise KaggleError(f"{path} must hold only the API token from {NEW_TOKEN} (one line). A legacy "
                          f"{{\"username\", \"key\"}} file belongs in {path.with_name(LEGACY_FILE)}")
    return token


def _legacy_file(path: Path) -> Credentials:
    _check_private(path)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
    except json.JSONDecodeError:
        looks_like_token = text.strip() and "\n" not in text.strip() and "{" not in text
        hint = (f"it looks like an API token from {NEW_TOKEN}: move it to {path.with_name(TOKEN_FILE)} (chmod 600) "
                "or set KAGGLE_API_TOKEN" if looks_like_token else
                f"save the token from {NEW_TOKEN} as {path.with_name(TOKEN_FILE)} instead (chmod 600)")
        raise KaggleError(f"{path} is not valid JSON: {hint}. {LEGACY_FILE} is only for the legacy "
                          "{\"username\", \"key\"} file") from None
    if not (isinstance(data, dict) and data.get("username") and data.get("key")):
        raise KaggleError(f"{path} lacks 'username' or 'key': save the token from {NEW_TOKEN} as "
                          f"{path.with_name(TOKEN_FILE)} instead (chmod 600)")
    return Credentials(str(data["username"]), str(path), str(data["key"]))


def _is_file(value: str) -> bool:
    try:
        return Path(value).expanduser().is_file()
    except (OSError, ValueError):  # a token too long or odd for a path
        return False


def read_credentials(home: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Credentials | None:
    """The credentials the kaggle CLI (2.x) would use, in its order; None when there are none.

    KAGGLE_API_TOKEN (the token, or a file holding it), `<home>/.kaggle/access_token`, KAGGLE_USERNAME +
    KAGGLE_KEY, then the legacy `<home>/.kaggle/kaggle.json`. A token does not name its user: the username is
    KAGGLE_USERNAME's when set, else '' (builds then need --owner). Files readable by others warn.
    """
    env = os.environ if environ is None else environ
    folder = _config_dir(Path(home) if home is not None else None, env)
    user = env.get("KAGGLE_USERNAME", "")
    if env.get("KAGGLE_API_TOKEN"):
        value = env["KAGGLE_API_TOKEN"]
        token = _token_from_file(Path(value)) if _is_file(value) else value.strip()
        return Credentials(user, "KAGGLE_API_TOKEN", token)
    for name in (TOKEN_FILE, f"{TOKEN_FILE}.txt"):
        if (folder / name).is_file():
            return Credentials(user, str(folder / name), _token_from_file(folder / name))
    if user and env.get("KAGGLE_KEY"):
        return Credentials(user, "KAGGLE_USERNAME/KAGGLE_KEY", env["KAGGLE_KEY"])
    if (folder / LEGACY_FILE).is_file():
        return _legacy_file(folder / LEGACY_FILE)
    return None


def credentials_help(folder: Path) -> str:
    """Which file to create for which token."""
    return (f"Create a token on {NEW_TOKEN} and save it, alone on one line, as {folder / TOKEN_FILE} "
            f"(chmod 600), or export KAGGLE_API_TOKEN=<token>. A legacy key (kaggle.json with username and key) "
            f"goes in {folder / LEGACY_FILE} (chmod 600), or export KAGGLE_USERNAME and KAGGLE_KEY.")


def require_credentials(home: str | Path | None = None, environ: Mapping[str, str] | None = None) -> Credentials:
    """Credentials, or an error that says how to provide them."""
    creds = read_credentials(home, environ)
    if creds is None:
        env = os.environ if environ is None else environ
        raise KaggleError("no Kaggle credentials. " + credentials_help(
            _config_dir(Path(home) if home is not None else None, env)))
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


MIN_CLI_VERSION = (2, 2, 2)  # older 2.x CLIs fetch one page of a kernel's outputs: a fetch is cut short. (No 2.x
# CLI asks for the version in `kernels status|output <id>/<version>`: it reports the latest run; kaggle_push guards)


def check_cli_version(installed: str | None = None) -> None:
    """Refuse a kaggle package older than MIN_CLI_VERSION in this Python (a CLI installed elsewhere is not seen)."""
    if installed is None:
        try:
            installed = importlib.metadata.version("kaggle")
        except importlib.metadata.PackageNotFoundError:
            return
    parts = [int(p) for p in re.findall(r"\d+", installed)[:3]]
    if tuple(parts + [0] * (3 - len(parts))) < MIN_CLI_VERSION:
        wanted = ".".join(map(str, MIN_CLI_VERSION))
        raise KaggleError(f"kaggle CLI {installed} is too old: before {wanted} it downloads one page of a kernel's "
                          f"outputs (a fetch is cut short). Upgrade it: pip install -U 'kaggle>={wanted}'")


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


# An HTTP error in the CLI's wordings: "401 - Unauthorized" (1.x), "401 Client Error: Unauthorized for url: ..."
# (2.x, a requests traceback), '{"code":429,"message":"TooManyRequests"}' (the API's JSON), "(403)\nReason: Forbidden".
_HTTP_STATUS = re.compile(r"\b([45]\d\d)(?:\s+-\s+[A-Z]|\s+(?:Client|Server) Error\b)|\"code\"\s*:\s*([45]\d\d)\b"
                          r"|\(([45]\d\d)\)\s*Reason\b")

HTTP_HINTS: dict[int, str] = {
    401: "Kaggle refused the credentials (HTTP 401 Unauthorized): the token or key is wrong, expired or revoked. "
         f"Create a new one on {NEW_TOKEN} and save it as before (nothing else needs to change)",
    403: "Kaggle refused the request (HTTP 403 Forbidden): the build's owner must be the account the credentials "
         "belong to (rebuild with --owner <your username>), every source one that account can see (a competition "
         "joined, its rules accepted), and a GPU or internet kernel needs a phone-verified account",
    404: "Kaggle found no such kernel or dataset (HTTP 404 Not Found): check the build's owner (--owner) and the "
         "ids in the kernels' metadata",
    409: "Kaggle reports a conflict (HTTP 409 Conflict): a kernel or dataset of that id or title exists already in a "
         "form the request clashes with; open it on kaggle.com (rename the kernels with --prefix if the name is "
         "taken)",
    429: "Kaggle is limiting the account's requests (HTTP 429 Too Many Requests): wait a few minutes before trying "
         "again",
}


def http_status(proc: subprocess.CompletedProcess) -> int | None:
    """The HTTP error status the CLI's output reports (the last one), or None."""
    codes = [int(next(g for g in m.groups() if g)) for m in _HTTP_STATUS.finditer(proc.stdout + "\n" + proc.stderr)]
    return codes[-1] if codes else None


def http_hint(proc: subprocess.CompletedProcess) -> str:
    """What the HTTP error in the CLI's output means and what to do, as ': <hint>'; '' when it names none known."""
    hint = HTTP_HINTS.get(http_status(proc) or 0)
    return f": {hint}" if hint else ""


RETRY_STATUSES = {429, 502, 503, 504}  # a rate limit or an unavailable server: the request did not run
RETRY_WAITS_S = (60.0, 180.0, 600.0)  # the waits before each new try of a command Kaggle answered so


def call_retrying(cli: KaggleCLI, args: list[str], sleep: Callable[[float], None] = time.sleep,
                  waits: Sequence[float] = RETRY_WAITS_S, quiet: bool = False) -> subprocess.CompletedProcess:
    """Run a kaggle command (a push or an upload), again after each of `waits` while Kaggle answers it with a rate
    limit (429) or an unavailable server (502-504); the last answer is returned, as it came."""
    proc = cli(args, quiet=quiet)
    for wait in waits:
        status = http_status(proc)
        if cli.dry_run or status not in RETRY_STATUSES:
            break
        cli.echo(f"Kaggle answered HTTP {status}: trying `{_command_line(args)}` again in {wait:.0f} s")
        sleep(wait)
        proc = cli(args, quiet=quiet)
    return proc


# `kaggle kernels push` prints these and still pushes: the kernel would run without the named inputs.
_INVALID_SOURCES = re.compile(r"^.*\bnot valid (?:dataset|competition|kernel|model) sources\b.*$",
                              re.IGNORECASE | re.MULTILINE)


def invalid_sources(proc: subprocess.CompletedProcess) -> list[str]:
    """The CLI's lines saying a source of the kernel is not valid (each names the sources)."""
    return [m.group(0).strip() for m in _INVALID_SOURCES.finditer(proc.stdout + "\n" + proc.stderr)]


_PUSHED_VERSION = re.compile(r"kernel version (\d+) successfully", re.IGNORECASE)
# A push over the account's concurrent sessions is refused ("Kernel push error: Maximum batch GPU session count
# of 2 reached"), not queued: the pusher waits for one of its own kernels to end and pushes again.
_SESSION_LIMIT = re.compile(r"maximum batch \w* ?session count", re.IGNORECASE)


def session_limit_reached(proc: subprocess.CompletedProcess) -> bool:
    """Whether `kaggle kernels push` was refused because the account's concurrent sessions are all taken."""
    return bool(_SESSION_LIMIT.search(proc.stdout + "\n" + proc.stderr))


def pushed_version(proc: subprocess.CompletedProcess) -> int | None:
    """The version number `kaggle kernels push` reports creating, or None when it names none."""
    match = _PUSHED_VERSION.search(proc.stdout + "\n" + proc.stderr)
    return int(match.group(1)) if match else None


STALE_GRACE_S = 600.0  # unversioned polls: a final status before any queued/running is the previous run's


def wait_for(cli: KaggleCLI, args: list[str], what: str, poll_interval: float, timeout: float,
             sleep: Callable[[float], None] = time.sleep, stale_guard: bool = False,
             stale_grace: float = STALE_GRACE_S, clock: Callable[[], float] = time.monotonic,
             fallback: list[str] | None = None) -> str:
    """Poll a `kaggle ... status` command until a final status; returns it (raises on timeout).

    With `stale_guard` (the status of a kernel's latest version, polled right after a push) a final status
    counts only after a queued/running one was seen, or once `stale_grace` seconds have passed: until the new
    run registers, the CLI may still report the previous version's COMPLETE. When the first poll fails and a
    `fallback` command is given (an older CLI that cannot ask for one version), that one is polled instead,
    with the stale guard on.
    """
    started, last, fresh = clock(), None, not stale_guard
    first = True
    while True:
        proc = cli(args, quiet=True)
        if first and fallback is not None and proc.returncode:
            cli.echo(f"`{_command_line(args)}` failed ({(proc.stdout + proc.stderr).strip()[:200]}): polling "
                     f"`{_command_line(fallback)}` and ignoring a final status until the new run shows up")
            args, fresh = fallback, False
            proc = cli(args, quiet=True)
        first = False
        if proc.returncode and http_status(proc) in (401, 403):  # credentials refused: no later poll will do better
            raise KaggleError(f"{what}: Kaggle refused `{_command_line(args)}`{http_hint(proc)}. The kernel runs on "
                              "regardless: check it on kaggle.com, then re-run with --stages for the remaining stages")
        status = normalise_status(proc.stdout + " " + proc.stderr) if not proc.returncode else "unknown"
        if status in ("queued", "running"):
            fresh = True
        stale = status in FINAL_STATUSES and not fresh and clock() - started < stale_grace
        shown = f"{status} (the previous run's; waiting for the new one)" if stale else status
        if shown != last:
            cli.echo(f"{what}: {shown}" + ("" if status != "unknown" else f" ({(proc.stdout + proc.stderr).strip()})"))
            last = shown
        if status in FINAL_STATUSES and not stale:
            return status
        if clock() - started > timeout:
            raise KaggleError(f"{what} still {status} after {timeout:.0f} s: check it on kaggle.com, then re-run "
                              "with --stages for the remaining stages (or a larger --timeout)")
        sleep(poll_interval)
