"""From the notebooks to Kaggle kernels: `kaggle build` writes one folder per kernel plus a wheel dataset;
`kaggle push` uploads them in stage order and waits; `kaggle fetch` brings a kernel's outputs back."""

from __future__ import annotations

import importlib.util
import json
import re
import shutil
import subprocess
import sys
import tempfile
import time
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import yaml

from amzkit.app.kaggle_api import (
    KaggleCLI,
    KaggleError,
    Runner,
    failed,
    read_credentials,
    require_credentials,
    run_kaggle,
    wait_for,
)
from amzkit.app.kaggle_runtime import INSTALL_CELL, KERNELS
from amzkit.app.parameters import check_parameters, stage_parameters
from amzkit.core.io import write_json
from amzkit.core.workdir import STAGES

REPO_ROOT = Path(__file__).resolve().parents[2]


NOTEBOOKS_DIR = REPO_ROOT / "notebooks"


TEMPLATE = REPO_ROOT / "kernel-metadata.json"


DEFAULT_BUILD = Path("build/kaggle")


PLAN_FILE = "plan.json"


WHEEL_DATASET = "amzkit-wheel"


PLACEHOLDER_OWNER = "your-kaggle-username"


# A stage with several kernels (a list of parameter sets) names them by this parameter, else by position.
VARIANT_KEY = {"01_extract": "model", "03_train": "run_name"}


# Packages a Kaggle image may lack, fetched with `kaggle build --with-deps` (pure-python wheels).
KAGGLE_EXTRA_DEPS: tuple[str, ...] = ("open_clip_torch", "ftfy")


def slugify(text: str) -> str:
    """Kaggle's slug of a title: ASCII, lower case, apostrophes dropped, other non-alphanumerics to one '-'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"['\u2019]", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def stage_title(stage: str, prefix: str = "amzkit", variant: str = "") -> str:
    """'amzkit 01 extract' (+ ' <variant>'): the title that slugifies to the kernel's slug."""
    return " ".join(part for part in (prefix, stage.replace("_", " "), variant) if part)


def check_kernel_metadata(meta: Mapping[str, Any], folder: str | Path, stage: str | None = None) -> list[str]:
    """Every rule of the facts file that `meta` (read from `folder`) breaks; [] when it is a valid kernel."""
    problems = []
    kernel_id = str(meta.get("id", ""))
    owner, _, slug = kernel_id.partition("/")
    title = str(meta.get("title", ""))
    if not owner or not slug or "/" in slug:
        problems.append(f"id {kernel_id!r} must be 'owner/slug'")
    if len(slug) < 5:
        problems.append(f"slug {slug!r} is shorter than 5 characters")
    if len(title) < 5:
        problems.append(f"title {title!r} is shorter than 5 characters")
    if slugify(title) != slug:
        problems.append(f"title {title!r} slugifies to {slugify(title)!r}, not the id's slug {slug!r}")
    code_file = meta.get("code_file")
    if not code_file or not (Path(folder) / str(code_file)).is_file():
        problems.append(f"code_file {code_file!r} is not a file in {folder}")
    if meta.get("language") != "python":
        problems.append(f"language must be 'python', got {meta.get('language')!r}")
    if meta.get("kernel_type") != "notebook":
        problems.append(f"kernel_type must be 'notebook', got {meta.get('kernel_type')!r}")
    for name in ("is_private", "enable_gpu", "enable_internet"):
        if not isinstance(meta.get(name), bool):
            problems.append(f"{name} must be written explicitly as true/false, got {meta.get(name)!r}")
    if "machine_shape" not in meta:
        problems.append("machine_shape must be written explicitly (null for CPU)")
    if "docker_image" in meta:
        problems.append("docker_image must not be set (a pinned image overrides the accelerator request)")
    for name in ("dataset_sources", "competition_sources", "kernel_sources", "model_sources"):
        if not isinstance(meta.get(name, []), list):
            problems.append(f"{name} must be a list")
    if stage is not None:
        spec = KERNELS[stage]
        wanted = {"enable_gpu": spec.enable_gpu, "enable_internet": spec.enable_internet,
                  "machine_shape": spec.machine_shape}
        for name, value in wanted.items():
            if meta.get(name, "absent") != value:
                problems.append(f"{name} is {meta.get(name, 'absent')!r}; stage {stage} runs with {value!r}")
        if not str(code_file).endswith(f"{stage}.ipynb"):
            problems.append(f"code_file {code_file!r} is not the {stage} notebook")
    return problems


