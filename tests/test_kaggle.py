"""The Kaggle side: kernel folders that obey the facts file, the push sequence through a fake `kaggle` CLI,
credentials that never leak, and /kaggle/input probing over the mount layouts Kaggle uses."""

from __future__ import annotations

import importlib.metadata
import json
import os
import re
import stat
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import REPO_ROOT

from amzkit.app import kaggle, kaggle_api, kaggle_image, kaggle_push, kaggle_runtime, kaggle_wheel
from amzkit.app.cli import main
from amzkit.app.kaggle_api import KaggleCredentialsWarning, KaggleError, normalise_status, read_credentials
from amzkit.app.kaggle_runtime import (
    attach_previous_outputs,
    detach_previous_outputs,
    find_data_dir,
    find_data_dirs,
    find_stage_dirs,
    find_wheel_dir,
    find_work_dirs,
    list_mounts,
)
from amzkit.core.workdir import STAGES, list_runs

SECRET = "s3cr3t-k3y-0f-the-t3st-5a5a5a5a"
OWNER = "alice"
DATA = f"{OWNER}/amazon-ml-2025"


def _dummy_wheel(folder: Path) -> Path:
    wheel = folder / "amzkit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not a real wheel")
    return wheel


# Requires-Dist of the fake wheels: open_clip_torch needs ftfy (absent from Kaggle's image) and packages it has.
FAKE_REQUIRES = {"open_clip_torch": ["torch>=2.0", "torchvision", "regex", "ftfy", "tqdm", "huggingface-hub",
                                     "safetensors", "timm>=1.0.17", 'pytest; extra == "test"'],
                 "ftfy": ["wcwidth"], "optuna": ["alembic", "colorlog"], "alembic": [], "colorlog": []}


def fake_wheel(folder: Path, name: str, version: str, requires: list[str]) -> Path:
    """A minimal wheel: its .dist-info/METADATA with Name, Version and Requires-Dist."""
    wheel = folder / f"{name}-{version}-py3-none-any.whl"
    metadata = "\n".join(["Metadata-Version: 2.1", f"Name: {name}", f"Version: {version}",
                          *[f"Requires-Dist: {r}" for r in requires]]) + "\n\nLong description: Requires-Dist: nope\n"
    with zipfile.ZipFile(wheel, "w") as archive:
        archive.writestr(f"{name}-{version}.dist-info/METADATA", metadata)
    return wheel


def fake_downloader(requirements, dest: Path) -> list[Path]:
    """Stands in for `pip download` (no network in tests): one wheel per requirement, from FAKE_REQUIRES."""
    dest.mkdir(parents=True, exist_ok=True)
    wheels = []
    for req in requirements:
        name, _, version = req.partition("==")
        known = {kaggle_image.canonical(k): k for k in FAKE_REQUIRES}
        real = known.get(kaggle_image.canonical(name), name.replace("-", "_"))
        wheels.append(fake_wheel(dest, real, version or "9.9.9", FAKE_REQUIRES.get(real, [])))
    return wheels


