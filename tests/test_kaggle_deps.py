"""Kaggle's image as a data table, and `kaggle build` shipping what the kernels need that the image lacks."""

from __future__ import annotations

import json
import subprocess
import tomllib
from pathlib import Path

import pytest
from conftest import REPO_ROOT
from packaging.requirements import Requirement
from packaging.version import Version
from test_kaggle import DATA, OWNER, _build, fake_downloader

from amzkit.app import kaggle_image
from amzkit.app.cli import main
from amzkit.app.kaggle_api import KaggleError
from amzkit.app.kaggle_image import (
    KAGGLE_IMAGE,
    KAGGLE_IMAGE_ABSENT,
    KERNEL_PACKAGES,
    LOADER_PACKAGES,
    LOCAL_ONLY_PACKAGES,
    canonical,
    kernel_needs,
    on_image,
)
from amzkit.embed.factory import LOADERS
from amzkit.embed.registry import MODELS
from amzkit.ml.learners import LEARNERS


def _pyproject_dependencies() -> list[Requirement]:
    data = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())
    return [Requirement(line) for line in data["project"]["dependencies"]]


def test_the_image_table_names_its_source_and_lacks_open_clip_and_ftfy():
    assert kaggle_image.KAGGLE_IMAGE_DATE and "docker-python" in kaggle_image.KAGGLE_IMAGE_SOURCE
    assert kaggle_image.KAGGLE_PYTHON == "3.12"
    assert KAGGLE_IMAGE["torch"].version.startswith("2.10") and KAGGLE_IMAGE["numpy"].version == "2.0.2"
    assert KAGGLE_IMAGE["transformers"].version == "5.0.0" and KAGGLE_IMAGE["scikit-learn"].version == "1.6.1"
    for name in KAGGLE_IMAGE_ABSENT:
        assert on_image(name) is None
    assert on_image("open_clip_torch") is None and on_image("Open-Clip-Torch") is None
    assert all(row.source for row in KAGGLE_IMAGE.values())


def test_every_dependency_is_placed_and_every_loader_is_in_the_table():
    placed = set(KERNEL_PACKAGES) | set(LOCAL_ONLY_PACKAGES) | {p for ps in LOADER_PACKAGES.values() for p in ps}
    placed |= {kaggle_image.DISTRIBUTION_OF_IMPORT.get(m, m) for e in LEARNERS.values() for m in e.requires}
    unplaced = [r.name for r in _pyproject_dependencies() if canonical(r.name) not in {canonical(p) for p in placed}]
    assert unplaced == [], "classify each new dependency in amzkit.app.kaggle_image"
    assert set(LOADER_PACKAGES) == set(LOADERS)
    assert {spec.loader for spec in MODELS.values()} <= set(LOADER_PACKAGES)


def test_pyproject_ranges_admit_the_images_versions():
    for req in _pyproject_dependencies():
        row = on_image(req.name)
        if row is not None and row.version is not None:
            assert req.specifier.contains(Version(row.version.split("+")[0])), (req, row)


def test_what_each_kernel_needs_follows_its_parameters():
    assert set(kernel_needs("02_correlate", {})) == {canonical(p) for p in KERNEL_PACKAGES}
    siglip = kernel_needs("01_extract", {"model": "fashion-siglip", "text_model": "minilm"})
    assert "open-clip-torch" in siglip and "01_extract model 'fashion-siglip', loader open_clip" in siglip[
        "open-clip-torch"]
    assert "open-clip-torch" not in kernel_needs("01_extract", {"model": "color-stats", "text_model": "tfidf-svd"})
    assert "open-clip-torch" in kernel_needs("01_extract", {"model": "local-dir:/kaggle/input/x/m", "text_model": ""})
    assert "catboost" in kernel_needs("03_train", {"learner": "catboost"})
    assert "optuna" in kernel_needs("03_train", {"learner": "lightgbm", "tune_trials": 5})
    assert "optuna" not in kernel_needs("03_train", {"learner": "lightgbm", "tune_trials": 0})
    assert {"torch", "transformers"} <= set(kernel_needs("03_train", {"learner": "finetune"}))


def test_a_fashion_siglip_build_ships_open_clip_and_ftfy_and_dry_run_shows_them(tmp_path, capsys, monkeypatch):
    result = _build(tmp_path / "b", cli_params=["01_extract.model=fashion-siglip"])
    wheels = sorted(p.name for p in result.dataset_dir.glob("*.whl"))
    assert wheels == sorted([result.wheel.name, "open_clip_torch-3.3.0-py3-none-any.whl",
                             "ftfy-9.9.9-py3-none-any.whl"])  # open_clip pinned by constraints.txt
    assert set(result.shipped) == {"open-clip-torch", "ftfy"}  # not torch, timm, wcwidth: the image has them
    plan = json.loads((result.out / "plan.json").read_text())["dataset"]
    assert plan["needs"]["ftfy"] == ["open-clip-torch's requirements"] and "pytest" not in plan["needs"]  # no extras
    assert plan["image"]["python"] == "3.12"
    monkeypatch.setenv("HOME", str(tmp_path))
    assert main(["kaggle", "push", "--build", str(result.out), "--dry-run", "--wait"]) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("wheel dataset"))
    assert "open_clip_torch-3.3.0" in line and "ftfy-9.9.9" in line and result.wheel.name in line


