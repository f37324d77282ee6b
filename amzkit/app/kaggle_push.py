"""`kaggle push` and `kaggle fetch`: upload a build's wheel dataset and kernels in stage order, wait for the very
versions pushed, and bring a stage's outputs back (checked against the listing each kernel writes)."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from amzkit.app.kaggle import DEFAULT_BUILD, PLAN_FILE, _stage_name, load_plan
from amzkit.app.kaggle_api import (
    RETRY_STATUSES,
    KaggleCLI,
    KaggleError,
    Runner,
    call_retrying,
    check_cli_version,
    credentials_help,
    failed,
    http_hint,
    http_status,
    invalid_sources,
    pushed_version,
    read_credentials,
    require_credentials,
    run_kaggle,
    session_limit_reached,
    wait_for,
)
from amzkit.app.kaggle_outputs import OUTPUT_LISTING, check_fetched, check_listed
from amzkit.core.io import read_json, write_json
from amzkit.core.workdir import STAGES

PUSHED_FILE = "pushed.json"  # per kernel id: the version the last push created, when, and its final status


def _record(build_dir: Path, kernel_id: str, **values: Any) -> None:
    path = build_dir / PUSHED_FILE
    pushed = read_json(path) if path.is_file() else {}
    pushed[kernel_id] = {**pushed.get(kernel_id, {}), **values}
    write_json(path, pushed)


def pushed_versions(build_dir: str | Path = DEFAULT_BUILD) -> dict[str, dict[str, Any]]:
    """{kernel id: {"version": N, "pushed_at": ..., "status": ...}} of the pushes from this build folder."""
    path = Path(build_dir) / PUSHED_FILE
    return read_json(path) if path.is_file() else {}


def push(build_dir: str | Path = DEFAULT_BUILD, stages: Sequence[str] | None = None, dry_run: bool = False,
         wait: bool = False, poll_interval: float = 60.0, timeout: float = 12 * 3600.0, message: str = "",
         skip_dataset: bool = False, home: str | Path | None = None, environ: dict[str, str] | None = None,
         runner: Runner = run_kaggle, sleep: Callable[[float], None] = time.sleep,
         echo: Callable[[str], None] = print) -> dict[str, str]:
    """Push the wheel dataset, then each kernel in stage order; with `wait`, each runs to the end before the
    kernels that read it are pushed (a stage reads its predecessors' finished outputs), and kernels that read
    nothing of each other (01's shard kernels) run at once. Returns {kernel id: final status}.

    A push whose output says a source is not valid stops here with that message (the kernel would run without
    its data). The version each push creates is recorded in pushed.json and its own status is polled, so an
    earlier version's COMPLETE is never taken for the new run's.
    """
    build_dir = Path(build_dir)
    plan = load_plan(build_dir)
    wanted = {_stage_name(s) for s in stages} if stages else set(STAGES)
    kernels = [k for k in plan["kernels"] if k["stage"] in wanted]
    absent = sorted(wanted - {k["stage"] for k in plan["kernels"]}) if stages else []
    if not kernels or absent:
        raise KaggleError(f"no kernels of stages {absent or sorted(wanted)} in {build_dir / PLAN_FILE}: rebuild with "
                          "them (kaggle build --stages names every stage to push)")
    if len(kernels) > 1 and not wait and not dry_run:
        raise KaggleError("pushing several chained kernels needs --wait: each stage reads the finished outputs of "
                          "the one before. Pass --wait, or push one stage at a time with --stages.")
    if dry_run:
        creds = read_credentials(home, environ)
        if creds is None:
            echo("note: no Kaggle credentials found; a real push needs them. "
                 + credentials_help(Path(home or Path.home()) / ".kaggle"))
    else:
        check_cli_version()
        creds = require_credentials(home, environ)
        if creds.username and creds.username != plan["owner"]:
            raise KaggleError(f"the build is for owner {plan['owner']!r} but the credentials are {creds.username!r}'s:"
                              f" rebuild with --owner {creds.username}")
    cli = KaggleCLI(creds, dry_run, runner, echo)
    results: dict[str, str] = {}
    dataset_dir = build_dir / plan["dataset"]["folder"]
    wheels = sorted(p.name for p in dataset_dir.glob("*.whl"))
    echo(f"wheel dataset {plan['dataset']['id']} ({dataset_dir}): {', '.join(wheels) or 'NO WHEEL'}")
    if not skip_dataset:
        _push_dataset(cli, dataset_dir, plan["dataset"]["id"], message, poll_interval, timeout, sleep)

    def wait_until_ended(kernel: dict, versions: dict[str, int | None]) -> None:
        """Poll a pushed kernel (its version leaves `versions`) until it ends; record its status."""
        if dry_run:
            cli(["kernels", "status", f"{kernel['id']}/<version>"], comment="the pushed version, until it ends")
            return
        status = _wait_kernel(cli, kernel["id"], versions.pop(kernel["id"]), poll_interval, timeout, sleep)
        _record(build_dir, kernel["id"], status=status)
        results[kernel["id"]] = status

    for wave, later in _waves(kernels) if wait else [(kernels, [])]:
        remaining = ",".join(dict.fromkeys(k["stage"] for k in wave + later))
        versions: dict[str, int | None] = {}
        for kernel in wave:  # the wave's kernels run at once, as many as the account's sessions allow
            while (pushed := _push_kernel(cli, build_dir, kernel, remaining, dry_run, sleep)) is _SESSIONS_TAKEN:
                running = [k for k in wave if k["id"] in versions]
                if not wait or not running:
                    raise KaggleError(f"pushing {kernel['id']}: every session of the account is taken (Kaggle's "
                                      "'Maximum batch session count'); stop a running kernel or wait, then re-run "
                                      f"with --stages {remaining}")
                cli.echo(f"{kernel['id']}: the account's sessions are all taken; waiting for {running[0]['id']}")
                wait_until_ended(running[0], versions)
            versions[kernel["id"]] = pushed
            results[kernel["id"]] = "dry-run" if dry_run else "pushed"
        if not wait:
            continue
        for kernel in [k for k in wave if k["id"] in versions]:
            wait_until_ended(kernel, versions)
        ended = [k for k in wave if results[k["id"]] not in ("complete", "dry-run")]
        if ended:
            raise KaggleError(f"kernel {ended[0]['id']} ended {results[ended[0]['id']]}: read its log with "
                              f"`python -m amzkit kaggle fetch {ended[0]['stage']}` (or on kaggle.com), fix it, and "
                              f"re-run with --stages {remaining}")
    return results


def _waves(kernels: list[dict]) -> list[tuple[list[dict], list[dict]]]:
    """The kernels in waves, in plan order: a wave holds each kernel whose kernel_sources among `kernels` have all
    run in earlier waves (01's shard kernels together, then the kernel merging them); with each, the later ones."""
    pushed = {k["id"] for k in kernels}
    done: set[str] = set()
    pending, waves = list(kernels), []
    while pending:
        wave = [k for k in pending if all(s in done or s not in pushed for s in k.get("kernel_sources", []))]
        wave = wave or pending[:1]  # a plan is in stage order, so this cannot be empty; never loop forever
        pending = [k for k in pending if k not in wave]
        waves.append((wave, pending))
        done |= {k["id"] for k in wave}
    return waves


_SESSIONS_TAKEN = object()  # _push_kernel's answer when Kaggle refused the push: every session is taken


def _push_kernel(cli: KaggleCLI, build_dir: Path, kernel: dict, remaining: str, dry_run: bool,
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    """Push one kernel folder (again after a wait while Kaggle answers 429 or 502-504) and record the version the
    push created (None in a dry run or when unnamed); _SESSIONS_TAKEN when Kaggle refused it because the
    account's concurrent sessions are all taken."""
    proc = call_retrying(cli, ["kernels", "push", "-p", str(build_dir / kernel["folder"])], sleep)
    if dry_run:
        return None
    if session_limit_reached(proc):
        return _SESSIONS_TAKEN
    invalid = invalid_sources(proc)
    if invalid:
        raise KaggleError(f"pushing {kernel['id']}: {' / '.join(invalid)}. The kernel cannot read its inputs: "
                          "fix the source (--data <owner>/<dataset> must be a dataset you can see, --competition "
                          f"a competition you joined), rebuild, and re-run with --stages {remaining}")
    if failed(proc, ("successfully pushed",)):
        raise KaggleError(f"pushing {kernel['id']} failed (output above){http_hint(proc)}; fix it and re-run with "
                          f"--stages {remaining}")
    version = pushed_version(proc)
    _record(build_dir, kernel["id"], version=version, pushed_at=time.strftime("%Y-%m-%dT%H:%M:%S"), status="pushed")
    return version


def _wait_kernel(cli: KaggleCLI, kernel_id: str, version: int | None, poll_interval: float, timeout: float,
                 sleep: Callable[[float], None]) -> str:
    """Poll `<id>/<version>` (the version the push created; `<id>` when the push named none). kaggle 2.2.x parses
    the version but asks for the kernel's latest session all the same, which right after a re-push may still be the
    previous run's: after version 1 a final status counts only once the new run was seen queued or running."""
    if version is None:
        cli.echo(f"{kernel_id}: the push named no version; polling the latest version's status (an earlier run's "
                 "final status is ignored until the new run shows up)")
        return wait_for(cli, ["kernels", "status", kernel_id], kernel_id, poll_interval, timeout, sleep,
                        stale_guard=True)
    return wait_for(cli, ["kernels", "status", f"{kernel_id}/{version}"], f"{kernel_id} version {version}",
                    poll_interval, timeout, sleep, stale_guard=version > 1, fallback=["kernels", "status", kernel_id])


def _push_dataset(cli: KaggleCLI, folder: Path, dataset_id: str, message: str, poll_interval: float,
                  timeout: float, sleep: Callable[[float], None]) -> None:
    """`datasets version` when the dataset exists, else `datasets create` (`-r zip` keeps sub-folders); then poll
    it until Kaggle has processed the upload, with or without --wait: a kernel pushed before would mount the
    previous version, and its install cell refuses that older amzkit."""
    message = message or f"amzkit wheel {time.strftime('%Y-%m-%d %H:%M')}"
    if cli.dry_run:
        cli(["datasets", "status", dataset_id], comment="does it exist?")
        cli(["datasets", "create", "-p", str(folder), "-r", "zip"], comment="the first time")
        cli(["datasets", "version", "-p", str(folder), "-r", "zip", "-m", message], comment="afterwards")
        cli(["datasets", "status", dataset_id], comment="until the upload is ready, before any kernel is pushed")
        return
    status = call_retrying(cli, ["datasets", "status", dataset_id], sleep, quiet=True)
    text = (status.stdout + status.stderr).lower()
    if http_status(status) in RETRY_STATUSES:  # not an answer about the dataset: creating it again would fail
        raise KaggleError(f"asking whether the wheel dataset {dataset_id} exists failed: "
                          f"{(status.stdout + status.stderr).strip()[-500:]}{http_hint(status)}")
    exists = status.returncode == 0 and not any(w in text for w in ("404", "not found", "does not exist"))
    if exists:
        proc = call_retrying(cli, ["datasets", "version", "-p", str(folder), "-r", "zip", "-m", message], sleep)
    else:
        proc = call_retrying(cli, ["datasets", "create", "-p", str(folder), "-r", "zip"], sleep)
    if failed(proc, ("successfully", "being created", "is being", "upload successful")):
        raise KaggleError(f"uploading the wheel dataset {dataset_id} failed (output above){http_hint(proc)}")
    final = wait_for(cli, ["datasets", "status", dataset_id], dataset_id, poll_interval, timeout, sleep)
    if final != "complete":
        raise KaggleError(f"dataset {dataset_id} ended {final}: open it on kaggle.com to see why")


def fetch(stage: str, build_dir: str | Path = DEFAULT_BUILD, out: str | Path | None = None, dry_run: bool = False,
          home: str | Path | None = None, environ: dict[str, str] | None = None, runner: Runner = run_kaggle,
          echo: Callable[[str], None] = print) -> list[Path]:
    """Download the outputs (and log) of every kernel of `stage` into `<out>/<kernel-slug>/`: the version the last
    push created (pushed.json), else the latest; then check every file the kernel listed arrived."""
    stage = _stage_name(stage)
    plan = load_plan(build_dir)
    kernels = [k for k in plan["kernels"] if k["stage"] == stage]
    if not kernels:
        raise KaggleError(f"no {stage} kernel in {Path(build_dir) / PLAN_FILE}: build it first")
    if not dry_run:
        check_cli_version()
    creds = read_credentials(home, environ) if dry_run else require_credentials(home, environ)
    cli = KaggleCLI(creds, dry_run, runner, echo)
    out = Path(out) if out else Path(build_dir) / "outputs"
    pushed = pushed_versions(build_dir)
    folders = []
    for kernel in kernels:
        folder = out / kernel["folder"]
        record = pushed.get(kernel["id"], {})
        version = record.get("version")
        ref = f"{kernel['id']}/{version}" if version else kernel["id"]
        arriving = folder.with_name(folder.name + ".fetching")  # never mixed with an earlier fetch's files
        if not dry_run:
            shutil.rmtree(arriving, ignore_errors=True)
            arriving.mkdir(parents=True)
        proc = cli(["kernels", "output", ref, "-p", str(arriving if not dry_run else folder)])
        if not dry_run:
            if proc.returncode:
                raise KaggleError(f"downloading the outputs of {ref} failed (output above){http_hint(proc)}")
            ended = record.get("status", "")
            how = f" (the push recorded it ended {ended!r}: its log is in {arriving})" if ended not in (
                "", "pushed", "complete") else ""
            if not check_listed(arriving):
                raise KaggleError(f"{ref}: no {OUTPUT_LISTING} arrived in {arriving}{how}: the kernel stopped before "
                                  "listing its outputs, or the download was cut short; read the log, or fetch again")
            missing = check_fetched(arriving)
            if missing:
                raise KaggleError(f"{ref}: {len(missing)} of the files the kernel wrote did not arrive in {arriving} "
                                  f"(first: {missing[:3]}){how}; fetch again, or download them from the kernel's page")
            shutil.rmtree(folder, ignore_errors=True)  # the earlier fetch gives way only to a whole new one
            arriving.rename(folder)
        folders.append(folder)
    return folders