def _build(out: Path, **kwargs) -> kaggle.BuildResult:
    kwargs.setdefault("data", [DATA])
    kwargs.setdefault("downloader", fake_downloader)
    return kaggle.build(out, owner=OWNER, wheel_builder=_dummy_wheel, environ={}, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> kaggle.BuildResult:
    return _build(tmp_path_factory.mktemp("kaggle") / "build", cli_params=[
        "03_train.run_name=siglip", "03_train.embeddings=[\"fashion-siglip\"]", "01.batch_size=32",
        "01.model=color-stats", "01.text_model=tfidf-svd"])


def _meta(folder: Path) -> dict:
    return json.loads((folder / "kernel-metadata.json").read_text())


def _kernel(result: kaggle.BuildResult, stage: str) -> kaggle.KernelPlan:
    (kernel,) = [k for k in result.kernels if k.stage == stage]
    return kernel


# --- metadata, checked against the facts file (shared/facts/kaggle-and-papermill.md) ---------------------------

def _facts_problems(meta: dict, folder: Path) -> list[str]:
    """The facts file's rules, restated independently of amzkit.kaggle.check_kernel_metadata."""
    problems = []
    owner, _, slug = meta["id"].partition("/")
    if not owner or len(slug) < 5:
        problems.append("id")
    if len(meta["title"]) < 5 or re.sub(r"[^a-z0-9]+", "-", meta["title"].lower()).strip("-") != slug:
        problems.append("title")
    if not (folder / meta["code_file"]).is_file():
        problems.append("code_file")
    if meta["language"] != "python" or meta["kernel_type"] != "notebook":
        problems.append("language/kernel_type")
    for name in ("enable_gpu", "enable_internet", "is_private"):
        if not isinstance(meta.get(name), bool):
            problems.append(name)
    if "machine_shape" not in meta or "docker_image" in meta:
        problems.append("machine_shape/docker_image")
    return problems


def test_every_built_kernel_folder_obeys_the_facts_file(built):
    folders = sorted(p for p in built.out.iterdir() if (p / "kernel-metadata.json").is_file())
    assert [f.name for f in folders] == [f"amzkit-{s.replace('_', '-')}" for s in STAGES]
    for kernel in built.kernels:
        folder = built.out / kernel.folder
        meta = _meta(folder)
        assert _facts_problems(meta, folder) == [], folder
        assert kaggle.check_kernel_metadata(meta, folder, kernel.stage) == []
        assert meta["code_file"] == f"{kernel.stage}.ipynb" and list(folder.iterdir()) != []
        assert sorted(p.name for p in folder.iterdir()) == sorted([meta["code_file"], "kernel-metadata.json"])
        spec = kaggle.KERNELS[kernel.stage]
        assert (meta["enable_gpu"], meta["enable_internet"], meta["machine_shape"]) == (
            spec.enable_gpu, spec.enable_internet, spec.machine_shape)
        assert meta["competition_sources"] == []
        assert meta["dataset_sources"] == [DATA, f"{OWNER}/amzkit-wheel"]
        nb = nbformat.read(folder / meta["code_file"], as_version=4)
        assert nb.metadata.kernelspec.name == "python3"
    extract = _meta(built.out / "amzkit-01-extract")
    assert (extract["enable_gpu"], extract["enable_internet"], extract["machine_shape"]) == (True, True,
                                                                                              "NvidiaTeslaT4")


def test_metadata_checker_catches_each_broken_rule(built):
    folder = built.out / "amzkit-01-extract"
    good = _meta(folder)
    broken = {
        "slug": {**good, "id": f"{OWNER}/amz", "title": "amz"},
        "title": {**good, "title": "amzkit 01 extraction"},
        "code_file": {**good, "code_file": "missing.ipynb"},
        "kernel_type": {**good, "kernel_type": "script"},
        "docker_image": {**good, "docker_image": "gcr.io/kaggle-gpu-images/python"},
        "machine_shape": {k: v for k, v in good.items() if k != "machine_shape"},
        "enable_internet": {k: v for k, v in good.items() if k != "enable_internet"},
        "enable_gpu": {**good, "enable_gpu": False},  # wrong for 01_extract
    }
    for rule, meta in broken.items():
        problems = kaggle.check_kernel_metadata(meta, folder, "01_extract")
        assert any(rule in p for p in problems), (rule, problems)


def test_slugify_matches_kaggle_titles():
    assert kaggle.slugify("amzkit 01 extract") == "amzkit-01-extract"
    assert kaggle.slugify("  Amzkit -- 03_Train: run's  #2 ") == "amzkit-03-train-runs-2"
    assert kaggle.slugify("Café crème") == "cafe-creme"


def test_kernel_sources_chain_every_stage_to_what_it_reads(built):
    ids = {k.stage: k.id for k in built.kernels}
    sources = {k.stage: _meta(built.out / k.folder)["kernel_sources"] for k in built.kernels}
    assert sources["01_extract"] == []
    assert sources["02_correlate"] == [ids["01_extract"]]
    assert set(sources["03_train"]) == {ids["02_correlate"], ids["01_extract"]}  # previous + the embeddings
    assert sources["04_ensemble"] == [ids["03_train"]]
    assert set(sources["05_submit"]) == {ids["04_ensemble"], ids["03_train"]}
    for index, stage in enumerate(STAGES):
        later = {ids[s] for s in STAGES[index:]}
        assert not later & set(sources[stage]), f"{stage} must not read itself or a later stage"


def test_several_kernels_of_one_stage_all_feed_the_next(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("03_train:\n  - {run_name: lgbm_text, embeddings: []}\n"
                      "  - {run_name: siglip, embeddings: [fashion-siglip]}\n04_ensemble: {runs: []}\n")
    result = _build(tmp_path / "build", params_file=params)
    trains = [k for k in result.kernels if k.stage == "03_train"]
    assert [k.id for k in trains] == [f"{OWNER}/amzkit-03-train-lgbm-text", f"{OWNER}/amzkit-03-train-siglip"]
    assert [k.params["run_name"] for k in trains] == ["lgbm_text", "siglip"]
    assert set(_kernel(result, "04_ensemble").kernel_sources) == {k.id for k in trains}
    assert set(_kernel(result, "05_submit").kernel_sources) == {k.id for k in trains} | {
        _kernel(result, "04_ensemble").id}
    for kernel in result.kernels:
        assert kaggle.check_kernel_metadata(_meta(result.out / kernel.folder), result.out / kernel.folder,
                                            kernel.stage) == []


def test_parameters_are_baked_in_after_the_parameters_cell(built):
    nb = nbformat.read(built.out / "amzkit-03-train" / "03_train.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    at = next(i for i, t in enumerate(tags) if "parameters" in t)
    injected = nb.cells[at + 1]
    assert "injected-parameters" in injected.metadata.tags
    assert 'run_name = "siglip"' in injected.source
    assert 'embeddings = ["fashion-siglip"]' in injected.source  # coerced to a list, not the raw string
    assert 'run_name: str = "lgbm"' in nb.cells[at].source  # the defaults stay as they were
    extract = nbformat.read(built.out / "amzkit-01-extract" / "01_extract.ipynb", as_version=4)
    injected = [c for c in extract.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and "batch_size = 32" in injected[0].source
    assert _kernel(built, "03_train").params == {"run_name": "siglip", "embeddings": ["fashion-siglip"]}


@pytest.mark.parametrize("bad, expected", [
    (["03_train.run_nam=x"], "did you mean 'run_name'"),
    (["03_train._secret=x"], "unknown parameter"),
    (["03_train.n_folds=five"], "n_folds"),
    (["07_deploy.x=1"], "unknown stage"),
    (["03_train=1"], "stage.name=value"),
])
def test_unknown_or_bad_parameters_are_refused(tmp_path, bad, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        _build(tmp_path / "build", cli_params=bad)
    assert not (tmp_path / "build").exists()  # refused before anything is written


def test_unknown_parameter_in_a_params_file_is_refused_by_the_cli(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(kaggle, "build_wheel", _dummy_wheel)
    monkeypatch.setattr(kaggle_image, "pip_download", fake_downloader)
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"05_submit": {"sorce": "04_ensemble"}}))
    assert main(["kaggle", "build", "--out", str(tmp_path / "b"), "--owner", OWNER, "--data", DATA,
                 "--params", str(params)]) == 1
    assert "did you mean 'source'" in capsys.readouterr().err


def test_top_level_kernel_metadata_is_the_valid_01_extract_template():
    template = json.loads((REPO_ROOT / "kernel-metadata.json").read_text())
    assert kaggle.check_kernel_metadata(template, REPO_ROOT, "01_extract") == []
    assert _facts_problems(template, REPO_ROOT) == []
    assert template["id"].split("/")[1] == kaggle.slugify(kaggle.stage_title("01_extract"))


def test_docker_image_of_a_template_is_never_copied(tmp_path):
    template = json.loads((REPO_ROOT / "kernel-metadata.json").read_text())
    template["docker_image"] = "gcr.io/kaggle-private-byod/python@sha256:0"
    (tmp_path / "t.json").write_text(json.dumps(template))
    with pytest.warns(UserWarning, match="docker_image"):
        result = _build(tmp_path / "build", template=tmp_path / "t.json", stages=["01_extract"])
    assert "docker_image" not in _meta(result.out / "amzkit-01-extract")


def test_a_model_source_kaggle_kernels_push_refuses_stops_the_build(tmp_path):
    """kaggle 2.2.x refuses a model source that is not owner/model/framework/variation/version before uploading."""
    template = json.loads((REPO_ROOT / "kernel-metadata.json").read_text())
    template["model_sources"] = ["google/siglip"]
    (tmp_path / "t.json").write_text(json.dumps(template))
    with pytest.raises(kaggle.KaggleError, match=r"model_sources entry 'google/siglip' must be "
                       r"'<owner>/<model>/<framework>/<variation>/<version>'"):
        _build(tmp_path / "build", template=tmp_path / "t.json", stages=["01_extract"])
    template["model_sources"] = ["google/siglip/transformers/so400m-patch14-384/1"]
    (tmp_path / "t.json").write_text(json.dumps(template))
    result = _build(tmp_path / "build", template=tmp_path / "t.json", stages=["01_extract"])
    assert _meta(result.out / "amzkit-01-extract")["model_sources"] == template["model_sources"]


def test_wheel_dataset_folder(built):
    meta = json.loads((built.dataset_dir / "dataset-metadata.json").read_text())
    assert meta["id"] == f"{OWNER}/amzkit-wheel" and len(meta["title"]) >= 6 and meta["licenses"]
    assert built.wheel.parent == built.dataset_dir and built.wheel.name.startswith("amzkit-")


def test_the_wheel_is_really_built(tmp_path):
    wheel = kaggle_wheel.build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith("amzkit-") and wheel.suffix == ".whl"
    assert {"amzkit/__init__.py", "amzkit/app/kaggle.py", "amzkit/app/runners.py"} <= set(names)
    assert not any(n.startswith(("tests/", "build/", "notebooks/")) for n in names)
    version = kaggle.wheel_version(wheel)
    assert re.fullmatch(r"0\.1\.0\+\d{14}\.[0-9a-f]{8}", version), version  # the build is in the version
    init = zipfile.ZipFile(wheel).read("amzkit/__init__.py").decode()
    assert f'__version__ = "{version}"' in init
    metadata = next(n for n in names if n.endswith(".dist-info/METADATA"))
    assert f"Version: {version}" in zipfile.ZipFile(wheel).read(metadata).decode()


# --- the install cell -----------------------------------------------------------------------------------------

def test_install_cell_defines_only_private_names_and_prints_the_version(capsys):
    namespace: dict = {}
    exec(compile(kaggle.INSTALL_CELL, "<install>", "exec"), namespace)  # amzkit is installed here: nothing to do
    assert [n for n in namespace if n != "__builtins__" and not n.startswith("_")] == []
    assert capsys.readouterr().out.strip() == f"amzkit {importlib.metadata.version('amzkit')}"
    assert len(kaggle.INSTALL_CELL.splitlines()) <= 33  # one import a line (ruff clean), still short


def _run_install_cell(root: Path, monkeypatch, installed: str | None, want: str = "") -> list[list[str]]:
    """Run install_cell(want) against a fake input tree, with `installed` as amzkit's version (None: absent)."""
    import subprocess

    calls: list[list[str]] = []
    state = {"installed": installed}
    real_version = importlib.metadata.version

    def version(name):
        if name != "amzkit":
            return real_version(name)
        if state["installed"] is None:
            raise importlib.metadata.PackageNotFoundError(name)
        return state["installed"]

    def pip_install(cmd, **kwargs):  # installs the amzkit wheel of the --find-links folder
        calls.append(cmd)
        (wheel,) = Path(cmd[cmd.index("--find-links") + 1]).glob("amzkit-*.whl")
        state["installed"] = kaggle.wheel_version(wheel)
        return 0

    monkeypatch.setattr(importlib.metadata, "version", version)
    monkeypatch.setattr(subprocess, "check_call", pip_install)
    monkeypatch.setenv("AMZKIT_KAGGLE_ROOT", str(root))
    exec(compile(kaggle_runtime.install_cell(want), "<install>", "exec"), {})
    return calls


def test_install_cell_installs_from_the_probed_wheel_folder_only_when_needed(tmp_path, monkeypatch):
    wheel_dir = tmp_path / "input" / "datasets" / OWNER / "amzkit-wheel"
    wheel_dir.mkdir(parents=True)
    _dummy_wheel(wheel_dir)
    (wheel_dir / "ftfy-6.3.1-py3-none-any.whl").write_bytes(b"x")
    (calls,) = _run_install_cell(tmp_path, monkeypatch, installed=None)
    assert calls[:3] == [sys.executable, "-m", "pip"] and "--no-index" in calls and "--no-deps" in calls
    assert calls[calls.index("--find-links") + 1] == str(wheel_dir) and "amzkit" in calls
    assert str(wheel_dir / "ftfy-6.3.1-py3-none-any.whl") in calls
    assert find_wheel_dir(tmp_path / "input") == wheel_dir
    assert _run_install_cell(tmp_path, monkeypatch, installed="0.1.0") == []  # amzkit installed: no-op
    assert _run_install_cell(tmp_path / "absent", monkeypatch, installed=None) == []  # no wheel (off Kaggle): no-op


OLD, NEW = "0.1.0+20260101120000.aaaa1111", "0.1.0+20260301120000.bbbb2222"


def test_install_cell_refuses_an_amzkit_older_than_the_kernels_build(tmp_path, monkeypatch, capsys):
    wheel_dir = tmp_path / "input" / "amzkit-wheel"
    wheel_dir.mkdir(parents=True)
    (wheel_dir / f"amzkit-{OLD}-py3-none-any.whl").write_bytes(b"old")  # the dataset was not pushed again
    with pytest.raises(RuntimeError, match=re.escape(f"amzkit {OLD} is older than this kernel's build {NEW}")):
        _run_install_cell(tmp_path, monkeypatch, installed=OLD, want=NEW)
    with pytest.raises(RuntimeError, match="older than this kernel's build"):
        _run_install_cell(tmp_path, monkeypatch, installed="0.1.0", want=NEW)  # an unstamped (dev) install too
    calls = _run_install_cell(tmp_path, monkeypatch, installed=None, want=OLD)  # fresh session: installs, runs
    assert len(calls) == 1
    assert _run_install_cell(tmp_path, monkeypatch, installed=NEW, want=OLD) == []  # a newer wheel is fine
    assert f"amzkit {NEW}; this kernel was built with {OLD}" in capsys.readouterr().out


def test_install_cell_without_the_wheel_dataset_says_to_attach_it(tmp_path, monkeypatch, capsys):
    """A built kernel whose amzkit-wheel dataset is not attached was told to upload the wheel again and wait for its
    new version; an interactive Kaggle notebook printed '(no installed wheel)' and then failed to import amzkit."""
    (tmp_path / "input" / "amazon-ml-2025").mkdir(parents=True)  # the data is attached, the wheel dataset is not
    with pytest.raises(RuntimeError, match=r"no amzkit wheel under .*input: attach your amzkit-wheel dataset .*then "
                                           "run this kernel again") as refused:
        _run_install_cell(tmp_path, monkeypatch, installed=None, want=NEW)
    assert "upload the wheel dataset again" not in str(refused.value)
    assert _run_install_cell(tmp_path, monkeypatch, installed=None) == []  # interactive: the next cell's import fails
    assert "amzkit no amzkit wheel under" in capsys.readouterr().out  # ... after this line said what to attach
    _run_install_cell(tmp_path / "elsewhere", monkeypatch, installed=None)  # off Kaggle (no input folder): as before
    assert capsys.readouterr().out.strip() == "amzkit (no installed wheel)"


def test_built_notebooks_start_with_the_install_cell_expecting_the_builds_wheel(built):
    assert built.version == kaggle.wheel_version(built.wheel)
    for kernel in built.kernels:
        nb = nbformat.read(built.out / kernel.folder / f"{kernel.stage}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert sum(c.source.startswith("# Kaggle: install amzkit") for c in code) == 1
        assert code[0].source == kaggle_runtime.install_cell(built.version)


def test_source_notebooks_hold_the_current_install_cell():
    assert kaggle.sync_install_cells(REPO_ROOT / "notebooks") == []


def test_build_versions_order_by_time_and_name_the_sources(tmp_path):
    early, late = kaggle_wheel.build_version(REPO_ROOT, when=1.7e9), kaggle_wheel.build_version(REPO_ROOT, when=1.8e9)
    assert early.split("+")[1].split(".")[1] == late.split("+")[1].split(".")[1] == kaggle_wheel.source_hash(REPO_ROOT)
    assert int(early.split("+")[1].split(".")[0]) < int(late.split("+")[1].split(".")[0])


# --- push through a fake kaggle CLI --------------------------------------------------------------------------

FAKE_KAGGLE = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_KAGGLE_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
state_path = Path(os.environ["FAKE_KAGGLE_STATE"])
state = json.loads(state_path.read_text())
errors = state.get("errors", {{}}).get(" ".join(args[:2]))  # per command, one answer per call ("": runs it)
error = errors.pop(0) if errors else ""
if error:  # kaggle 2.x lets an HTTP error out as a traceback
    state_path.write_text(json.dumps(state))
    print("Traceback (most recent call last):\\nrequests.exceptions.HTTPError: " + error, file=sys.stderr)
    sys.exit(1)
if args[:2] == ["kernels", "status"]:
    ref = args[2]
    if ref.count("/") == 2 and state.get("no_versions"):
        print("usage: kaggle kernels status [-h] [kernel]", file=sys.stderr)
        sys.exit(2)
    queue = state["statuses"].get(ref) or state["statuses"].get("/".join(ref.split("/")[:2])) or [
        'has status "complete"']
    answer = queue.pop(0) if len(queue) > 1 else queue[0]
    print(f"{{ref}} {{answer}}" if answer.startswith("has status") else answer)
elif args[:2] == ["kernels", "push"] and state.get("refuse", {{}}).get(
        json.loads((Path(args[args.index("-p") + 1]) / "kernel-metadata.json").read_text())["id"]):
    kernel_id = json.loads((Path(args[args.index("-p") + 1]) / "kernel-metadata.json").read_text())["id"]
    state["refuse"][kernel_id] -= 1  # Kaggle refuses a push while every session of the account is taken
    print("Kernel push error: Maximum batch GPU session count of 2 reached")
elif args[:2] == ["kernels", "push"]:
    folder = Path(args[args.index("-p") + 1])
    kernel_id = json.loads((folder / "kernel-metadata.json").read_text())["id"]
    version = state["versions"][kernel_id] = state["versions"].get(kernel_id, 0) + 1
    for line in state.get("push_notes", {{}}).get(kernel_id, []):
        print(line)
    if state.get("no_versions"):
        print("Kernel version successfully pushed.  Please check progress at https://www.kaggle.com/code/x")
    else:
        print(f"Kernel version {{version}} successfully pushed.  Please check progress at https://www.kaggle.com/x")
    if os.environ.get("FAKE_KAGGLE_LEAK"):
        key = os.environ.get("KAGGLE_KEY") or os.environ.get("KAGGLE_API_TOKEN", "")
        print("debug: using key " + key, file=sys.stderr)
elif args[:2] == ["datasets", "status"]:
    if not state["dataset_exists"]:
        print("404 - Not Found", file=sys.stderr)
        sys.exit(1)
    queue = state.get("dataset_statuses") or ["ready"]  # a new version is "pending" while Kaggle processes it
    print(queue.pop(0) if len(queue) > 1 else queue[0])
elif args[:2] == ["datasets", "create"]:
    state["dataset_exists"] = True
    print("Your private Dataset is being created. Please check progress at https://www.kaggle.com/x")
elif args[:2] == ["datasets", "version"]:
    print("Dataset version is being created. Please check progress at https://www.kaggle.com/x")
elif args[:2] == ["kernels", "output"]:
    folder = Path(args[args.index("-p") + 1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "amzkit-03-train.log").write_text("[]")
    for rel, text in state.get("outputs", {{}}).items():
        (folder / rel).parent.mkdir(parents=True, exist_ok=True)
        (folder / rel).write_text(text)
    print(f"Output file downloaded to {{folder}}")
else:
    print("unexpected command", args, file=sys.stderr)
    sys.exit(2)
state_path.write_text(json.dumps(state))
"""

STATUS_ANSWERS = {  # one CLI wording per kernel
    "01_extract": ['has status "queued"', 'has status "running"', 'has status "complete"'],
    "02_correlate": ["status: running", "KernelWorkerStatus.COMPLETE"],
    "03_train": ['has status "KernelWorkerStatus.RUNNING"', 'has status "KernelWorkerStatus.COMPLETE"'],
    "04_ensemble": ["queued", "Status: COMPLETE"],
    "05_submit": ['has status "complete"'],
}


def _state(**changes) -> None:
    path = Path(os.environ["FAKE_KAGGLE_STATE"])
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


@pytest.fixture
def fake_kaggle(tmp_path, monkeypatch, built):
    """A `kaggle` executable first on PATH that logs its arguments; credentials in the environment."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    exe = bin_dir / "kaggle"
    exe.write_text(FAKE_KAGGLE.format(python=sys.executable))
    exe.chmod(0o755)
    log, state = tmp_path / "kaggle.log", tmp_path / "state.json"
    ids = {k.stage: k.id for k in built.kernels}
    state.write_text(json.dumps({"dataset_exists": False, "versions": {},
                                 "statuses": {ids[s]: answers for s, answers in STATUS_ANSWERS.items()}}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(log))
    monkeypatch.setenv("FAKE_KAGGLE_STATE", str(state))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    for name in ("KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", OWNER)
    monkeypatch.setenv("KAGGLE_KEY", SECRET)
    (built.out / kaggle_push.PUSHED_FILE).unlink(missing_ok=True)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def test_push_uploads_the_dataset_then_each_kernel_in_order_polling_its_version(built, fake_kaggle, capsys):
    build = str(built.out)
    assert main(["kaggle", "push", "--build", build, "--wait", "--poll-interval", "0"]) == 0
    calls = fake_kaggle()
    dataset_dir = str(built.out / "amzkit-wheel")
    assert calls[0] == ["datasets", "status", f"{OWNER}/amzkit-wheel"]
    assert calls[1] == ["datasets", "create", "-p", dataset_dir, "-r", "zip"]
    pushes = [i for i, c in enumerate(calls) if c[:2] == ["kernels", "push"]]
    assert [calls[i][3] for i in pushes] == [str(built.out / k.folder) for k in built.kernels]
    assert all(c[:2] == ["datasets", "status"] for c in calls[2:pushes[0]])  # waited for the dataset
    for n, kernel in enumerate(built.kernels):  # each kernel's pushed version polled until complete
        end = pushes[n + 1] if n + 1 < len(pushes) else len(calls)
        polls = calls[pushes[n] + 1:end]
        assert polls == [["kernels", "status", f"{kernel.id}/1"]] * len(STATUS_ANSWERS[kernel.stage])
    out = capsys.readouterr().out
    assert all(f"{k.id}: complete" in out for k in built.kernels)
    assert f"{built.kernels[0].id} version 1: queued" in out and f"{built.kernels[0].id} version 1: running" in out
    pushed = kaggle_push.pushed_versions(built.out)
    assert {k.id: (v["version"], v["status"]) for k, v in zip(built.kernels, pushed.values(), strict=True)} == {
        k.id: (1, "complete") for k in built.kernels}

    assert main(["kaggle", "push", "--build", build, "--stages", "04_ensemble", "--message", "v2"]) == 0
    again = fake_kaggle()[len(calls):]
    assert again[1] == ["datasets", "version", "-p", dataset_dir, "-r", "zip", "-m", "v2"]  # it exists now
    assert again[2:] == [["datasets", "status", f"{OWNER}/amzkit-wheel"],  # ready before the kernel that installs it
                         ["kernels", "push", "-p", str(built.out / "amzkit-04-ensemble")]]
    assert kaggle_push.pushed_versions(built.out)[_kernel(built, "04_ensemble").id]["version"] == 2
    _state(outputs={"amzkit/kaggle_outputs.json": json.dumps({"files": {}})})
    assert main(["kaggle", "fetch", "04", "--build", build, "--out", str(built.out.parent / "o4")]) == 0
    assert fake_kaggle()[-1][:3] == ["kernels", "output", f"{_kernel(built, '04_ensemble').id}/2"]  # that version


def test_a_push_without_wait_waits_for_the_new_wheel_before_pushing_the_kernel(built, fake_kaggle, capsys):
    """A kernel pushed while the wheel dataset's new version is still processing mounts the previous version, and
    its install cell refuses that older amzkit: the kernel is pushed once the dataset is ready, --wait or not."""
    _state(dataset_exists=True, dataset_statuses=["ready", "pending", "pending", "ready"])  # the first: exists?
    kaggle_push.push(built.out, stages=["04"], poll_interval=0, sleep=lambda s: None)
    calls = [c[:2] for c in fake_kaggle()]
    assert calls == [["datasets", "status"], ["datasets", "version"], *[["datasets", "status"]] * 3,
                     ["kernels", "push"]]
    _state(dataset_statuses=["ready", "error"])
    with pytest.raises(KaggleError, match="amzkit-wheel ended error"):
        kaggle_push.push(built.out, stages=["04"], poll_interval=0, sleep=lambda s: None)
    assert fake_kaggle()[-1][:2] == ["datasets", "status"]  # no kernel pushed to run without its wheel


def test_an_earlier_versions_complete_is_never_taken_for_the_new_run(built, fake_kaggle, capsys):
    extract = _kernel(built, "01_extract").id
    _state(dataset_exists=True, versions={extract: 4}, statuses={
        extract: ['has status "KernelWorkerStatus.COMPLETE"'],  # what the latest-status query still says (v4)
        f"{extract}/5": ['has status "KernelWorkerStatus.QUEUED"', 'has status "KernelWorkerStatus.RUNNING"',
                         'has status "KernelWorkerStatus.ERROR"']})
    assert main(["kaggle", "push", "--build", str(built.out), "--stages", "01", "--wait", "--poll-interval",
                 "0"]) == 1
    polls = [c for c in fake_kaggle() if c[:2] == ["kernels", "status"]]
    assert polls == [["kernels", "status", f"{extract}/5"]] * 3
    assert "ended error" in capsys.readouterr().err
    assert kaggle_push.pushed_versions(built.out)[extract] | {"pushed_at": ""} == {
        "version": 5, "status": "error", "pushed_at": ""}


def test_a_repush_ignores_the_previous_runs_complete_though_the_cli_drops_the_version(built, fake_kaggle, capsys):
    """kaggle 2.2.x parses `status <id>/<version>` but asks for the latest run: right after a re-push that can still
    be the previous run's COMPLETE (no per-version answers here, only the kernel's)."""
    extract = _kernel(built, "01_extract").id
    _state(dataset_exists=True, versions={extract: 4}, statuses={
        extract: ['has status "KernelWorkerStatus.COMPLETE"', 'has status "KernelWorkerStatus.QUEUED"',
                  'has status "KernelWorkerStatus.RUNNING"', 'has status "KernelWorkerStatus.ERROR"']})
    assert main(["kaggle", "push", "--build", str(built.out), "--stages", "01", "--wait", "--poll-interval",
                 "0"]) == 1  # the new run's error, not version 4's complete
    polls = [c for c in fake_kaggle() if c[:2] == ["kernels", "status"]]
    assert polls == [["kernels", "status", f"{extract}/5"]] * 4
    captured = capsys.readouterr()
    assert "the previous run's" in captured.out and "ended error" in captured.err
    assert kaggle_push.pushed_versions(built.out)[extract]["status"] == "error"


def test_a_cli_without_version_numbers_gets_the_stale_guard(built, fake_kaggle, capsys):
    extract = _kernel(built, "01_extract").id
    _state(dataset_exists=True, no_versions=True, statuses={
        extract: ['has status "complete"', 'has status "complete"', 'has status "queued"', 'has status "running"',
                  'has status "error"']})
    assert main(["kaggle", "push", "--build", str(built.out), "--stages", "01", "--wait", "--poll-interval",
                 "0"]) == 1  # the run's own error, not the stale complete before it
    polls = [c for c in fake_kaggle() if c[:2] == ["kernels", "status"]]
    assert polls == [["kernels", "status", extract]] * 5
    captured = capsys.readouterr()
    assert "the previous run's" in captured.out and "ended error" in captured.err


def test_stale_guard_gives_up_waiting_for_a_new_run_after_its_grace():
    answers = iter(['has status "complete"'] * 10)
    clock = iter([0.0, 1.0, 2.0, 700.0, 701.0, 702.0])
    cli = kaggle_api.KaggleCLI(None, runner=lambda args: subprocess.CompletedProcess(args, 0, next(answers), ""),
                               echo=lambda text: None)
    status = kaggle_api.wait_for(cli, ["kernels", "status", "a/b"], "a/b", 0, 3600, sleep=lambda s: None,
                                 stale_guard=True, stale_grace=600, clock=lambda: next(clock))
    assert status == "complete"


def test_polling_with_refused_credentials_stops_at_once_not_after_the_timeout():
    """A token revoked while push --wait polls a 12-hour kernel: each poll answers 401; waiting on would print one
    'unknown' and poll until the timeout."""
    polls = []

    def runner(args):
        polls.append(args)
        return subprocess.CompletedProcess(args, 1, "", "requests.exceptions.HTTPError: 401 Client Error: "
                                                        "Unauthorized for url: https://api.kaggle.com/v1/x")
    cli = kaggle_api.KaggleCLI(None, runner=runner, echo=lambda text: None)
    with pytest.raises(KaggleError, match="refused `kaggle kernels status a/bcdef/2`.*HTTP 401"):
        kaggle_api.wait_for(cli, ["kernels", "status", "a/bcdef/2"], "a/bcdef version 2", 0, 12 * 3600,
                            sleep=lambda s: None, clock=iter(range(10**6)).__next__)
    assert len(polls) == 1
    with pytest.raises(KaggleError, match="HTTP 401"):  # the fallback for CLIs without versions is refused alike
        kaggle_api.wait_for(cli, ["kernels", "status", "a/bcdef/2"], "a/bcdef version 2", 0, 12 * 3600,
                            sleep=lambda s: None, clock=iter(range(10**6)).__next__,
                            fallback=["kernels", "status", "a/bcdef"])


def test_an_invalid_source_stops_the_push_with_the_clis_message(built, fake_kaggle, capsys):
    extract = _kernel(built, "01_extract").id
    note = ("The following are not valid competition sources and could not be added to the kernel: "
            "['amazon-ml-challenge-2025']")
    _state(dataset_exists=True, push_notes={extract: [note]})
    assert main(["kaggle", "push", "--build", str(built.out), "--wait", "--poll-interval", "0"]) == 1
    calls = fake_kaggle()
    assert [c for c in calls if c[:2] == ["kernels", "push"]] == [["kernels", "push", "-p",
                                                                  str(built.out / "amzkit-01-extract")]]
    assert not [c for c in calls if c[:2] == ["kernels", "status"]]  # no waiting on a kernel without its data
    err = capsys.readouterr().err
    assert note in err and "--data <owner>/<dataset>" in err and "--stages 01_extract,02_correlate" in err


def test_a_failed_kernel_stops_the_chain_and_says_how_to_resume(built, fake_kaggle, capsys, tmp_path):
    state_path = Path(os.environ["FAKE_KAGGLE_STATE"])
    state = json.loads(state_path.read_text())
    state["dataset_exists"] = True
    state["statuses"][_kernel(built, "03_train").id] = ["running", 'has status "error"']
    state_path.write_text(json.dumps(state))
    assert main(["kaggle", "push", "--build", str(built.out), "--wait", "--poll-interval", "0"]) == 1
    pushed = [c[3] for c in fake_kaggle() if c[:2] == ["kernels", "push"]]
    assert pushed == [str(built.out / k.folder) for k in built.kernels[:3]]
    err = capsys.readouterr().err
    assert "ended error" in err and "--stages 03_train,04_ensemble,05_submit" in err


@pytest.mark.parametrize("code, reason, hint", [
    (401, "Unauthorized", "the token or key is wrong, expired or revoked"),
    (403, "Forbidden", "rebuild with --owner <your username>"),
    (429, "Too Many Requests", "wait a few minutes"),
])
def test_a_refused_push_says_what_the_http_error_means_and_how_to_resume(built, fake_kaggle, capsys, code, reason,
                                                                         hint):
    """02's push answered with an HTTP error after 01 ran to the end: the error says what it means, and the stages to
    resume with are all those not yet run, not 02 alone (which would leave 03..05 unpushed)."""
    answer = f"{code} Client Error: {reason} for url: https://api.kaggle.com/v1/kernels.KernelsApiService/SaveKernel"
    tries = 1 + (len(kaggle_api.RETRY_WAITS_S) if code in kaggle_api.RETRY_STATUSES else 0)
    _state(dataset_exists=True, errors={"kernels push": [""] + [answer] * tries})
    with pytest.raises(KaggleError) as caught:
        kaggle_push.push(built.out, wait=True, poll_interval=0, sleep=lambda s: None)
    assert len([c for c in fake_kaggle() if c[:2] == ["kernels", "push"]]) == 1 + tries
    err = str(caught.value)
    assert f"pushing {_kernel(built, '02_correlate').id} failed" in err and hint in err
    assert f"HTTP {code}" in err and err.rstrip().endswith("--stages 02_correlate,03_train,04_ensemble,05_submit")


def test_a_push_kaggle_rate_limits_is_tried_again_after_a_wait(built, fake_kaggle, capsys):
    """A 429 (or 502-504) on 02's push, after 01 ran for hours, waits and pushes again instead of ending the chain;
    so does the wheel dataset's upload."""
    limited = "429 Client Error: Too Many Requests for url: https://api.kaggle.com/v1/x"
    _state(errors={"kernels push": ["", limited, "503 Server Error: Service Unavailable for url: x"],
                   "datasets create": [limited]})
    slept = []
    results = kaggle_push.push(built.out, wait=True, poll_interval=0, sleep=slept.append)
    assert set(results.values()) == {"complete"}
    pushes = [c for c in fake_kaggle() if c[:2] == ["kernels", "push"]]
    assert len(pushes) == len(built.kernels) + 2 and pushes[1] == pushes[2] == pushes[3]
    assert [s for s in slept if s] == [60.0, 60.0, 180.0]
    assert "Kaggle answered HTTP 429: trying `kaggle kernels push -p" in capsys.readouterr().out


def test_a_rate_limited_dataset_status_is_not_taken_for_a_missing_dataset(built, fake_kaggle, capsys):
    """`datasets status` answered 429 says nothing about the dataset: the push asks again rather than trying to
    create the existing wheel dataset anew (which Kaggle refuses), and stops if Kaggle keeps limiting it."""
    limited = "429 Client Error: Too Many Requests for url: https://api.kaggle.com/v1/x"
    _state(dataset_exists=True, errors={"datasets status": [limited]})
    kaggle_push.push(built.out, stages=["01"], wait=True, poll_interval=0, sleep=lambda s: None)
    uploads = [c[:2] for c in fake_kaggle() if c[:2] in (["datasets", "create"], ["datasets", "version"])]
    assert uploads == [["datasets", "version"]]
    _state(errors={"datasets status": [limited] * (1 + len(kaggle_api.RETRY_WAITS_S))})
    before = len(fake_kaggle())
    with pytest.raises(KaggleError, match=f"(?s)whether the wheel dataset {OWNER}/amzkit-wheel exists.*HTTP 429"):
        kaggle_push.push(built.out, stages=["01"], wait=True, poll_interval=0, sleep=lambda s: None)
    assert [c[:2] for c in fake_kaggle()[before:]] == [["datasets", "status"]] * (1 + len(kaggle_api.RETRY_WAITS_S))


@pytest.mark.parametrize("text, code", [
    ("401 - Unauthorized", 401), ("requests.exceptions.HTTPError: 403 Client Error: Forbidden for url: x", 403),
    ('{"code":429,"message":"TooManyRequests"}', 429), ("(409)\nReason: Conflict", 409),
    ("Kernel version 3 successfully pushed", None), ("Dataset creation error: 2024 files", None),
])
def test_http_statuses_are_read_from_every_cli_wording(text, code):
    assert kaggle_api.http_status(subprocess.CompletedProcess([], 1, "", text)) == code


def test_several_kernels_without_wait_are_refused(built, fake_kaggle, capsys):
    assert main(["kaggle", "push", "--build", str(built.out)]) == 1
    assert "--wait" in capsys.readouterr().err and fake_kaggle() == []


def test_dry_run_prints_the_commands_and_runs_nothing(built, fake_kaggle, capsys):
    assert main(["kaggle", "push", "--build", str(built.out), "--dry-run", "--wait"]) == 0
    assert fake_kaggle() == []
    out = capsys.readouterr().out
    assert f"kaggle datasets create -p {built.out / 'amzkit-wheel'} -r zip" in out
    assert "-r zip -m" in out and f"{built.wheel.name}" in out
    lines = [line for line in out.splitlines() if "kaggle kernels push" in line]
    assert [line.split("-p ")[1] for line in lines] == [str(built.out / k.folder) for k in built.kernels]
    assert main(["kaggle", "fetch", "03", "--build", str(built.out), "--dry-run"]) == 0
    assert fake_kaggle() == [] and f"kaggle kernels output {OWNER}/amzkit-03-train -p" in capsys.readouterr().out


def test_fetch_checks_every_listed_output_arrived(built, fake_kaggle, capsys, tmp_path):
    listing = json.dumps({"files": {"01_extract/metrics.json": 2, "01_extract/image_tables/manifest.json": 2}})
    _state(outputs={"amzkit/kaggle_outputs.json": listing, "amzkit/01_extract/metrics.json": "{}"})
    assert main(["kaggle", "fetch", "01", "--build", str(built.out), "--out", str(tmp_path / "o")]) == 1
    assert "image_tables/manifest.json" in capsys.readouterr().err
    _state(outputs={"amzkit/kaggle_outputs.json": listing, "amzkit/01_extract/metrics.json": "{}",
                    "amzkit/01_extract/image_tables/manifest.json": "{}"})
    assert main(["kaggle", "fetch", "01", "--build", str(built.out), "--out", str(tmp_path / "o")]) == 0
    fetched = tmp_path / "o" / _kernel(built, "01_extract").folder
    assert (fetched / "amzkit" / "01_extract" / "image_tables" / "manifest.json").is_file()

    _state(outputs={"amzkit/01_extract/metrics.json": "{}"})  # a run that stopped early, or a cut-short download
    assert main(["kaggle", "fetch", "01", "--build", str(built.out), "--out", str(tmp_path / "o")]) == 1
    assert "no kaggle_outputs.json arrived" in capsys.readouterr().err
    assert (fetched / "amzkit" / "01_extract" / "image_tables" / "manifest.json").is_file(), (
        "the earlier whole fetch stays, unmixed with the new one's files")
    assert (fetched.parent / (fetched.name + ".fetching") / "amzkit-03-train.log").is_file(), "the log is there"


def test_push_and_fetch_refuse_a_kaggle_cli_before_2_2_2(built, fake_kaggle, monkeypatch):
    monkeypatch.setattr(kaggle_api.importlib.metadata, "version", lambda name: "2.2.0")
    for command in (["push", "--stages", "01"], ["fetch", "01"]):
        with pytest.raises(kaggle_api.KaggleError, match=r"kaggle CLI 2.2.0 is too old.*kaggle>=2.2.2"):
            (kaggle_push.push if command[0] == "push" else kaggle_push.fetch)(
                *(() if command[0] == "push" else ("01",)), build_dir=built.out,
                **({"stages": ["01"]} if command[0] == "push" else {}))
    assert fake_kaggle() == []
    kaggle_api.check_cli_version("2.2.2")  # this one and later pass
    kaggle_api.check_cli_version("2.3.0rc1")


def test_push_refuses_stages_the_build_lacks(tmp_path, fake_kaggle):
    result = _build(tmp_path / "build", stages=["03"], cli_params=["03_train.embeddings=[]"])
    with pytest.raises(kaggle_api.KaggleError, match=r"no kernels of stages \['04_ensemble', '05_submit'\]"):
        kaggle_push.push(result.out, stages=["03_train", "04_ensemble", "05_submit"], dry_run=True)


@pytest.mark.parametrize("form", ["env-key", "env-token", "access_token"])
def test_credentials_never_reach_output_or_files(tmp_path, fake_kaggle, capsys, monkeypatch, form):
    monkeypatch.setattr(kaggle, "build_wheel", _dummy_wheel)
    monkeypatch.setattr(kaggle_image, "pip_download", fake_downloader)
    monkeypatch.setenv("FAKE_KAGGLE_LEAK", "1")  # the CLI echoes the key: amzkit must scrub it
    if form != "env-key":
        monkeypatch.delenv("KAGGLE_KEY")
    if form == "env-token":
        monkeypatch.setenv("KAGGLE_API_TOKEN", SECRET)
    if form == "access_token":
        monkeypatch.delenv("KAGGLE_USERNAME")  # a token alone does not name its user: --owner says who
        token = Path(os.environ["HOME"]) / ".kaggle" / "access_token"
        token.parent.mkdir(parents=True)
        token.write_text(SECRET + "\n")
        token.chmod(0o600)
    build = tmp_path / "b"
    owner = [] if form == "env-key" else ["--owner", OWNER]
    assert main(["kaggle", "build", "--out", str(build), "--data", DATA, *owner, "-p", "03.run_name=x"]) == 0
    assert main(["kaggle", "push", "--build", str(build), "--wait", "--poll-interval", "0"]) == 0
    _state(outputs={"amzkit/kaggle_outputs.json": json.dumps({"files": {}})})
    assert main(["kaggle", "fetch", "03_train", "--build", str(build), "--out", str(tmp_path / "outs")]) == 0
    captured = capsys.readouterr()
    if form != "access_token":  # with the file, the fake CLI has no key to leak
        assert "debug: using key ***" in captured.err + captured.out  # the leak happened and was scrubbed
    assert SECRET not in captured.out + captured.err
    assert (tmp_path / "outs" / "amzkit-03-train" / "amzkit-03-train.log").is_file()
    assert _meta(build / "amzkit-01-extract")["id"] == f"{OWNER}/amzkit-01-extract"
    for folder in (build, tmp_path / "outs"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in repr(read_credentials())
    assert all(SECRET not in " ".join(c) for c in fake_kaggle())


def test_push_without_credentials_says_which_file_to_create(built, fake_kaggle, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_KEY")
    assert main(["kaggle", "push", "--build", str(built.out), "--stages", "01"]) == 1
    err = capsys.readouterr().err
    assert "Generate New Token" in err and ".kaggle/access_token" in err and "KAGGLE_API_TOKEN" in err
    assert ".kaggle/kaggle.json" in err and "legacy" in err and fake_kaggle() == []


def test_push_refuses_another_owners_build(built, fake_kaggle, capsys, monkeypatch):
    monkeypatch.setenv("KAGGLE_USERNAME", "mallory")
    assert main(["kaggle", "push", "--build", str(built.out), "--stages", "01"]) == 1
    assert "--owner mallory" in capsys.readouterr().err and fake_kaggle() == []


@pytest.mark.parametrize("text, status", [
    ('alice/amzkit-01-extract has status "complete"', "complete"),
    ('alice/amzkit-01-extract has status "KernelWorkerStatus.COMPLETE"', "complete"),
    ("KernelWorkerStatus.RUNNING", "running"),
    ("status: running", "running"),
    ("queued", "queued"),
    ('alice/x has status "error"\nFailure message: "The following error occurred"', "error"),
    ("cancelAcknowledged", "cancelled"),
    ('alice/amzkit-status-running has status "cancel_requested"', "cancelled"),
    ("ready", "complete"),
    ("something new", "unknown"),
])
def test_status_wordings_are_normalised(text, status):
    assert normalise_status(text) == status


# --- credentials: the token forms of today and the legacy kaggle.json -------------------------------------------

def _write(path: Path, text: str, mode: int = 0o600) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
    return path


def _legacy(home: Path, mode: int = 0o600) -> Path:
    return _write(home / ".kaggle" / "kaggle.json", json.dumps({"username": "bob", "key": SECRET}), mode)


def test_each_token_form_is_accepted(tmp_path):
    home = tmp_path / "home"
    env_token = read_credentials(home=home, environ={"KAGGLE_API_TOKEN": SECRET, "KAGGLE_USERNAME": "carol"})
    assert (env_token.username, env_token.source, env_token.key) == ("carol", "KAGGLE_API_TOKEN", SECRET)
    token_file = _write(tmp_path / "token.txt", SECRET + "\n")
    assert read_credentials(home=home, environ={"KAGGLE_API_TOKEN": str(token_file)}).key == SECRET  # a path
    access = _write(home / ".kaggle" / "access_token", SECRET + "\n")
    from_file = read_credentials(home=home, environ={})
    assert (from_file.username, from_file.source, from_file.key) == ("", str(access), SECRET)
    access.unlink()
    legacy = _legacy(home)
    assert read_credentials(home=home, environ={}) == kaggle_api.Credentials("bob", str(legacy), SECRET)
    assert read_credentials(home=home, environ={"KAGGLE_USERNAME": "dan", "KAGGLE_KEY": "k"}).username == "dan"
    _write(home / ".kaggle" / "access_token", "tok\n")  # the CLI's order: a token before the legacy key
    assert read_credentials(home=home, environ={}).key == "tok"
    for creds in (env_token, from_file):
        assert SECRET not in repr(creds) and SECRET not in str(creds)


def test_a_token_saved_as_kaggle_json_says_where_it_belongs(tmp_path):
    _write(tmp_path / ".kaggle" / "kaggle.json", "KGAT_0123456789abcdef\n")
    with pytest.raises(KaggleError, match=r"looks like an API token.*\.kaggle/access_token") as err:
        read_credentials(home=tmp_path, environ={})
    assert "KGAT_0123456789abcdef" not in str(err.value)
    _write(tmp_path / "b" / ".kaggle" / "access_token", json.dumps({"username": "bob", "key": SECRET}))
    with pytest.raises(KaggleError, match=r"legacy .* belongs in .*kaggle\.json") as err:
        read_credentials(home=tmp_path / "b", environ={})
    assert SECRET not in str(err.value)


def test_world_readable_token_files_warn_how_to_fix_them(tmp_path):
    for make, name in ((_legacy, "kaggle.json"),
                       (lambda home, mode: _write(home / ".kaggle" / "access_token", SECRET, mode), "access_token")):
        home = tmp_path / name
        make(home, 0o644)
        with pytest.warns(KaggleCredentialsWarning, match=rf"chmod 600 .*{re.escape(name)}") as record:
            creds = read_credentials(home=home, environ={})
        assert creds.key == SECRET and all(SECRET not in str(w.message) for w in record)
        home_quiet = tmp_path / f"{name}-private"
        make(home_quiet, stat.S_IRUSR | stat.S_IWUSR)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            assert read_credentials(home=home_quiet, environ={}).key == SECRET


def test_no_credentials_at_all(tmp_path):
    assert read_credentials(home=tmp_path / "nobody", environ={}) is None
    with pytest.raises(KaggleError, match=r"Generate New Token.*access_token.*KAGGLE_API_TOKEN.*kaggle\.json"):
        kaggle_api.require_credentials(home=tmp_path / "nobody", environ={})


def test_build_needs_an_owner(tmp_path):
    with pytest.raises(KaggleError, match="--owner"):
        kaggle.build(tmp_path / "b", wheel_builder=_dummy_wheel, home=tmp_path, environ={}, data=[DATA])
    with pytest.raises(KaggleError, match="--owner"):  # a token alone does not say who its user is
        kaggle.build(tmp_path / "b", wheel_builder=_dummy_wheel, home=tmp_path, data=[DATA],
                     environ={"KAGGLE_API_TOKEN": SECRET})


# --- data sources ---------------------------------------------------------------------------------------------

def test_data_comes_from_a_dataset_or_a_competition(tmp_path):
    result = _build(tmp_path / "a", stages=["01"], data=["bob/amazon-ml-2025-zip"])
    meta = _meta(result.out / "amzkit-01-extract")
    assert meta["dataset_sources"] == ["bob/amazon-ml-2025-zip", f"{OWNER}/amzkit-wheel"]
    assert meta["competition_sources"] == []
    result = _build(tmp_path / "b", stages=["01"], data=(), competitions=["titanic"])
    meta = _meta(result.out / "amzkit-01-extract")
    assert meta["competition_sources"] == ["titanic"] and meta["dataset_sources"] == [f"{OWNER}/amzkit-wheel"]
    assert json.loads((result.out / "plan.json").read_text())["data"]["competition_sources"] == ["titanic"]


@pytest.mark.parametrize("data, competitions, expected", [
    ((), (), "still names 'your-kaggle-username'"),  # the template's placeholder
    (("amazon-ml-2025",), (), "'<owner>/<dataset>'"),
    ((), ("bob/titanic",), "competition's slug"),
])
def test_a_bad_data_source_is_refused_before_anything_is_written(tmp_path, data, competitions, expected):
    with pytest.raises(KaggleError, match=re.escape(expected)):
        _build(tmp_path / "b", data=data, competitions=competitions)
    assert not (tmp_path / "b").exists()


# --- the machine of each kernel -------------------------------------------------------------------------------

def test_a_finetune_03_kernel_gets_a_gpu(tmp_path):
    params = tmp_path / "params.yaml"
    params.write_text("03_train:\n  - {run_name: lgbm_text}\n  - {run_name: deberta, learner: finetune}\n")
    result = _build(tmp_path / "build", params_file=params)
    machines = {k.params["run_name"]: _meta(result.out / k.folder) for k in result.kernels if k.stage == "03_train"}
    assert (machines["deberta"]["enable_gpu"], machines["deberta"]["machine_shape"]) == (True, "NvidiaTeslaT4")
    assert (machines["lgbm_text"]["enable_gpu"], machines["lgbm_text"]["machine_shape"]) == (False, None)
    folder = result.out / "amzkit-03-train-deberta"
    assert kaggle.check_kernel_metadata(_meta(folder), folder, "03_train", {"learner": "finetune"}) == []
    problems = kaggle.check_kernel_metadata(_meta(folder), folder, "03_train", {"learner": "lightgbm"})
    assert any("enable_gpu" in p for p in problems)


def test_a_finetune_03_kernels_internet_and_gpu_follow_its_settings(tmp_path):
    """A finetune kernel always got a T4 and internet: with its encoder in a local-dir: folder from a dataset it
    needs no internet (a kernel with internet needs a phone-verified account), and with device cpu no GPU quota."""
    folder = "/kaggle/input/minilm-ds/all-MiniLM-L6-v2"
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"03_train": [
        {"run_name": "hub", "learner": "finetune", "learner_params": {"model": "bge-base"}},
        {"run_name": "local", "learner": "finetune", "learner_params": {"model": f"local-dir:{folder}"}},
        {"run_name": "cpu", "learner": "finetune", "learner_params": {"model": f"local-dir:{folder}", "device": "cpu"}},
        {"run_name": "hubcpu", "learner": "finetune", "learner_params": {"device": "cpu"}}]}))
    result = _build(tmp_path / "build", params_file=params, stages=["03"], data=[DATA, f"{OWNER}/minilm-ds"])
    machines = {k.params["run_name"]: _meta(result.out / k.folder) for k in result.kernels if k.stage == "03_train"}
    shape = {name: (meta["enable_gpu"], meta["enable_internet"], meta["machine_shape"])
             for name, meta in machines.items()}
    assert shape == {"hub": (True, True, "NvidiaTeslaT4"), "local": (True, False, "NvidiaTeslaT4"),
                     "cpu": (False, False, None), "hubcpu": (False, True, None)}
    for kernel in (k for k in result.kernels if k.stage == "03_train"):
        folder_ = result.out / kernel.folder
        assert kaggle.check_kernel_metadata(_meta(folder_), folder_, "03_train", kernel.params) == []


# --- probing /kaggle/input ------------------------------------------------------------------------------------

def _touch(path: Path, text: str = "x") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _data(folder: Path) -> Path:
    _touch(folder / "train.csv", "sample_id,catalog_content,image_link,price\n")
    _touch(folder / "test.csv", "sample_id,catalog_content,image_link\n")
    return folder


def test_flat_layout_competition_beats_a_previous_kernels_demo_copy(tmp_path):
    root = tmp_path / "input"
    work = root / "amzkit-01-extract"  # that kernel ran with work_dir=/kaggle/working
    demo = _data(work / "data")  # its demo copy: shallower than the competition data
    competition = _data(root / "amazon-ml-challenge-2025" / "student_resource" / "dataset")
    _touch(work / "01_extract" / "fashion-siglip" / "manifest.json", "{}")
    _touch(work / "01_extract" / "metrics.json", "{}")
    (root / "amzkit-wheel").mkdir()
    _dummy_wheel(root / "amzkit-wheel")
    assert find_data_dir(root) == competition
    assert find_data_dirs(root) == [competition, demo]
    assert find_stage_dirs("01_extract", root) == [work / "01_extract"]
    assert find_work_dirs(root) == [work]
    assert find_wheel_dir(root) == root / "amzkit-wheel"
    assert {m.kind for m in list_mounts(root)} == {"input"}


def test_grouped_layout_links_every_03_run_for_the_ensemble(tmp_path):
    root = tmp_path / "input"
    competition = _data(root / "competitions" / "amazon-ml-challenge-2025")
    _data(root / "datasets" / "bob" / "some-other-csvs")
    for run in ("lgbm_text", "siglip"):
        out = root / "notebooks" / OWNER / f"amzkit-03-train-{run}" / "amzkit" / "03_train"
        _touch(out / run / "metrics.json", json.dumps({"run": run}))
        _touch(out / "folds.csv", "id,fold\n")
    wheel_dir = root / "datasets" / OWNER / "amzkit-wheel"
    wheel_dir.mkdir(parents=True)
    _dummy_wheel(wheel_dir)
    mounts = {(m.kind, m.owner, m.slug) for m in list_mounts(root)}
    assert ("competition", "", "amazon-ml-challenge-2025") in mounts
    assert ("notebook", OWNER, "amzkit-03-train-siglip") in mounts and ("dataset", OWNER, "amzkit-wheel") in mounts
    assert find_data_dir(root) == competition
    assert find_wheel_dir(root) == wheel_dir
    assert len(find_stage_dirs("03_train", root)) == 2

    work = tmp_path / "working" / "amzkit"
    links = attach_previous_outputs(work, "04_ensemble", root)
    assert sorted(p.name for p in links) == ["folds.csv", "lgbm_text", "siglip"]  # folds.csv linked once
    assert list_runs(work, "03_train") == ["lgbm_text", "siglip"]
    assert json.loads((work / "03_train" / "siglip" / "metrics.json").read_text()) == {"run": "siglip"}
    assert attach_previous_outputs(work, "04_ensemble", root) == []  # idempotent
    assert detach_previous_outputs(work, root) == 3 and list_runs(work, "03_train") == []
    assert (root / "notebooks" / OWNER / "amzkit-03-train-siglip" / "amzkit" / "03_train" / "siglip").is_dir()


def test_nested_dataset_data_and_a_work_dir_at_the_output_root(tmp_path):
    root = tmp_path / "input"
    data = _data(root / "datasets" / "bob" / "amazon-ml-2025-data" / "dataset")
    extract = root / "notebooks" / OWNER / "amzkit-01-extract" / "01_extract"  # work_dir was /kaggle/working
    _touch(extract / "minilm" / "manifest.json", "{}")
    _touch(root / "notebooks" / OWNER / "empty-kernel" / "01_extract" / "notes.txt")  # not amzkit output
    assert find_data_dir(root) == data
    assert find_stage_dirs("01_extract", root) == [extract]
    work = tmp_path / "working"
    own = work / "01_extract" / "minilm"
    own.mkdir(parents=True)  # this kernel's own run wins over the mounted one
    assert attach_previous_outputs(work, "03_train", root) == []
    assert not own.is_symlink()
    assert find_wheel_dir(root) is None


def test_missing_data_lists_what_is_attached(tmp_path, capsys):
    root = tmp_path / "input"
    (root / "competitions" / "another-competition").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="competition:another-competition"):
        find_data_dir(root)
    assert main(["kaggle", "inputs", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "another-competition" in out and "(none: attach the dataset holding train.csv" in out


def test_01s_image_cache_is_linked_for_the_stages_that_read_images(tmp_path):
    """02's image hashes and 03's image groups read 01's image cache, which sits beside 01_extract/."""
    root = tmp_path / "input"
    out = root / "notebooks" / OWNER / "amzkit-01-extract" / "amzkit"
    _touch(out / "01_extract" / "fashion-siglip" / "manifest.json", "{}")
    _touch(out / "image_cache" / "fetch_manifest.jsonl", "")
    work = tmp_path / "working" / "amzkit"
    (work / "image_cache").parent.mkdir(parents=True)
    links = attach_previous_outputs(work, "03_train", root)
    assert work / "image_cache" in links and (work / "image_cache" / "fetch_manifest.jsonl").is_file()
    assert attach_previous_outputs(work, "03_train", root) == []  # idempotent
    assert detach_previous_outputs(work, root) == 2 and not (work / "image_cache").exists()
    assert (out / "image_cache" / "fetch_manifest.jsonl").is_file()  # the mounted input is untouched


def test_long_kernel_titles_are_shortened_within_kaggles_50_characters(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"01_extract": {"model": "color-stats", "text_model": "tfidf-svd"}, "03_train": [
        {"run_name": "lgbm-siglip-pca64-minilm-knn20-bags5-seed1", "embeddings": []},
        {"run_name": "lgbm-siglip-pca64-minilm-knn20-bags5-seed2", "embeddings": []}]}))
    result = _build(tmp_path / "build", params_file=params)
    trains = [k for k in result.kernels if k.stage == "03_train"]
    assert len({k.id for k in trains}) == 2, "shortened names stay apart"
    for kernel in result.kernels:
        meta = _meta(result.out / kernel.folder)
        assert 5 <= len(meta["title"]) <= 50 and kaggle.slugify(meta["title"]) == kernel.id.split("/")[1]
        assert kaggle.check_kernel_metadata(meta, result.out / kernel.folder) == []
    assert trains[0].title.startswith("amzkit 03 train lgbm-siglip-pca64-minilm-kn") and len(trains[0].title) == 50
    too_long = {**_meta(result.out / trains[0].folder), "title": "amzkit 03 train " + "x" * 40}
    assert any("longer than 50 characters" in p for p in kaggle.check_kernel_metadata(too_long, tmp_path))


def test_a_03_kernel_taking_pseudo_labels_from_another_03_kernel_is_refused_at_build(tmp_path):
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"03_train": [{"run_name": "base", "embeddings": []},
                                              {"run_name": "pseudo", "embeddings": [], "pseudo_label_run": "base"}]}))
    with pytest.raises(ValueError, match="a 03 kernel sees the 01/02 kernels' outputs, not another 03 kernel's runs"):
        _build(tmp_path / "build", params_file=params)


def test_a_03_kernel_taking_pseudo_labels_from_a_run_no_kernel_of_the_build_trains_is_refused(tmp_path):
    """A 03 kernel's work folder starts empty and mounts no 03 kernel: the source run is never there on Kaggle."""
    with pytest.raises(ValueError, match=r"run 'pl' takes pseudo-labels from run 'lgbm'.*not another 03 kernel's runs"):
        _build(tmp_path / "build", cli_params=["03_train.run_name=pl", "03_train.pseudo_label_run=lgbm"])
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"03_train": [{"embeddings": []},  # trains the default run_name, lgbm
                                              {"run_name": "pl", "embeddings": [], "pseudo_label_run": "lgbm"}]}))
    with pytest.raises(ValueError, match="from run 'lgbm'"):
        _build(tmp_path / "build", params_file=params)