def load_template(path: str | Path = TEMPLATE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise KaggleError(f"{path} is missing: run `python -m amzkit kaggle build` from the amzkit repository")
    return json.loads(path.read_text(encoding="utf-8"))


def _stage_name(key: str) -> str:
    """'03_train' or '03' -> '03_train'; anything else is an error naming the stages."""
    for stage in STAGES:
        if key in (stage, stage.split("_", 1)[0]):
            return stage
    raise ValueError(f"unknown stage {key!r}; stages are {list(STAGES)} (or their numbers 01..05)")


def check_stage_params(stage: str, given: Mapping[str, Any]) -> dict[str, Any]:
    """The given values coerced to the defaults' types; unknown names refused as the notebooks' guard does."""
    defaults = stage_parameters(stage)
    namespace = {**defaults, **given}
    values = vars(check_parameters(namespace, stage))  # raises on unknown names, with a did-you-mean hint
    unknown = sorted(set(given) - set(defaults))
    if unknown:  # names the guard skips (leading '_', non-literal values) are unknown all the same
        raise ValueError(f"unknown parameter {unknown} for notebook {stage}; its parameters are {sorted(defaults)}")
    return {name: values[name] for name in given}


def load_params_file(path: str | Path) -> dict[str, list[dict[str, Any]]]:
    """Per-stage parameters from YAML or JSON: `{stage: {name: value}}`, or a list of such dicts per stage to
    build several kernels of that stage (e.g. two 03_train runs that 04_ensemble blends)."""
    path = Path(path)
    text = path.read_text(encoding="utf-8")
    if path.suffix == ".json":
        data = json.loads(text)
    else:
        data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map stage names to parameters, e.g. {{'03_train': {{'run_name': 'x'}}}}")
    out: dict[str, list[dict[str, Any]]] = {}
    for key, value in data.items():
        stage = _stage_name(str(key))
        variants = value if isinstance(value, list) else [value or {}]
        if not variants or not all(isinstance(v, dict) for v in variants):
            raise ValueError(f"{path}: {key} must be a mapping of parameters or a list of mappings")
        out[stage] = [dict(v) for v in variants]
    return out


def parse_cli_params(items: Sequence[str]) -> dict[str, dict[str, str]]:
    """`-p stage.name=value` items -> {stage: {name: value}} (values are coerced later to the defaults' types)."""
    out: dict[str, dict[str, str]] = {}
    for item in items:
        key, sep, value = item.partition("=")
        stage, dot, name = key.partition(".")
        if not sep or not dot or not name:
            raise ValueError(f"-p {item!r}: write stage.name=value, e.g. -p 03_train.run_name=siglip")
        out.setdefault(_stage_name(stage.strip()), {})[name.strip()] = value
    return out


@dataclass
class KernelPlan:
    """One kernel of the build: which stage, its id and folder, its baked parameters and sources."""

    stage: str
    id: str
    title: str
    folder: str
    params: dict[str, Any]
    kernel_sources: list[str]


@dataclass
class BuildResult:
    out: Path
    owner: str
    dataset_id: str
    dataset_dir: Path
    wheel: Path
    kernels: list[KernelPlan]


def _resolve_owner(owner: str | None, template: Mapping[str, Any], home: str | Path | None,
                   environ: Mapping[str, str] | None) -> str:
    if owner:
        return owner
    creds = read_credentials(home, environ)
    if creds is not None and creds.username:
        return creds.username
    template_owner = str(template.get("id", "")).partition("/")[0]
    if template_owner and template_owner != PLACEHOLDER_OWNER:
        return template_owner
    raise KaggleError("no Kaggle owner: pass --owner <your-kaggle-username>, set KAGGLE_USERNAME, or save "
                      "~/.kaggle/kaggle.json")


def _variant_names(stage: str, variants: list[dict[str, Any]]) -> list[str]:
    if len(variants) == 1:
        return [""]
    key = VARIANT_KEY.get(stage)
    names = [slugify(str(v[key])) if key and v.get(key) else str(i + 1) for i, v in enumerate(variants)]
    if len(set(names)) != len(names):
        raise ValueError(f"{stage}: several kernels would share the name {names}; give each a distinct "
                         f"{key or 'set of parameters'}")
    return names


def _has_install_cell(nb) -> bool:
    return any(c.cell_type == "code" and 'find_spec("amzkit")' in c.source for c in nb.cells)


def prepare_notebook(src: str | Path, dest: str | Path, params: Mapping[str, Any]) -> Path:
    """Copy a notebook with `params` baked in (papermill prepare-only: an `injected-parameters` cell after the
    `parameters` cell); adds INSTALL_CELL first when the notebook lacks one and a kernelspec when absent."""
    nb = nbformat.read(str(src), as_version=4)
    if not _has_install_cell(nb):
        first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
        nb.cells.insert(first_code, nbformat.v4.new_code_cell(INSTALL_CELL, metadata={"tags": ["amzkit-install"]}))
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    nb = pm.execute_notebook(nb, None, parameters=dict(params), prepare_only=True, progress_bar=False,
                             kernel_name=nb.metadata.kernelspec.get("name", "python3"))
    nb.metadata.get("papermill", {}).update({"input_path": Path(src).name, "output_path": Path(dest).name})
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return dest


def _copy_sources(src_root: Path, dest: Path) -> None:
    dest.mkdir(parents=True)
    for name in ("pyproject.toml", "README.md", "LICENSE", "setup.cfg", "setup.py", "MANIFEST.in"):
        if (src_root / name).is_file():
            shutil.copy2(src_root / name, dest / name)
    shutil.copytree(src_root / "amzkit", dest / "amzkit", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))


