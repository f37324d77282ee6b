"""The Kaggle side: kernel folders that obey the facts file, the push sequence through a fake `kaggle` CLI,
credentials that never leak, and /kaggle/input probing over the mount layouts Kaggle uses."""

from __future__ import annotations

import ast
import json
import os
import re
import stat
import sys
import warnings
import zipfile
from pathlib import Path

import nbformat
import pytest
from conftest import REPO_ROOT

from amzkit.app import kaggle
from amzkit.app.cli import main
from amzkit.core.workdir import STAGES, list_runs

SECRET = "s3cr3t-k3y-0f-the-t3st-5a5a5a5a"
OWNER = "alice"


def _dummy_wheel(folder: Path) -> Path:
    wheel = folder / "amzkit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"not a real wheel")
    return wheel


def _build(out: Path, **kwargs) -> kaggle.BuildResult:
    return kaggle.build(out, owner=OWNER, wheel_builder=_dummy_wheel, environ={}, **kwargs)


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> kaggle.BuildResult:
    return _build(tmp_path_factory.mktemp("kaggle") / "build", cli_params=[
        "03_train.run_name=siglip", "03_train.embeddings=[\"fashion-siglip\"]", "01.batch_size=32"])


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
        assert meta["competition_sources"] == ["amazon-ml-challenge-2025"]
        assert f"{OWNER}/amzkit-wheel" in meta["dataset_sources"]
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
    assert 'run_name = "lgbm"' in nb.cells[at].source  # the defaults stay as they were
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
    params = tmp_path / "params.json"
    params.write_text(json.dumps({"05_submit": {"sorce": "04_ensemble"}}))
    assert main(["kaggle", "build", "--out", str(tmp_path / "b"), "--owner", OWNER, "--params", str(params)]) == 1
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


def test_wheel_dataset_folder(built):
    meta = json.loads((built.dataset_dir / "dataset-metadata.json").read_text())
    assert meta["id"] == f"{OWNER}/amzkit-wheel" and len(meta["title"]) >= 6 and meta["licenses"]
    assert built.wheel.parent == built.dataset_dir and built.wheel.name.startswith("amzkit-")


def test_the_wheel_is_really_built(tmp_path):
    wheel = kaggle.build_wheel(tmp_path)
    names = zipfile.ZipFile(wheel).namelist()
    assert wheel.name.startswith("amzkit-") and wheel.suffix == ".whl"
    assert {"amzkit/__init__.py", "amzkit/kaggle.py", "amzkit/notebook.py"} <= set(names)
    assert not any(n.startswith(("tests/", "build/", "notebooks/")) for n in names)


# --- the install cell -----------------------------------------------------------------------------------------

def test_install_cell_is_short_and_defines_only_private_names():
    tree = ast.parse(kaggle.INSTALL_CELL)
    assert len(tree.body) <= 3
    namespace: dict = {}
    exec(compile(kaggle.INSTALL_CELL, "<install>", "exec"), namespace)  # amzkit is importable here: a no-op
    assert [n for n in namespace if n != "__builtins__" and not n.startswith("_")] == []


_REAL_FIND_SPEC = __import__("importlib.util").util.find_spec


def _run_install_cell(root: Path, monkeypatch, installed: bool) -> list[list[str]]:
    import importlib.util
    import subprocess

    calls: list[list[str]] = []
    real_find_spec = _REAL_FIND_SPEC
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "amzkit" and not installed else real_find_spec(name, *a))
    monkeypatch.setattr(subprocess, "check_call", lambda cmd, **kw: calls.append(cmd) or 0)
    source = kaggle.INSTALL_CELL.replace(f'"{kaggle.KAGGLE_INPUT}"', repr(str(root)))
    assert source != kaggle.INSTALL_CELL
    exec(compile(source, "<install>", "exec"), {})
    return calls


def test_install_cell_installs_from_the_probed_wheel_folder_only_when_needed(tmp_path, monkeypatch):
    wheel_dir = tmp_path / "datasets" / OWNER / "amzkit-wheel"
    wheel_dir.mkdir(parents=True)
    _dummy_wheel(wheel_dir)
    (wheel_dir / "ftfy-6.3.1-py3-none-any.whl").write_bytes(b"x")
    (calls,) = _run_install_cell(tmp_path, monkeypatch, installed=False)
    assert calls[:3] == [sys.executable, "-m", "pip"] and "--no-index" in calls
    assert calls[calls.index("--find-links") + 1] == str(wheel_dir) and "amzkit" in calls
    assert str(wheel_dir / "ftfy-6.3.1-py3-none-any.whl") in calls
    assert kaggle.find_wheel_dir(tmp_path) == wheel_dir
    assert _run_install_cell(tmp_path, monkeypatch, installed=True) == []  # amzkit importable: no-op
    assert _run_install_cell(tmp_path / "absent", monkeypatch, installed=False) == []  # off Kaggle: no-op