@pytest.mark.parametrize("prefix", ["Straße", "we're", "1,000", "", "a" * 21])
def test_a_prefix_that_would_slugify_otherwise_on_kaggle_is_refused(tmp_path, prefix):
    with pytest.raises(ValueError, match="use ASCII letters, digits, spaces and '-'"):
        _build(tmp_path / "build", prefix=prefix)


def test_a_model_folder_under_kaggle_input_that_no_source_mounts_is_warned_of_at_build(tmp_path):
    """A kernel told to load local-dir:/kaggle/input/<slug>/... whose dataset is not attached stops on Kaggle:
    the build says so while it can still be fixed, for 01's model parameters and 03's learner_params alike."""
    folder = "/kaggle/input/minilm-ds/all-MiniLM-L6-v2"
    params = [f"01.text_model=local-dir:{folder}", "01.model=",
              "03.learner=finetune", f"03.learner_params={{\"model\": \"local-dir:{folder}\"}}"]
    with pytest.warns(UserWarning) as caught:
        _build(tmp_path / "alone", cli_params=params, stages=["01", "03"])
    said = [str(w.message) for w in caught if "no attached source" in str(w.message)]
    assert len(said) == 2 and all(f"local-dir:{folder}"[10:] in text for text in said)
    assert any(text.startswith("amzkit-01-extract: text_model: ") for text in said)
    assert any("learner_params" in text and "--data <owner>/<slug>" in text for text in said)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _build(tmp_path / "attached", cli_params=params, stages=["01", "03"], data=[DATA, f"{OWNER}/minilm-ds"])


