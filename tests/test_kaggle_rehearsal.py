"""A rehearsal of Kaggle: `kaggle build` on the demo, then every kernel notebook run top to bottom as Kaggle runs a
pushed kernel, and a valid submission at the end.

Each kernel runs with only the parameters baked in at build time (papermill injects nothing), in a fake /kaggle
tree (AMZKIT_KAGGLE_ROOT) laid out as Kaggle mounts inputs: the data dataset and the amzkit-wheel dataset under
input/datasets/<owner>/<slug>/ and each kernel named in kernel_sources under input/notebooks/<owner>/<slug>/ (a
copy of what that kernel left in its /kaggle/working). The Python is a fresh venv that sees this environment's
packages minus amzkit (a filtered copy of site-packages, added by a .pth file), so amzkit comes only from the
built wheel, installed by the notebooks' own install cell. Inputs are mounted from the kernels' metadata, so a
broken install cell, input probing, baked parameter or kernel chain fails here.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
from pathlib import Path

import nbformat
import pytest

from amzkit.app import kaggle
from amzkit.app.demo import make_demo
from amzkit.app.kaggle_outputs import OUTPUT_LISTING, check_fetched
from amzkit.app.kaggle_runtime import install_cell
from amzkit.core.workdir import KAGGLE_ROOT_ENV
from amzkit.stages.submit import validate_file

OWNER = "alice"
DATA = f"{OWNER}/amazon-ml-2025"
PARAMS = {
    "01_extract": {"model": "color-stats", "text_model": "tfidf-svd"},
    "02_correlate": {"n_permutations": 5},
    "03_train": [{"run_name": "lgbm_image", "embeddings": ["tfidf-svd:pca:8"], "n_folds": 3,
                  "features": ["quantity", "text_stats", "keywords", "image_meta", "colour"]},
                 {"run_name": "ridge", "learner": "ridge_tfidf", "n_folds": 3}],
}
KERNEL_TIMEOUT_S = 600


def rehearsal_python(root: Path) -> Path:
    """A venv whose interpreter sees this environment's site-packages minus amzkit (and minus .pth hooks, which
    is how the editable install is found), so `import amzkit` works only after installing the wheel."""
    venv = root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    site = Path(subprocess.run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               check=True, capture_output=True, text=True).stdout.strip())
    shared = root / "site-packages-without-amzkit"
    shared.mkdir()
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if "amzkit" in entry.name.lower() or entry.suffix == ".pth":
            continue
        (shared / entry.name).symlink_to(entry)
    (site / "rehearsal-shared.pth").write_text(f"{shared}\n")
    kernels = root / "jupyter" / "kernels" / "python3"
    kernels.mkdir(parents=True)
    (kernels / "kernel.json").write_text(json.dumps({
        "argv": [str(python), "-m", "ipykernel_launcher", "-f", "{connection_file}"],
        "display_name": "Python 3 (rehearsal)", "language": "python"}))
    return python


def _mount(source: Path, link: Path) -> None:
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(source.resolve(), target_is_directory=True)


def run_kernel(python: Path, env: dict, folder: Path, kaggle_root: Path, data_dir: Path, wheel_dir: Path,
               outputs: dict[str, Path]) -> Path:
    """Lay out /kaggle/input from the kernel's metadata, run its notebook as pushed, return its /kaggle/working."""
    meta = json.loads((folder / "kernel-metadata.json").read_text())
    inputs = kaggle_root / "input"
    for ref in meta["dataset_sources"]:
        owner, slug = ref.split("/")
        source = wheel_dir if slug == kaggle.WHEEL_DATASET else data_dir
        _mount(source, inputs / "datasets" / owner / slug)
    for ref in meta["kernel_sources"]:
        owner, slug = ref.split("/")
        _mount(outputs[ref], inputs / "notebooks" / owner / slug)
    working = kaggle_root / "working"
    working.mkdir(parents=True)
    executed = kaggle_root / "executed.ipynb"
    proc = subprocess.run([python, "-m", "papermill", str(folder / meta["code_file"]), str(executed), "--cwd",
                           str(working), "--kernel", "python3", "--no-progress-bar"],
                          env={**env, KAGGLE_ROOT_ENV: str(kaggle_root)}, capture_output=True, text=True,
                          timeout=KERNEL_TIMEOUT_S, check=False)
    assert proc.returncode == 0, f"kernel {meta['id']} failed:\n{proc.stderr[-4000:]}"
    return working