def build_wheel(dest: str | Path, source: str | Path = REPO_ROOT) -> Path:
    """`pip wheel --no-deps` of amzkit into `dest` (from a clean copy, so no stale build/ files ride along)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    for old in dest.glob("amzkit-*.whl"):
        old.unlink()
    offline_ok = all(importlib.util.find_spec(m) for m in ("setuptools", "wheel"))
    with tempfile.TemporaryDirectory(prefix="amzkit-wheel-") as tmp:
        src = Path(tmp) / "src"
        _copy_sources(Path(source), src)
        cmd = [sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dest.resolve()), str(src)]
        if offline_ok:  # build with this environment's setuptools: no download of build requirements
            cmd.insert(4, "--no-build-isolation")
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    wheels = sorted(dest.glob("amzkit-*.whl"))
    if proc.returncode or not wheels:
        raise KaggleError(f"building the amzkit wheel failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}\n"
                          "Install the build tools into this environment: pip install 'setuptools>=68' wheel")
    return wheels[-1]


def download_deps(dest: str | Path, packages: Sequence[str] = KAGGLE_EXTRA_DEPS,
                  constraints: str | Path = REPO_ROOT / "constraints.txt") -> list[Path]:
    """`pip download --no-deps` the wheels of `packages` (pinned as in constraints.txt) into `dest`."""
    pins = {}
    if Path(constraints).is_file():
        for line in Path(constraints).read_text().splitlines():
            if "==" in line and not line.startswith("#"):
                name, version = line.split("==", 1)
                pins[re.sub(r"[-_.]+", "-", name.strip()).lower()] = version.strip()
    wanted = [f"{p}=={pins[key]}" if (key := re.sub(r"[-_.]+", "-", p).lower()) in pins else p for p in packages]
    before = set(Path(dest).glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--dest", str(dest), *wanted]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        raise KaggleError(f"pip download failed ({' '.join(cmd)}):\n{proc.stderr[-2000:]}\n"
                          "It needs PyPI; build without --with-deps if Kaggle's image has these packages.")
    return sorted(set(Path(dest).glob("*.whl")) - before)


def dataset_metadata(owner: str) -> dict[str, Any]:
    return {"title": "amzkit wheel", "id": f"{owner}/{WHEEL_DATASET}", "licenses": [{"name": "other"}],
            "description": "The amzkit wheel (MIT), installed by the amzkit notebooks with pip --no-index."}


def kernel_metadata(template: Mapping[str, Any], stage: str, kernel_id: str, title: str, code_file: str,
                    kernel_sources: list[str], dataset_id: str) -> dict[str, Any]:
    """A kernel's metadata: the template's sources, privacy and keywords; the stage's machine, written out."""
    spec = KERNELS[stage]
    datasets = [d for d in template.get("dataset_sources", []) if d != dataset_id] + [dataset_id]
    return {
        "id": kernel_id,
        "title": title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": bool(template.get("is_private", True)),
        "enable_gpu": spec.enable_gpu,
        "enable_tpu": False,
        "enable_internet": spec.enable_internet,
        "machine_shape": spec.machine_shape,
        "dataset_sources": datasets,
        "competition_sources": list(template.get("competition_sources", [])),
        "kernel_sources": kernel_sources,
        "model_sources": list(template.get("model_sources", [])),
        "keywords": list(template.get("keywords", [])),
    }