def test_03_kernels_training_one_run_name_are_refused_at_build(tmp_path):
    """04 links each 03 kernel's runs into one 03_train/ and keeps the first of two same-named runs: two parameter
    sets left on the default run_name (or naming one run twice) would silently blend one run only."""
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"03_train": [{"learner": "ridge_tfidf"}, {"learner": "knn", "embeddings": []}]}))
    with pytest.raises(ValueError, match=r"train the run 'lgbm' \(the default run_name\).*own run_name"):
        _build(tmp_path / "build", params_file=params)
    params.write_text(json.dumps({"03_train": [{"run_name": "lgbm"}, {"learner": "knn", "embeddings": []}]}))
    with pytest.raises(ValueError, match="train the run 'lgbm'"):
        _build(tmp_path / "build", params_file=params)
    params.write_text(json.dumps({"03_train": [{"learner": "ridge_tfidf", "run_name": "ridge"},
                                              {"learner": "knn", "learner_params": {"embedding": "minilm"}}]}))
    assert len([k for k in _build(tmp_path / "build", params_file=params).kernels if k.stage == "03_train"]) == 2


def test_several_04_parameter_sets_are_refused_at_build(tmp_path):
    """05 mounts every 04 kernel but links each 04_ensemble/ entry from the first kernel holding it: a second 04
    parameter set (say method stack beside the default) was built and silently never submitted."""
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"04_ensemble": [{}, {"method": "stack"}]}))
    with pytest.raises(ValueError, match=r"2 04_ensemble parameter sets.*one parameter set"):
        _build(tmp_path / "build", params_file=params)
    params.write_text(json.dumps({"04_ensemble": [{"method": "stack"}]}))
    assert [k.params.get("method") for k in _build(tmp_path / "build", params_file=params).kernels
            if k.stage == "04_ensemble"] == ["stack"]