def test_built_notebooks_start_with_the_install_cell_once(built):
    for kernel in built.kernels:
        nb = nbformat.read(built.out / kernel.folder / f"{kernel.stage}.ipynb", as_version=4)
        code = [c for c in nb.cells if c.cell_type == "code"]
        assert sum('find_spec("amzkit")' in c.source for c in code) == 1
        assert 'find_spec("amzkit")' in code[0].source


# --- push through a fake kaggle CLI --------------------------------------------------------------------------

FAKE_KAGGLE = """#!{python}
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
with open(os.environ["FAKE_KAGGLE_LOG"], "a") as fh:
    fh.write(json.dumps(args) + "\\n")
state_path = Path(os.environ["FAKE_KAGGLE_STATE"])
state = json.loads(state_path.read_text())
if args[:2] == ["kernels", "status"]:
    queue = state["statuses"].get(args[2], ['has status "complete"'])
    answer = queue.pop(0) if len(queue) > 1 else queue[0]
    print(f"{{args[2]}} {{answer}}" if answer.startswith("has status") else answer)
elif args[:2] == ["kernels", "push"]:
    print("Kernel version 1 successfully pushed.  Please check progress at https://www.kaggle.com/code/x")
    if os.environ.get("FAKE_KAGGLE_LEAK"):
        print("debug: using key " + os.environ.get("KAGGLE_KEY", ""), file=sys.stderr)
elif args[:2] == ["datasets", "status"]:
    if not state["dataset_exists"]:
        print("404 - Not Found", file=sys.stderr)
        sys.exit(1)
    print("ready")
elif args[:2] == ["datasets", "create"]:
    state["dataset_exists"] = True
    print("Your private Dataset is being created. Please check progress at https://www.kaggle.com/x")
elif args[:2] == ["datasets", "version"]:
    print("Dataset version is being created. Please check progress at https://www.kaggle.com/x")
elif args[:2] == ["kernels", "output"]:
    folder = Path(args[args.index("-p") + 1])
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "amzkit-03-train.log").write_text("[]")
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
    state.write_text(json.dumps({"dataset_exists": False,
                                 "statuses": {ids[s]: answers for s, answers in STATUS_ANSWERS.items()}}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_KAGGLE_LOG", str(log))
    monkeypatch.setenv("FAKE_KAGGLE_STATE", str(state))
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("KAGGLE_CONFIG_DIR", raising=False)
    monkeypatch.setenv("KAGGLE_USERNAME", OWNER)
    monkeypatch.setenv("KAGGLE_KEY", SECRET)

    def calls() -> list[list[str]]:
        return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []

    return calls


def test_push_uploads_the_dataset_then_each_kernel_in_order_polling_until_complete(built, fake_kaggle, capsys):
    build = str(built.out)
    assert main(["kaggle", "push", "--build", build, "--wait", "--poll-interval", "0"]) == 0
    calls = fake_kaggle()
    dataset_dir = str(built.out / "amzkit-wheel")
    assert calls[0] == ["datasets", "status", f"{OWNER}/amzkit-wheel"]
    assert calls[1] == ["datasets", "create", "-p", dataset_dir, "-r", "zip"]
    pushes = [i for i, c in enumerate(calls) if c[:2] == ["kernels", "push"]]
    assert [calls[i][3] for i in pushes] == [str(built.out / k.folder) for k in built.kernels]
    assert all(c[:2] == ["datasets", "status"] for c in calls[2:pushes[0]])  # waited for the dataset
    for n, kernel in enumerate(built.kernels):  # each kernel polled until complete before the next push
        end = pushes[n + 1] if n + 1 < len(pushes) else len(calls)
        polls = calls[pushes[n] + 1:end]
        assert polls == [["kernels", "status", kernel.id]] * len(STATUS_ANSWERS[kernel.stage])
    out = capsys.readouterr().out
    assert all(f"{k.id}: complete" in out for k in built.kernels)
    assert f"{built.kernels[0].id}: queued" in out and f"{built.kernels[0].id}: running" in out

    assert main(["kaggle", "push", "--build", build, "--stages", "04_ensemble", "--message", "v2"]) == 0
    again = fake_kaggle()[len(calls):]
    assert again[1] == ["datasets", "version", "-p", dataset_dir, "-r", "zip", "-m", "v2"]  # it exists now
    assert again[2:] == [["kernels", "push", "-p", str(built.out / "amzkit-04-ensemble")]]


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


def test_several_kernels_without_wait_are_refused(built, fake_kaggle, capsys):
    assert main(["kaggle", "push", "--build", str(built.out)]) == 1
    assert "--wait" in capsys.readouterr().err and fake_kaggle() == []


def test_dry_run_prints_the_commands_and_runs_nothing(built, fake_kaggle, capsys):
    assert main(["kaggle", "push", "--build", str(built.out), "--dry-run", "--wait"]) == 0
    assert fake_kaggle() == []
    out = capsys.readouterr().out
    assert f"kaggle datasets create -p {built.out / 'amzkit-wheel'} -r zip" in out
    assert "-r zip -m" in out
    lines = [line for line in out.splitlines() if "kaggle kernels push" in line]
    assert [line.split("-p ")[1] for line in lines] == [str(built.out / k.folder) for k in built.kernels]
    assert main(["kaggle", "fetch", "03", "--build", str(built.out), "--dry-run"]) == 0
    assert fake_kaggle() == [] and f"kaggle kernels output {OWNER}/amzkit-03-train -p" in capsys.readouterr().out


def test_credentials_never_reach_output_or_files(tmp_path, fake_kaggle, capsys, monkeypatch):
    monkeypatch.setattr(kaggle, "build_wheel", _dummy_wheel)
    monkeypatch.setenv("FAKE_KAGGLE_LEAK", "1")  # the CLI echoes the key: amzkit must scrub it
    build = tmp_path / "b"
    assert main(["kaggle", "build", "--out", str(build), "-p", "03.run_name=x"]) == 0  # owner from the env
    assert main(["kaggle", "push", "--build", str(build), "--wait", "--poll-interval", "0"]) == 0
    assert main(["kaggle", "fetch", "03_train", "--build", str(build), "--out", str(tmp_path / "outs")]) == 0
    captured = capsys.readouterr()
    assert "debug: using key ***" in captured.err + captured.out  # the leak happened and was scrubbed
    assert SECRET not in captured.out + captured.err
    assert (tmp_path / "outs" / "amzkit-03-train" / "amzkit-03-train.log").is_file()
    assert _meta(build / "amzkit-01-extract")["id"] == f"{OWNER}/amzkit-01-extract"
    for folder in (build, tmp_path / "outs"):
        for path in folder.rglob("*"):
            if path.is_file():
                assert SECRET.encode() not in path.read_bytes(), path
    assert SECRET not in repr(kaggle.read_credentials())
    assert all(SECRET not in " ".join(c) for c in fake_kaggle())


def test_push_without_credentials_says_how_to_add_them(built, fake_kaggle, capsys, monkeypatch):
    monkeypatch.delenv("KAGGLE_KEY")
    assert main(["kaggle", "push", "--build", str(built.out), "--stages", "01"]) == 1
    err = capsys.readouterr().err
    assert "KAGGLE_KEY" in err and "kaggle.json" in err and fake_kaggle() == []


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
    assert kaggle.normalise_status(text) == status


# --- credentials ----------------------------------------------------------------------------------------------

def _token(home: Path, mode: int) -> Path:
    path = home / ".kaggle" / "kaggle.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"username": "bob", "key": SECRET}))
    path.chmod(mode)
    return path


def test_world_readable_kaggle_json_warns_how_to_fix_it(tmp_path):
    path = _token(tmp_path, 0o644)
    with pytest.warns(kaggle.KaggleCredentialsWarning, match=r"chmod 600 .*kaggle\.json") as record:
        creds = kaggle.read_credentials(home=tmp_path, environ={})
    assert creds is not None and creds.username == "bob" and creds.source == str(path)
    assert all(SECRET not in str(w.message) for w in record)
    assert SECRET not in repr(creds) and SECRET not in str(creds)


def test_private_kaggle_json_is_read_quietly_and_env_wins(tmp_path):
    _token(tmp_path, stat.S_IRUSR | stat.S_IWUSR)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert kaggle.read_credentials(home=tmp_path, environ={}).username == "bob"
    env = {"KAGGLE_USERNAME": "carol", "KAGGLE_KEY": "k"}
    assert kaggle.read_credentials(home=tmp_path, environ=env).username == "carol"
    assert kaggle.read_credentials(home=tmp_path / "nobody", environ={}) is None
    with pytest.raises(kaggle.KaggleError, match="KAGGLE_USERNAME and KAGGLE_KEY"):
        kaggle.require_credentials(home=tmp_path / "nobody", environ={})


def test_build_needs_an_owner(tmp_path):
    with pytest.raises(kaggle.KaggleError, match="--owner"):
        kaggle.build(tmp_path / "b", wheel_builder=_dummy_wheel, home=tmp_path, environ={})


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
    assert kaggle.find_data_dir(root) == competition
    assert kaggle.find_data_dirs(root) == [competition, demo]
    assert kaggle.find_stage_dirs("01_extract", root) == [work / "01_extract"]
    assert kaggle.find_work_dirs(root) == [work]
    assert kaggle.find_wheel_dir(root) == root / "amzkit-wheel"
    assert {m.kind for m in kaggle.list_mounts(root)} == {"input"}


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
    mounts = {(m.kind, m.owner, m.slug) for m in kaggle.list_mounts(root)}
    assert ("competition", "", "amazon-ml-challenge-2025") in mounts
    assert ("notebook", OWNER, "amzkit-03-train-siglip") in mounts and ("dataset", OWNER, "amzkit-wheel") in mounts
    assert kaggle.find_data_dir(root) == competition
    assert kaggle.find_wheel_dir(root) == wheel_dir
    assert len(kaggle.find_stage_dirs("03_train", root)) == 2

    work = tmp_path / "working" / "amzkit"
    links = kaggle.attach_previous_outputs(work, "04_ensemble", root)
    assert sorted(p.name for p in links) == ["folds.csv", "lgbm_text", "siglip"]  # folds.csv linked once
    assert list_runs(work, "03_train") == ["lgbm_text", "siglip"]
    assert json.loads((work / "03_train" / "siglip" / "metrics.json").read_text()) == {"run": "siglip"}
    assert kaggle.attach_previous_outputs(work, "04_ensemble", root) == []  # idempotent
    assert kaggle.detach_previous_outputs(work, root) == 3 and list_runs(work, "03_train") == []
    assert (root / "notebooks" / OWNER / "amzkit-03-train-siglip" / "amzkit" / "03_train" / "siglip").is_dir()


def test_nested_dataset_data_and_a_work_dir_at_the_output_root(tmp_path):
    root = tmp_path / "input"
    data = _data(root / "datasets" / "bob" / "amazon-ml-2025-data" / "dataset")
    extract = root / "notebooks" / OWNER / "amzkit-01-extract" / "01_extract"  # work_dir was /kaggle/working
    _touch(extract / "minilm" / "manifest.json", "{}")
    _touch(root / "notebooks" / OWNER / "empty-kernel" / "01_extract" / "notes.txt")  # not amzkit output
    assert kaggle.find_data_dir(root) == data
    assert kaggle.find_stage_dirs("01_extract", root) == [extract]
    work = tmp_path / "working"
    own = work / "01_extract" / "minilm"
    own.mkdir(parents=True)  # this kernel's own run wins over the mounted one
    assert kaggle.attach_previous_outputs(work, "03_train", root) == []
    assert not own.is_symlink()
    assert kaggle.find_wheel_dir(root) is None


def test_missing_data_lists_what_is_attached(tmp_path, capsys):
    root = tmp_path / "input"
    (root / "competitions" / "another-competition").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="competition:another-competition"):
        kaggle.find_data_dir(root)
    assert main(["kaggle", "inputs", "--root", str(root)]) == 0
    out = capsys.readouterr().out
    assert "another-competition" in out and "(none: attach the competition data)" in out


def test_01s_image_cache_is_linked_for_the_stages_that_read_images(tmp_path):
    """02's image hashes and 03's image groups read 01's image cache, which sits beside 01_extract/."""
    root = tmp_path / "input"
    out = root / "notebooks" / OWNER / "amzkit-01-extract" / "amzkit"
    _touch(out / "01_extract" / "fashion-siglip" / "manifest.json", "{}")
    _touch(out / "image_cache" / "fetch_manifest.jsonl", "")
    work = tmp_path / "working" / "amzkit"
    (work / "image_cache").parent.mkdir(parents=True)
    links = kaggle.attach_previous_outputs(work, "03_train", root)
    assert work / "image_cache" in links and (work / "image_cache" / "fetch_manifest.jsonl").is_file()
    assert kaggle.attach_previous_outputs(work, "03_train", root) == []  # idempotent
    assert kaggle.detach_previous_outputs(work, root) == 2 and not (work / "image_cache").exists()
    assert (out / "image_cache" / "fetch_manifest.jsonl").is_file()  # the mounted input is untouched