def _write_json(path: Path, obj: Any) -> None:
    write_json(path, obj)


def build(out: str | Path = DEFAULT_BUILD, owner: str | None = None, params_file: str | Path | None = None,
          cli_params: Sequence[str] = (), stages: Sequence[str] | None = None, prefix: str = "amzkit",
          template: str | Path = TEMPLATE, notebooks_dir: str | Path = NOTEBOOKS_DIR, with_deps: bool = False,
          wheel_builder: Callable[[Path], Path] | None = None, home: str | Path | None = None,
          environ: Mapping[str, str] | None = None) -> BuildResult:
    """Write the wheel dataset and one kernel folder per (stage, parameter set) under `out`, plus plan.json."""
    tmpl = load_template(template)
    if "docker_image" in tmpl:
        warnings.warn(f"{template} sets docker_image; it is not copied (it would override the GPU request)",
                      stacklevel=2)
    owner = _resolve_owner(owner, tmpl, home, environ)
    per_stage = load_params_file(params_file) if params_file else {}
    for stage, values in parse_cli_params(cli_params).items():
        per_stage[stage] = [{**v, **values} for v in per_stage.get(stage, [{}])]
    selected = [_stage_name(s) for s in stages] if stages else list(STAGES)
    dataset_id = f"{owner}/{WHEEL_DATASET}"
    kernels = _plan_kernels(owner, prefix, per_stage)  # every parameter is checked before anything is written
    out = Path(out)
    _clean_previous_build(out)
    dataset_dir = out / WHEEL_DATASET
    dataset_dir.mkdir(parents=True, exist_ok=True)
    _write_json(dataset_dir / "dataset-metadata.json", dataset_metadata(owner))
    wheel = (wheel_builder or build_wheel)(dataset_dir)
    if with_deps:
        download_deps(dataset_dir)
    kernels = [k for k in kernels if k.stage in selected]
    for kernel in kernels:
        folder = out / kernel.folder
        code_file = f"{kernel.stage}.ipynb"
        prepare_notebook(Path(notebooks_dir) / code_file, folder / code_file, kernel.params)
        meta = kernel_metadata(tmpl, kernel.stage, kernel.id, kernel.title, code_file, kernel.kernel_sources,
                               dataset_id)
        _write_json(folder / "kernel-metadata.json", meta)
        problems = check_kernel_metadata(meta, folder, kernel.stage)
        if problems:
            raise KaggleError(f"{folder}/kernel-metadata.json is not a valid kernel: {problems}")
    plan = {"owner": owner, "dataset": {"id": dataset_id, "folder": WHEEL_DATASET, "wheel": wheel.name},
            "kernels": [vars(k) for k in kernels]}
    _write_json(out / PLAN_FILE, plan)
    return BuildResult(out, owner, dataset_id, dataset_dir, wheel, kernels)