def test_inputs_lists_every_data_folder_when_several_are_attached(tmp_path, capsys):
    """data_dir auto takes the first folder whose CSVs fit the schema, which need not be the first found: `kaggle
    inputs` names them all rather than one the notebooks may pass over."""
    root = tmp_path / "input"
    first = _data(root / "datasets" / "alice" / "another-dataset")
    second = _data(root / "datasets" / "bob" / "amazon-ml-2025-data" / "dataset")
    assert main(["kaggle", "inputs", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "data_dir candidates" in out and str(first) in out and str(second) in out


@pytest.mark.parametrize("name, text", [("params.yaml", "03_train: {run_name: [x\n"),
                                        ("params.json", '{"03_train": {'),
                                        ("params.yml", "03_train:\n  run_name: \"x\n")])
def test_a_params_file_that_does_not_parse_is_refused_by_the_cli_without_a_traceback(tmp_path, capsys, name, text):
    params = tmp_path / name
    params.write_text(text)
    assert main(["kaggle", "build", "--out", str(tmp_path / "b"), "--owner", OWNER, "--data", DATA,
                 "--params", str(params)]) == 1
    err = capsys.readouterr().err
    assert f"--params {params} cannot be read" in err and "Traceback" not in err
    assert not (tmp_path / "b").exists()


def test_a_params_file_keyed_by_stage_numbers_reads_them_as_yaml_gives_them(tmp_path):
    """YAML reads an unquoted `03:` key as the number 3: the stage number the error message offered was refused
    as "unknown stage '3'"."""
    params = tmp_path / "kaggle.yaml"
    params.write_text("01: {model: color-stats, text_model: tfidf-svd}\n03: {run_name: siglip, embeddings: []}\n")
    kernels = _build(tmp_path / "build", params_file=params).kernels
    assert _kernel_params(kernels, "03_train")["run_name"] == "siglip"
    assert _kernel_params(kernels, "01_extract")["model"] == "color-stats"
    params.write_text("6: {run_name: x}\n")
    with pytest.raises(ValueError, match="unknown stage '06'"):
        kaggle.load_params_file(params)


def _kernel_params(kernels: list[kaggle.KernelPlan], stage: str) -> dict:
    (kernel,) = [k for k in kernels if k.stage == stage]
    return kernel.params


@pytest.mark.parametrize("params", [{"preset": "tuned-lgbm"}, {"learner_params": {"preset": "tuned-lgbm"}},
                                    {"preset": "tuned-lgbm", "tune_trials": 5}])
def test_a_03_kernel_with_a_saved_preset_is_refused_at_build(tmp_path, params):
    """A preset saved by a local tuning (03_train/presets/tuned-lgbm.json, as 03 suggests: -p preset tuned-lgbm)
    is in no 03 kernel's work folder: the kernel stopped on 'unknown preset' once 01 and 02 had run."""
    with pytest.raises(ValueError, match=r"03_train run 'lgbm' uses the saved preset 'tuned-lgbm'.*no saved preset"):
        _build(tmp_path / "build", cli_params=[f"03_train.{k}={json.dumps(v) if isinstance(v, dict) else v}"
                                               for k, v in params.items()])
    assert not (tmp_path / "build").exists()
    built = _build(tmp_path / "ok", cli_params=["03_train.preset=huber", "03_train.tune_trials=5"])
    assert _kernel(built, "03_train").params["preset"] == "huber"  # a built-in preset, tuned in the kernel: fine


def test_a_03_kernel_reading_an_01_run_no_01_kernel_extracts_is_warned_of_at_build(tmp_path):
    """01 built with another model than the 03 defaults read (fashion-siglip, minilm): the 03 kernel stopped on a
    missing 01 run only after 01 and 02 had run on Kaggle, and the build said nothing."""
    with pytest.warns(UserWarning, match=r"03_train run 'lgbm' reads the 01 run 'fashion-siglip' \('fashion-siglip:"
                                         r"pca:64'\), which no 01_extract kernel of this build extracts \(they extract "
                                         r"\['color-stats', 'tfidf-svd'\]\)"):
        _build(tmp_path / "a", cli_params=["01.model=color-stats", "01.text_model=tfidf-svd"])
    with pytest.warns(UserWarning, match=r"reads the 01 run 'minilm' \('minilm'\)"):  # the knn learner's run too
        _build(tmp_path / "b", cli_params=["01.model=color-stats", "01.text_model=tfidf-svd", "03.embeddings=[]",
                                           "03.learner=knn", '03.learner_params={"embedding": "minilm"}'])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # runs 01 extracts, or no 01 kernel in the build: nothing to say
        _build(tmp_path / "c", cli_params=["01.model=color-stats", "01.text_model=tfidf-svd",
                                           '03.embeddings=["color-stats:pca:8", "tfidf-svd"]'])
        _build(tmp_path / "d", stages=["03_train"])
        # learners that read no embeddings leave the default ones unread: following the warning's advice (set
        # -p 03_train.embeddings) would have the build refuse the run ('takes no embeddings')
        params = tmp_path / "params.json"
        params.write_text(json.dumps({"01": {"model": "color-stats", "text_model": "tfidf-svd"}, "03": [
            {"run_name": "ridge", "learner": "ridge_tfidf"}, {"run_name": "ft", "learner": "finetune"},
            {"run_name": "knn", "learner": "knn", "learner_params": {"embedding": "tfidf-svd"}}]}))
        _build(tmp_path / "e", params_file=params)
    with pytest.warns(UserWarning, match=r"reads the 01 run 'minilm' \('minilm:pca:8'\)"):  # lightgbm's own list
        _build(tmp_path / "f", cli_params=["01.model=color-stats", "01.text_model=tfidf-svd", "03.embeddings=[]",
                                           '03.learner_params={"embeddings": ["minilm:pca:8"]}'])
    with pytest.warns(UserWarning, match=r"reads the 01 run 'minilm' \('minilm'\)"):  # one name, as 03 takes it
        _build(tmp_path / "g", cli_params=["01.model=color-stats", "01.text_model=tfidf-svd", "03.embeddings=[]",
                                           '03.learner_params={"embeddings": "minilm"}'])


def test_02_04_and_05_kernels_naming_runs_no_kernel_of_the_build_makes_are_warned_of(tmp_path):
    """02's runs / baseline_runs name 01 runs, 04's runs and 05's source 03 runs: one that no kernel of the build
    makes stopped its kernel on Kaggle after the kernels before it had run (05 after all four)."""
    base = ["01.model=color-stats", "01.text_model=tfidf-svd", "03.embeddings=[]"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _build(tmp_path / "a", cli_params=[*base, "02.baseline_runs=siglip", "04.runs=lgbm,ridge", "05.source=ridge"])
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("02_correlate baseline_runs names the 01 run 'siglip'" in m for m in said)
    assert sum("names the 03 run 'ridge', which no 03_train kernel of this build trains (they train ['lgbm'])" in m
               for m in said) == 2  # 04's runs and 05's source
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _build(tmp_path / "b", cli_params=[*base, "02.runs=color-stats", "04.runs=lgbm", "05.source=lgbm"])


def test_a_02_kernel_probing_in_other_folds_than_a_03_kernel_trains_in_is_warned_of(tmp_path):
    """02 probes in the folds 03 will make with 02's n_folds/fold_strategy/seed: on Kaggle its kernel runs before
    03's, so a build giving them other settings had 02 score every embedding on another split, silently."""
    base = ["01.model=color-stats", "01.text_model=tfidf-svd", "03.embeddings=[]"]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _build(tmp_path / "a", cli_params=[*base, "03.seed=7", "03.n_folds=10"])
    said = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    assert any("02_correlate probes in other folds than 03_train run 'lgbm' trains in (n_folds 5 vs 10, seed 42 vs 7)"
               in m for m in said), said
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _build(tmp_path / "b", cli_params=[*base, "02.seed=7", "03.seed=7"])


@pytest.mark.parametrize("learner, params, expected", [
    ("lightgbm", {"bgs": 2}, "learner 'lightgbm' takes no parameter 'bgs' (did you mean 'bags'?)"),
    ("lightgbm", {"params": {"num_leave": 7}}, "LightGBM has no parameter 'num_leave'"),
    ("xgboost", {"param": {"max_depth": 4}}, "learner 'xgboost' takes no parameter 'param' (did you mean 'params'?)"),
    ("ridge_tfidf", {"alpah": 2.0}, "learner 'ridge_tfidf' takes no parameter 'alpah' (did you mean 'alpha'?)"),
    ("knn", {"embedding": "minilm", "n_neighbours": 5}, "learner 'knn' takes no parameter 'n_neighbours'"),
    ("mlp", {"epoch": 3}, "learner 'mlp' takes no parameter 'epoch' (did you mean 'epochs'?)"),
    ("finetune", {"epoch": 3}, "learner 'finetune' takes no parameter 'epoch' (did you mean 'epochs'?)"),
    ("finetune", {"n_folds": 3}, "learner_params names ['n_folds']: it is a parameter of the run"),
])
def test_a_03_kernels_learner_params_its_learner_refuses_stop_the_build(tmp_path, learner, params, expected):
    """03 builds its learner from learner_params when it starts, on Kaggle after 01 and 02 had run: a misspelt key
    ({"epoch": 3} for finetune) was built and pushed, and its kernel stopped there an hour in."""
    with pytest.raises(ValueError, match=r"03_train run 'x' would stop on Kaggle once 01 and 02 had run: .*"
                                         + re.escape(expected)):
        _build(tmp_path / "build", stages=["03"], cli_params=[
            "03.run_name=x", f"03.learner={learner}", f"03.learner_params={json.dumps(params)}"])
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("learner, params, expected", [
    ("xgboost", {"max_dpeth": 6}, "'max_dpeth' is not a xgboost parameter; did you mean 'max_depth'"),
    ("xgboost", {"huber_slope": 2}, "xgboost would not use params ['huber_slope'] with these settings (booster "
                                    "gbtree, objective reg:absoluteerror"),  # XGBoost's own validation
    ("xgboost", {"max_depth": -1}, "XGBoost refuses these params: value -1 for Parameter max_depth"),
    ("xgboost", {"n_estimators": 0}, "params 'n_estimators' (the number of trees) must be a whole number >= 1, got 0"),
    ("catboost", {"depht": 6}, "'depht' is not a catboost parameter; did you mean 'depth'"),
])
def test_a_03_kernels_xgboost_or_catboost_params_their_library_refuses_stop_the_build(tmp_path, learner, params,
                                                                                       expected):
    """XGBoost's and CatBoost's params were checked when the run prepared, on Kaggle after 01 and 02 had run: a
    misspelt {max_dpeth: 6} was built and pushed. Where the library is installed the build checks them as 03 does."""
    pytest.importorskip(learner)
    with pytest.raises(ValueError, match=r"03_train run 'x' would stop on Kaggle once 01 and 02 had run: "
                                         + re.escape(f"learner {learner!r}: {expected}")):
        _build(tmp_path / "build", stages=["03"], cli_params=[
            "03.run_name=x", f"03.learner={learner}", f"03.learner_params={json.dumps({'params': params})}"])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # checked, so nothing to say
        _build(tmp_path / "ok", stages=["03"], cli_params=[
            f"03.learner={learner}", '03.learner_params={"params": {"max_depth": "6", "learning_rate": 0.1}}'])


def test_a_03_kernels_xgboost_params_the_build_cannot_check_are_said_to_be_unchecked(tmp_path, monkeypatch):
    """Without xgboost where the build runs its params cannot be checked: the build says so (and what to do) rather
    than passing them in silence; what needs no library (a key the run sets) is still refused."""
    monkeypatch.setitem(sys.modules, "xgboost", None)  # as if not installed
    with pytest.warns(UserWarning, match=r"03_train run 'lgbm': xgboost is not installed here, so its params "
                                         r"\['max_dpeth'\] could not be checked .* pip install xgboost"):
        _build(tmp_path / "build", stages=["03"], cli_params=[
            "03.learner=xgboost", '03.learner_params={"params": {"max_dpeth": 6}}'])
    with pytest.raises(ValueError, match="params 'seed' is set by the run's seed"):
        _build(tmp_path / "seed", stages=["03"], cli_params=[
            "03.learner=xgboost", '03.learner_params={"params": {"seed": 6}}'])


TORCH_LEARNER_VALUE_TYPOS = [
    ("mlp", {"lr": -1}, "learner 'mlp': lr must be a number > 0, got -1"),
    ("mlp", {"loss": "smape2"}, "learner 'mlp': loss='smape2' is not one of ['huber', 'l1', 'mse', 'smape', "
                                "'smooth_l1'] (did you mean 'smape'?)"),
    ("mlp", {"epochs": 0}, "learner 'mlp': epochs must be an integer >= 1, got 0"),
    ("sparse_mlp", {"views": ["name_word"]}, "learner 'sparse_mlp': views='name_word' is not one of ['name_chars', "
                                              "'name_words', 'text_words'] (did you mean 'name_words'?)"),
    ("finetune", {"epochs": 0}, "learner 'finetune': epochs must be a number > 0 (a fraction is allowed), got 0"),
    ("finetune", {"model": "deberta-v3-bse"}, "unknown finetune model 'deberta-v3-bse' (did you mean "
                                              "'deberta-v3-base'?); choose from ['bge-base', 'deberta-v3-base', "
                                              "'deberta-v3-large', 'minilm'] or pass local-dir:<folder>"),
    ("finetune", {"max_len": 100000}, "learner 'finetune': max_len=100000 is longer than minilm takes (512 tokens); "
                                      "use max_len <= 512"),
    ("finetune", {"model": "bge-base", "max_len": 1024}, "learner 'finetune': max_len=1024 is longer than bge-base "
                                                         "takes (512 tokens)"),
    ("finetune", {"precision": "fp8"}, "learner 'finetune': precision='fp8' is not one of ['auto', 'bf16', 'fp16', "
                                       "'fp32']"),
]


@pytest.mark.parametrize("learner, params, expected", TORCH_LEARNER_VALUE_TYPOS)
def test_a_03_kernels_torch_learner_values_its_learner_refuses_stop_the_build(tmp_path, learner, params, expected):
    """mlp's and finetune's values were checked on Kaggle only (their modules import torch): {lr: -1}, {loss:
    smape2}, an unknown encoder or {precision: fp8} were built and pushed, and the kernel stopped an hour in."""
    with pytest.raises(ValueError, match=r"03_train run 'x' would stop on Kaggle once 01 and 02 had run: "
                                         + re.escape(expected)):
        _build(tmp_path / "build", stages=["03"], cli_params=[
            "03.run_name=x", f"03.learner={learner}", f"03.learner_params={json.dumps(params)}", "03.embeddings=[]"])
    assert not (tmp_path / "build").exists()


def test_a_03_kernels_valid_torch_learner_values_build(tmp_path):
    """Numbers YAML keeps as text (1e-3), a local-dir encoder (its limits are checked when it is loaded) and each
    choice's edge build."""
    params = tmp_path / "params.yaml"
    params.write_text("03:\n"
                      "  - {run_name: m, learner: mlp, embeddings: [], learner_params: {lr: 1e-3, loss: huber, "
                      "epochs: 1, hidden: [64], bags: 2}}\n"
                      "  - {run_name: f, learner: finetune, embeddings: [], learner_params: {model: deberta-v3-large, "
                      "max_len: 512, lr: 1e-5, epochs: 0.5, precision: fp16, padding: max_length, pooling: cls}}\n"
                      "  - {run_name: l, learner: finetune, embeddings: [], learner_params: {model: "
                      "'local-dir:../input/enc', max_len: 4096}}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the local-dir folder is attached to no kernel: warned of, not refused
        built = _build(tmp_path / "ok", stages=["03"], params_file=params)
    assert [k.params["run_name"] for k in built.kernels] == ["m", "f", "l"]


def test_a_03_kernel_tuning_what_03_cannot_tune_stops_the_build(tmp_path):
    """tune_trials with another learner than lightgbm, or beside learner_params' preset, stopped the kernel on
    Kaggle; a tuned lightgbm run with a setting the study shares (bags) builds."""
    for given, expected in ((["03.learner=ridge_tfidf", "03.tune_trials=5"], "applies to learner 'lightgbm', not "
                                                                              "'ridge_tfidf'"),
                            (["03.learner=mlp", "03.tune_trials=5"], "not 'mlp'"),
                            (['03.learner_params={"preset": "huber"}', "03.tune_trials=5"],
                             "learner_params sets 'preset' while tune_trials tunes one"),
                            (['03.lgb_params={"num_leaves": 7, "learning_rate": 0.1, "min_data_in_leaf": 5, '
                              '"feature_fraction": 1, "bagging_fraction": 1, "lambda_l1": 0, "lambda_l2": 0, '
                              '"objective": "l1"}', "03.tune_trials=5"], "fix every parameter the search would tune")):
        with pytest.raises(ValueError, match=re.escape(expected)):
            _build(tmp_path / "build", stages=["03"], cli_params=given)
    built = _build(tmp_path / "ok", stages=["03"], cli_params=['03.learner_params={"bags": 2}', "03.tune_trials=5"])
    assert _kernel(built, "03_train").params == {"learner_params": {"bags": 2}, "tune_trials": 5}


def test_the_builds_learner_check_needs_neither_torch_nor_the_learners_packages(tmp_path):
    """kaggle build runs on the user's machine: it checks a torch learner's learner_params (names and values)
    without importing torch (seconds) and an xgboost run's without xgboost installed (Kaggle's image has both)."""
    script = f"""
import sys, warnings
class Absent:  # as if neither were installed: importing either fails
    def find_spec(self, name, path=None, target=None):
        if name.partition(".")[0] in ("torch", "xgboost"):
            raise ModuleNotFoundError(f"No module named {{name!r}}")
sys.meta_path.insert(0, Absent())
sys.path.insert(0, {str(REPO_ROOT / "tests")!r})
from test_kaggle import _build
from pathlib import Path
warnings.simplefilter("ignore")
for learner, given in (("finetune", '{{"epoch": 3}}'), ("finetune", '{{"precision": "fp8"}}'),
                      ("finetune", '{{"model": "deberta-v3-bse"}}'), ("mlp", '{{"loss": "smape2"}}')):
    try:
        _build(Path({str(tmp_path)!r}) / "bad", stages=["03"], cli_params=[f"03.learner={{learner}}",
                                                                            f"03.learner_params={{given}}"])
    except ValueError as err:
        print("refused:", err)
params = Path({str(tmp_path)!r}) / "params.json"
params.write_text('{{"03": [{{"run_name": "m", "learner": "mlp", "learner_params": {{"epochs": 3, "lr": "1e-3"}}}}, '
                  '{{"run_name": "f", "learner": "finetune", "learner_params": {{"model": "bge-base", '
                  '"precision": "fp16"}}}}, '
                  '{{"run_name": "x", "learner": "xgboost", "learner_params": {{"params": {{"max_depth": 4}}}}}}]}}')
print("built:", [k.params["learner"] for k in _build(Path({str(tmp_path)!r}) / "ok", stages=["03"],
                                                     params_file=params).kernels])
print("imported:", sorted(m for m in ("torch", "xgboost", "amzkit.ml.mlp", "amzkit.ml.finetune", "amzkit.ml.torch_fit")
                          if m in sys.modules))
"""
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    refused = [line for line in done.stdout.splitlines() if line.startswith("refused: 03_train run 'lgbm' would stop "
                                                                             "on Kaggle")]
    assert len(refused) == 4, done.stdout
    assert "'epoch' (did you mean 'epochs'?)" in refused[0]  # a name, then values: mlp's and finetune's rules
    assert "precision='fp8' is not one of ['auto', 'bf16', 'fp16', 'fp32']" in refused[1]
    assert "unknown finetune model 'deberta-v3-bse' (did you mean 'deberta-v3-base'?)" in refused[2]
    assert "learner 'mlp': loss='smape2' is not one of" in refused[3]
    assert "built: ['finetune', 'mlp', 'xgboost']" in done.stdout or "built: ['mlp', 'finetune', 'xgboost']" \
        in done.stdout, done.stdout
    assert "imported: []" in done.stdout, done.stdout


def test_a_tuned_03_kernel_with_learner_params_params_left_empty_builds(tmp_path):
    """`learner_params: {params: }` in a build's YAML is null: the build (and 03 on Kaggle) stopped on a TypeError."""
    params = tmp_path / "params.yaml"
    params.write_text("03:\n  learner_params: {bags: 2, params: }\n  tune_trials: 5\n")
    built = _build(tmp_path / "build", stages=["03"], params_file=params)
    assert _kernel(built, "03_train").params["learner_params"] == {"bags": 2, "params": None}


def test_a_misspelt_built_in_preset_is_refused_as_such_not_as_a_saved_one(tmp_path):
    """preset huberr was refused as 'the saved preset huberr', sending the user after 03_train/presets/huberr.json."""
    with pytest.raises(ValueError, match=r"preset 'huberr' is none of the built-in presets .*did you mean 'huber'\?"):
        _build(tmp_path / "build", stages=["03"], cli_params=['03.learner_params={"preset": "huberr"}'])
    with pytest.raises(ValueError, match="uses the saved preset 'tuned-huber'"):  # 03's name for a tuned preset
        _build(tmp_path / "build", stages=["03"], cli_params=["03.preset=tuned-huber"])


@pytest.mark.parametrize("given, expected", [
    (['03.features=["quantty", "brand"]'], "unknown feature groups ['quantty']"),
    (["03.learner=mlp", '03.features=["brand", "brand"]', "03.embeddings=[]"],
     "feature group 'brand' is listed more than once"),
    (['03.embeddings=["minilm", "minilm"]'], "embedding 'minilm' is listed more than once"),
])
def test_a_03_kernels_feature_groups_its_learner_refuses_stop_the_build(tmp_path, given, expected):
    """A misspelt feature group was built and pushed; the 03 kernel stopped on it once 01 and 02 had run."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        _build(tmp_path / "build", stages=["03"], cli_params=given)
    assert not (tmp_path / "build").exists()


@pytest.mark.parametrize("learner, params, expected", [
    ("knn", {}, "the knn learner needs embedding='<01_extract run>'"),
    ("knn", {"embedding": "minilm", "k": 0}, "the knn learner needs k, a whole number of neighbours >= 1, got 0"),
    ("lightgbm", {"bags": 0}, "bags must be a whole number from 1 to"),
    ("xgboost", {"valid_fraction": 0.9}, "valid_fraction must be in [0, "),
])
def test_a_03_kernels_settings_its_learner_refuses_before_reading_data_stop_the_build(tmp_path, learner, params,
                                                                                        expected):
    """`learner: knn` without its embedding (or k 0, bags 0) stopped the 03 kernel as it prepared, once 01 and 02
    had run on Kaggle: the learner's own check of its settings runs at build too."""
    with pytest.raises(ValueError, match=re.escape(expected)):
        _build(tmp_path / "build", stages=["03"], cli_params=[
            f"03.learner={learner}", f"03.learner_params={json.dumps(params)}", "03.embeddings=[]"])
    built = _build(tmp_path / "ok", stages=["03"], cli_params=[
        "03.learner=knn", '03.learner_params={"embedding": "minilm", "k": "2e1"}', "03.embeddings=[]"])
    assert _kernel(built, "03_train").params["learner_params"] == {"embedding": "minilm", "k": "2e1"}  # 20 there


def test_a_data_dir_or_work_dir_no_kernel_can_reach_on_kaggle_stops_the_build(tmp_path):
    """-p data_dir as papermill needs it here (this machine's folder) baked into a kernel: on Kaggle it stopped on a
    folder it cannot find (02 after 01 had run), and a work_dir outside /kaggle/working lost the outputs. Both were
    only warned of, and the kernels built and pushed; a /kaggle/input folder no source seems to mount may still be
    found (a mount named otherwise), so that stays a warning, as does a data_dir the kernel does not read."""
    local = ["01.data_dir=/home/me/student_resource/dataset", "02.data_dir=~/data", "03.work_dir=/tmp/runs",
             "04.data_dir=/home/me/data"]  # 04 reads no CSV unless it calibrates or stacks on columns
    with pytest.raises(ValueError, match="would fail on Kaggle whatever is attached") as refused:
        _build(tmp_path / "local", cli_params=local)
    said = str(refused.value).split("; amzkit-")
    assert len(said) == 3, said
    assert "amzkit-01-extract: data_dir: /home/me/student_resource/dataset is not under /kaggle/input, where a " \
           "kernel's inputs are mounted" in said[0] and "leave data_dir auto" in said[0]
    assert said[1].startswith("02-correlate: data_dir: ~/data is not under /kaggle/input")
    assert said[2].startswith("03-train: work_dir: /tmp/runs is not under /kaggle/working") and "leave work_dir auto" \
        in said[2]
    assert not (tmp_path / "local").exists()
    with pytest.raises(ValueError, match="amzkit-04-ensemble: data_dir: /home/me/data is not under /kaggle/input"):
        _build(tmp_path / "local", cli_params=["04.data_dir=/home/me/data", "04.calibrate_by=unit_family"])
    with pytest.warns(UserWarning) as caught:
        _build(tmp_path / "mounted", cli_params=["05.data_dir=/kaggle/input/other-dataset", "04.data_dir=/home/x"])
    said = [str(w.message) for w in caught if "data_dir: " in str(w.message)]
    assert said == [said[0]] and said[0].startswith("amzkit-05-submit: data_dir: /kaggle/input/other-dataset is in "
                                                    "no attached source")
    kaggle_paths = ["01.data_dir=../input/amazon-ml-2025", "02.data_dir=/kaggle/input/amazon-ml-2025/dataset",
                    "03.work_dir=runs", "04.data_dir=demo", "04.work_dir=/kaggle/working",
                    "05.work_dir=/kaggle/working/amzkit"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _build(tmp_path / "kaggle", cli_params=kaggle_paths + ["01.model=color-stats", "01.text_model=minilm",
                                                               '03.embeddings=["minilm"]'])


def test_an_mlp_kernel_on_device_cuda_gets_a_t4(tmp_path):
    """An mlp / sparse_mlp kernel with `device: cuda` was given Kaggle's CPU machine, where it cannot run; without
    it (device auto is the CPU there) it stays on the CPU machine. Offline either way (inputs mounted)."""
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"03_train": [
        {"run_name": "mlp_gpu", "learner": "mlp", "learner_params": {"device": "cuda"}},
        {"run_name": "sparse_gpu", "learner": "sparse_mlp", "learner_params": {"device": "cuda"}},
        {"run_name": "mlp_cpu", "learner": "mlp", "learner_params": {"device": "auto"}},
        {"run_name": "sparse_cpu", "learner": "sparse_mlp"}]}))
    result = _build(tmp_path / "build", params_file=params, stages=["03"])
    shape = {k.params["run_name"]: (meta["enable_gpu"], meta["enable_internet"], meta["machine_shape"])
             for k in result.kernels if k.stage == "03_train" for meta in [_meta(result.out / k.folder)]}
    assert shape == {"mlp_gpu": (True, False, "NvidiaTeslaT4"), "sparse_gpu": (True, False, "NvidiaTeslaT4"),
                     "mlp_cpu": (False, False, None), "sparse_cpu": (False, False, None)}
    for kernel in (k for k in result.kernels if k.stage == "03_train"):
        folder = result.out / kernel.folder
        assert kaggle.check_kernel_metadata(_meta(folder), folder, "03_train", kernel.params) == []