def test_a_build_of_image_only_packages_ships_nothing(tmp_path):
    def no_download(requirements, dest):
        raise AssertionError(f"nothing to download, asked for {requirements}")

    params = tmp_path / "params.json"  # catboost and Optuna (a tuned lightgbm run) are on Kaggle's image
    params.write_text(json.dumps({"01": {"model": "color-stats", "text_model": "minilm"},
                                  "03": [{"run_name": "cat", "learner": "catboost"}, {"tune_trials": 2}]}))
    result = _build(tmp_path / "b", downloader=no_download, params_file=params)
    assert result.shipped == {} and [p.name for p in result.dataset_dir.glob("*.whl")] == [result.wheel.name]


def test_a_model_needing_an_absent_package_is_refused_naming_it(tmp_path):
    with pytest.raises(KaggleError, match=r"lacks open-clip-torch \(for 01_extract model 'ecommerce-l'"):
        _build(tmp_path / "b", ship_deps=False, cli_params=["01.model=ecommerce-l"])
    assert not (tmp_path / "b").exists()  # refused before anything is written

    def unavailable(requirements, dest):
        raise KaggleError("pip download found no wheel")

    with pytest.raises(KaggleError, match=r"lacks open-clip-torch .*\n.*no wheel"):
        _build(tmp_path / "c", downloader=unavailable)
    with pytest.raises(KaggleError, match=r"lacks ftfy \(for open-clip-torch's requirements"):
        _build(tmp_path / "d", downloader=lambda reqs, dest: [p for p in fake_downloader(reqs, dest)
                                                              if "ftfy" not in p.name])


def test_the_cli_refuses_with_no_deps(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("amzkit.app.kaggle.build_wheel", lambda folder: _dummy(folder))
    assert main(["kaggle", "build", "--out", str(tmp_path / "b"), "--owner", OWNER, "--data", DATA,
                 "--no-deps"]) == 1
    assert "lacks open-clip-torch" in capsys.readouterr().err


def _dummy(folder):
    wheel = folder / "amzkit-0.1.0-py3-none-any.whl"
    wheel.write_bytes(b"x")
    return wheel


def test_pip_download_asks_for_kaggles_python_and_platform(tmp_path, monkeypatch):
    seen = []

    def run(cmd, **kwargs):
        seen.append(cmd)
        (Path(cmd[cmd.index("--dest") + 1]) / "ftfy-6.3.1-py3-none-any.whl").write_bytes(b"x")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", run)
    assert [p.name for p in kaggle_image.pip_download(["ftfy"], tmp_path)] == ["ftfy-6.3.1-py3-none-any.whl"]
    cmd = seen[0]
    assert cmd[1:4] == ["-m", "pip", "download"] and "--no-deps" in cmd and "--only-binary=:all:" in cmd
    assert cmd[cmd.index("--python-version") + 1] == "3.12" and "manylinux2014_x86_64" in cmd
    monkeypatch.setattr(subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 1, "", "no network"))
    with pytest.raises(KaggleError, match="no network"):
        kaggle_image.pip_download(["ftfy"], tmp_path)


def test_pip_download_returns_a_wheel_an_earlier_failed_build_left_in_the_folder(tmp_path, monkeypatch):
    """pip skips a file its --dest holds already ('File was already downloaded'): a first build that failed after
    downloading open_clip left its wheel in the dataset folder (no plan.json to clean it by), and the next build
    was told the downloader returned no wheel for it, every time."""
    def pip(cmd, **kwargs):  # as pip does: a wheel already in --dest is kept and not written again
        wheel = Path(cmd[cmd.index("--dest") + 1]) / "open_clip_torch-3.3.0-py3-none-any.whl"
        if not wheel.exists():
            wheel.write_bytes(b"new")
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(subprocess, "run", pip)
    (tmp_path / "open_clip_torch-3.3.0-py3-none-any.whl").write_bytes(b"left by a failed build")
    wheels = kaggle_image.pip_download(["open-clip-torch==3.3.0"], tmp_path)
    assert [p.name for p in wheels] == ["open_clip_torch-3.3.0-py3-none-any.whl"]
    assert wheels[0].parent == tmp_path and wheels[0].read_bytes() == b"new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["open_clip_torch-3.3.0-py3-none-any.whl"]


def test_a_build_of_some_stages_keeps_the_packages_of_the_other_stages_kernels(tmp_path):
    """`kaggle build --stages 03` wrote a wheel dataset of 03's packages alone: pushed, it replaced the dataset the
    01 kernel pushed before installs from, and that kernel, run again from Kaggle's UI, had no open_clip."""
    out = tmp_path / "b"
    first = _build(out, cli_params=["01.model=ecommerce-l", "01.text_model=tfidf-svd"], stages=["01"])
    assert "open-clip-torch" in first.shipped
    # the same folder, 03 alone with 01 now color-stats: 01's kernel pushed before still needs open_clip
    again = _build(out, cli_params=["01.model=color-stats", "01.text_model=tfidf-svd"], stages=["03"])
    assert "open-clip-torch" in again.shipped and "ftfy" in again.shipped
    needs = json.loads((out / "plan.json").read_text())["dataset"]["needs"]
    assert any("ecommerce-l" in why for why in needs["open-clip-torch"])
    # a fresh folder: the build's own 01 parameters (the default fashion-siglip) count
    alone = _build(tmp_path / "c", stages=["03"], cli_params=["03_train.embeddings=[]"])
    assert "open-clip-torch" in alone.shipped
    # --no-deps still builds 03 alone (the image has its packages), warning of the 01 kernel's
    with pytest.warns(UserWarning, match=r"--no-deps: .*holds no open-clip-torch \(for 01_extract model "
                                         r"'fashion-siglip'.*those kernels, pushed before"):
        bare = _build(tmp_path / "d", stages=["03"], ship_deps=False, cli_params=["03_train.embeddings=[]"])
    assert bare.shipped == {}