def _plan_kernels(owner: str, prefix: str, per_stage: Mapping[str, list[dict[str, Any]]]) -> list[KernelPlan]:
    """Every kernel in stage order with its checked parameters and kernel_sources: the previous stage's kernels
    plus those of every stage it reads (KERNELS[stage].reads), so each kernel sees what it reads."""
    ids_by_stage: dict[str, list[str]] = {}
    kernels = []
    for index, stage in enumerate(STAGES):
        checked = [check_stage_params(stage, v) for v in per_stage.get(stage, [{}])]
        sources_from = ([STAGES[index - 1]] if index else []) + list(KERNELS[stage].reads)
        sources = list(dict.fromkeys(k for s in sources_from for k in ids_by_stage.get(s, [])))
        ids_by_stage[stage] = []
        for params, name in zip(checked, _variant_names(stage, checked), strict=True):
            title = stage_title(stage, prefix, name)
            slug = slugify(title)
            kernels.append(KernelPlan(stage, f"{owner}/{slug}", title, slug, params, sources))
            ids_by_stage[stage].append(f"{owner}/{slug}")
    return kernels


def _clean_previous_build(out: Path) -> None:
    """Remove the folders a previous build listed in its plan (never anything else)."""
    plan_path = out / PLAN_FILE
    if not plan_path.is_file():
        return
    plan = json.loads(plan_path.read_text(encoding="utf-8"))
    for name in [k["folder"] for k in plan.get("kernels", [])] + [plan.get("dataset", {}).get("folder", "")]:
        if name and (out / name).is_dir() and (out / name).resolve().parent == out.resolve():
            shutil.rmtree(out / name)


def load_plan(build_dir: str | Path = DEFAULT_BUILD) -> dict[str, Any]:
    path = Path(build_dir) / PLAN_FILE
    if not path.is_file():
        raise KaggleError(f"{path} is missing: run `python -m amzkit kaggle build --out {build_dir}` first")
    return json.loads(path.read_text(encoding="utf-8"))


def push(build_dir: str | Path = DEFAULT_BUILD, stages: Sequence[str] | None = None, dry_run: bool = False,
         wait: bool = False, poll_interval: float = 60.0, timeout: float = 12 * 3600.0, message: str = "",
         skip_dataset: bool = False, home: str | Path | None = None, environ: Mapping[str, str] | None = None,
         runner: Runner = run_kaggle, sleep: Callable[[float], None] = time.sleep,
         echo: Callable[[str], None] = print) -> dict[str, str]:
    """Push the wheel dataset, then each kernel in stage order; with `wait`, each runs to the end before the
    next is pushed (a stage reads its predecessors' finished outputs). Returns {kernel id: final status}."""
    build_dir = Path(build_dir)
    plan = load_plan(build_dir)
    wanted = {_stage_name(s) for s in stages} if stages else set(STAGES)
    kernels = [k for k in plan["kernels"] if k["stage"] in wanted]
    if not kernels:
        raise KaggleError(f"no kernels of stages {sorted(wanted)} in {build_dir / PLAN_FILE}: rebuild with them")
    if len(kernels) > 1 and not wait and not dry_run:
        raise KaggleError("pushing several chained kernels needs --wait: each stage reads the finished outputs of "
                          "the one before. Pass --wait, or push one stage at a time with --stages.")
    creds = None
    if dry_run:
        creds = read_credentials(home, environ)
        if creds is None:
            echo("note: no Kaggle credentials found; a real push needs KAGGLE_USERNAME/KAGGLE_KEY or kaggle.json")
    else:
        creds = require_credentials(home, environ)
        if creds.username and creds.username != plan["owner"]:
            raise KaggleError(f"the build is for owner {plan['owner']!r} but the credentials are {creds.username!r}'s:"
                              f" rebuild with --owner {creds.username}")
    cli = KaggleCLI(creds, dry_run, runner, echo)
    results: dict[str, str] = {}
    if not skip_dataset:
        _push_dataset(cli, build_dir / plan["dataset"]["folder"], plan["dataset"]["id"], message, wait,
                      poll_interval, timeout, sleep)
    for kernel in kernels:
        proc = cli(["kernels", "push", "-p", str(build_dir / kernel["folder"])])
        if not dry_run and failed(proc, ("successfully pushed",)):
            raise KaggleError(f"pushing {kernel['id']} failed (output above); fix it and re-run with "
                              f"--stages {kernel['stage']}")
        if dry_run:
            results[kernel["id"]] = "dry-run"
            if wait:
                cli(["kernels", "status", kernel["id"]], comment="polled until complete/error")
            continue
        if not wait:
            results[kernel["id"]] = "pushed"
            continue
        status = wait_for(cli, ["kernels", "status", kernel["id"]], kernel["id"], poll_interval, timeout, sleep)
        results[kernel["id"]] = status
        if status != "complete":
            raise KaggleError(f"kernel {kernel['id']} ended {status}: read its log with `python -m amzkit kaggle "
                              f"fetch {kernel['stage']}` (or on kaggle.com), fix it, and re-run with "
                              f"--stages {','.join(k['stage'] for k in kernels[kernels.index(kernel):])}")
    return results