@pytest.mark.slow
def test_kaggle_rehearsal_from_build_to_submission(tmp_path):
    demo = make_demo(tmp_path / "zip" / "student_resource" / "dataset", n_train=150, n_test=50, seed=7)
    params = tmp_path / "params.json"
    params.write_text(json.dumps(PARAMS))

    def no_download(requirements, dest):
        raise AssertionError(f"Kaggle's image has every package of this build, yet {requirements} were asked for")

    result = kaggle.build(tmp_path / "build", owner=OWNER, data=[DATA], params_file=params, downloader=no_download,
                          environ={})
    assert [k.stage for k in result.kernels] == ["01_extract", "02_correlate", "03_train", "03_train",
                                                 "04_ensemble", "05_submit"]
    python = rehearsal_python(tmp_path / "env")
    env = {key: value for key, value in os.environ.items() if not key.startswith(("PYTHON", "JUPYTER", "KAGGLE"))}
    env.update(KAGGLE_KERNEL_RUN_TYPE="Batch", JUPYTER_PATH=str(tmp_path / "env" / "jupyter"),
               PIP_DISABLE_PIP_VERSION_CHECK="1", PIP_NO_INPUT="1", MPLBACKEND="agg")
    no_amzkit = subprocess.run([python, "-c", "import amzkit"], env=env, capture_output=True, text=True, check=False,
                               cwd=tmp_path)
    assert no_amzkit.returncode != 0 and "No module named 'amzkit'" in no_amzkit.stderr  # only the wheel brings it

    outputs: dict[str, Path] = {}
    for kernel in result.kernels:
        kaggle_root = tmp_path / "kaggle" / kernel.folder
        working = run_kernel(python, env, result.out / kernel.folder, kaggle_root, tmp_path / "zip",
                             result.dataset_dir, outputs)
        nb = nbformat.read(kaggle_root / "executed.ipynb", as_version=4)
        printed = "".join(o.get("text", "") for o in nb.cells[_first_code(nb)].outputs)
        assert f"amzkit {result.version}; this kernel was built with {result.version}" in printed
        assert not [c for c in nb.cells if "injected-parameters" in c.metadata.get("tags", [])][1:]
        assert check_fetched(working) == [] and (working / "amzkit" / OUTPUT_LISTING).is_file()
        assert not any(p.is_symlink() for p in (working / "amzkit").rglob("*")), "links to inputs left behind"
        outputs[kernel.id] = shutil.copytree(working, tmp_path / "outputs" / kernel.folder)

    extract = outputs[f"{OWNER}/amzkit-01-extract"] / "amzkit" / "01_extract"
    assert sorted(p.name for p in extract.iterdir() if p.is_dir()) == ["color-stats", "image_tables", "tfidf-svd"]
    ensemble = json.loads((outputs[f"{OWNER}/amzkit-04-ensemble"] / "amzkit" / "04_ensemble" / "metrics.json")
                          .read_text())
    assert sorted(ensemble["runs"]) == ["lgbm_image", "ridge"]  # both 03 kernels reached 04
    submission = outputs[f"{OWNER}/amzkit-05-submit"] / "amzkit" / "05_submit" / "submission.csv"
    assert validate_file(submission, demo.test_csv, "amazon2025") == []

    older = subprocess.run([python, "-c", install_cell(_newer(result.version))], capture_output=True, text=True,
                           env={**env, KAGGLE_ROOT_ENV: str(tmp_path / "kaggle" / result.kernels[-1].folder)},
                           cwd=tmp_path,
                           check=False)
    assert older.returncode != 0 and "older than this kernel's build" in older.stderr


def _first_code(nb) -> int:
    return next(i for i, c in enumerate(nb.cells) if c.cell_type == "code")


def _newer(version: str) -> str:
    """The same version with a later build stamp."""
    base, _, local = version.partition("+")
    stamp, _, rest = local.partition(".")
    return f"{base}+{int(stamp) + 1}.{rest}"