def _push_dataset(cli: KaggleCLI, folder: Path, dataset_id: str, message: str, wait: bool, poll_interval: float,
                  timeout: float, sleep: Callable[[float], None]) -> None:
    """`datasets version` when the dataset exists, else `datasets create`; `-r zip` keeps sub-folders."""
    message = message or f"amzkit wheel {time.strftime('%Y-%m-%d %H:%M')}"
    if cli.dry_run:
        cli(["datasets", "status", dataset_id], comment="does it exist?")
        cli(["datasets", "create", "-p", str(folder), "-r", "zip"], comment="the first time")
        cli(["datasets", "version", "-p", str(folder), "-r", "zip", "-m", message], comment="afterwards")
        return
    status = cli(["datasets", "status", dataset_id], quiet=True)
    text = (status.stdout + status.stderr).lower()
    exists = status.returncode == 0 and not any(w in text for w in ("404", "not found", "does not exist"))
    if exists:
        proc = cli(["datasets", "version", "-p", str(folder), "-r", "zip", "-m", message])
    else:
        proc = cli(["datasets", "create", "-p", str(folder), "-r", "zip"])
    if failed(proc, ("successfully", "being created", "is being", "upload successful")):
        raise KaggleError(f"uploading the wheel dataset {dataset_id} failed (output above)")
    if wait:
        final = wait_for(cli, ["datasets", "status", dataset_id], dataset_id, poll_interval, timeout, sleep)
        if final != "complete":
            raise KaggleError(f"dataset {dataset_id} ended {final}: open it on kaggle.com to see why")


def fetch(stage: str, build_dir: str | Path = DEFAULT_BUILD, out: str | Path | None = None, dry_run: bool = False,
          home: str | Path | None = None, environ: Mapping[str, str] | None = None, runner: Runner = run_kaggle,
          echo: Callable[[str], None] = print) -> list[Path]:
    """Download the outputs (and log) of every kernel of `stage` into `<out>/<kernel-slug>/`."""
    stage = _stage_name(stage)
    plan = load_plan(build_dir)
    kernels = [k for k in plan["kernels"] if k["stage"] == stage]
    if not kernels:
        raise KaggleError(f"no {stage} kernel in {Path(build_dir) / PLAN_FILE}: build it first")
    creds = read_credentials(home, environ) if dry_run else require_credentials(home, environ)
    cli = KaggleCLI(creds, dry_run, runner, echo)
    out = Path(out) if out else Path(build_dir) / "outputs"
    folders = []
    for kernel in kernels:
        folder = out / kernel["folder"]
        if not dry_run:
            folder.mkdir(parents=True, exist_ok=True)
        proc = cli(["kernels", "output", kernel["id"], "-p", str(folder)])
        if not dry_run and proc.returncode:
            raise KaggleError(f"downloading the outputs of {kernel['id']} failed (output above)")
        folders.append(folder)
    return folders
