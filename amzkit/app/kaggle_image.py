"""What Kaggle's notebook image holds, and which packages a build must ship beside amzkit.

`KAGGLE_IMAGE` is a data table of the image's Python packages (version None: present, version not recorded).
`kernel_needs` says which packages one kernel imports, derived from its baked parameters: every notebook's own
packages, the loaders of 01's models (`embed.registry.MODELS[name].loader` -> `LOADER_PACKAGES`), 03's learner
(`ml.learners.LEARNERS[name].requires`) and Optuna when 03 tunes. `plan_shipping` downloads (through a
`Downloader`) every needed package the image lacks, with the requirements of those wheels that the image lacks
too, so the install cell can install them offline; a package that is neither on the image nor shippable is an
error naming it and the kernel that needs it.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.markers import default_environment
from packaging.requirements import InvalidRequirement, Requirement
from packaging.version import InvalidVersion, Version

from amzkit.app.kaggle_api import KaggleError
from amzkit.embed.registry import LOCAL_DIR, LOCAL_DIR_TEXT, get_model_spec
from amzkit.ml.learners import LEARNERS
from amzkit.stages.train import D as TRAIN_DEFAULTS

# ---------------------------------------------------------------- the image

KAGGLE_IMAGE_SOURCE = ("Kaggle/docker-python (Dockerfile.tmpl FROM colab-images runtime "
                       "release-colab-external-images_20260514, kaggle_requirements.txt at 78aaa43, 2026-08-12); "
                       "versions as recorded in shared/facts/kaggle-and-papermill.md")
KAGGLE_IMAGE_DATE = "2026-05-14"  # the Colab base the image builds on
KAGGLE_PYTHON = "3.12"
KAGGLE_PLATFORM = ("manylinux_2_28_x86_64", "manylinux2014_x86_64")  # wheels pip may take for the image


@dataclass(frozen=True)
class ImagePackage:
    """One package of Kaggle's notebook image."""

    name: str  # distribution name as pip spells it
    version: str | None  # None: present, version not recorded
    source: str  # where we know it from


_FACTS = "facts file (Colab base 2026-05)"
_COLAB = "Colab base 2026-05, version not recorded"
_KAGGLE_REQ = "kaggle_requirements.txt, unpinned"

KAGGLE_IMAGE: dict[str, ImagePackage] = {row.name: row for row in (
    ImagePackage("torch", "2.10.0", _FACTS + "; +cu128"),
    ImagePackage("torchvision", "0.25.0", _FACTS),
    ImagePackage("transformers", "5.0.0", _FACTS + "; kaggle_requirements.txt transformers>=5.0.0"),
    ImagePackage("numpy", "2.0.2", _FACTS),
    ImagePackage("pandas", "2.2.2", _FACTS),
    ImagePackage("scikit-learn", "1.6.1", _FACTS),
    ImagePackage("lightgbm", "4.6.0", _FACTS),
    ImagePackage("matplotlib", "3.10.0", _FACTS),
    ImagePackage("seaborn", "0.13.2", _FACTS),
    ImagePackage("pillow", "11.3.0", _FACTS),
    ImagePackage("requests", "2.32.4", _FACTS),
    ImagePackage("sentencepiece", "0.2.1", _FACTS),
    ImagePackage("timm", "1.0.26", _FACTS),
    ImagePackage("optuna", None, _KAGGLE_REQ),
    ImagePackage("papermill", None, _KAGGLE_REQ),
    ImagePackage("catboost", None, _KAGGLE_REQ),
    ImagePackage("kaggle", None, "kaggle_requirements.txt kaggle>=1.8.3"),
    ImagePackage("xgboost", None, _COLAB),
    ImagePackage("scipy", None, _COLAB),
    ImagePackage("tqdm", None, _COLAB),
    ImagePackage("urllib3", None, _COLAB),
    ImagePackage("nbformat", None, _COLAB),
    ImagePackage("ipykernel", None, _COLAB),
    ImagePackage("pyyaml", None, _COLAB),
    ImagePackage("packaging", None, _COLAB),
    ImagePackage("huggingface-hub", None, _COLAB),
    ImagePackage("safetensors", None, _COLAB),
    ImagePackage("tokenizers", None, _COLAB),
    ImagePackage("regex", None, _COLAB),
    ImagePackage("wcwidth", None, _COLAB),
)}


# Checked absent from the image (the issue that made this table): a build ships them when a kernel needs them.
KAGGLE_IMAGE_ABSENT: tuple[str, ...] = ("open-clip-torch", "ftfy")


# ---------------------------------------------------------------- what a kernel needs

# Every dependency of amzkit (pyproject [project].dependencies) that every notebook imports inside a kernel.
KERNEL_PACKAGES: tuple[str, ...] = ("numpy", "pandas", "scikit-learn", "scipy", "lightgbm", "matplotlib", "seaborn",
                                    "pillow", "tqdm", "ipykernel", "papermill", "nbformat", "urllib3")

# Dependencies only used off Kaggle (opening notebooks locally; building and pushing kernels): never shipped.
LOCAL_ONLY_PACKAGES: tuple[str, ...] = ("jupyter", "packaging", "pyyaml")

# The packages an embedder loader (embed.factory.LOADERS) imports, by loader key of the registry rows.
LOADER_PACKAGES: dict[str, tuple[str, ...]] = {
    "color_stats": (),
    "tfidf_svd": (),
    "open_clip": ("torch", "torchvision", "open-clip-torch", "huggingface-hub"),
    "open_clip_text": ("torch", "torchvision", "open-clip-torch", "huggingface-hub", "sentencepiece"),
    "aesthetic": ("torch", "torchvision", "open-clip-torch", "huggingface-hub"),
    "transformers_image": ("torch", "transformers", "huggingface-hub"),
    "transformers_text": ("torch", "transformers", "huggingface-hub", "sentencepiece"),
}

# A `local-dir:` folder on Kaggle cannot be read at build time: ship what any folder loader may import.
LOCAL_DIR_LOADERS: tuple[str, ...] = ("open_clip", "open_clip_text", "aesthetic", "transformers_image",
                                      "transformers_text")

# Import names (LEARNERS[...].requires) whose distribution is spelt otherwise.
DISTRIBUTION_OF_IMPORT: dict[str, str] = {"open_clip": "open-clip-torch", "sklearn": "scikit-learn",
                                          "PIL": "pillow", "yaml": "pyyaml"}


def canonical(name: str) -> str:
    """pip's normalised project name: lower case, runs of '-', '_', '.' as one '-'."""
    return re.sub(r"[-_.]+", "-", name).lower()


_IMAGE = {canonical(name): row for name, row in KAGGLE_IMAGE.items()}


def on_image(name: str) -> ImagePackage | None:
    """The image's row for distribution `name`, or None when the image lacks it."""
    return _IMAGE.get(canonical(name))


def _model_loaders(name: str) -> tuple[str, ...]:
    if name.startswith((LOCAL_DIR, LOCAL_DIR_TEXT)):
        try:
            return (get_model_spec(name).loader,)
        except (FileNotFoundError, ValueError, OSError):  # the folder is a Kaggle input, not here
            return LOCAL_DIR_LOADERS
    return (get_model_spec(name).loader,)


def kernel_needs(stage: str, params: Mapping[str, Any]) -> dict[str, list[str]]:
    """{distribution: [why, ...]} that a kernel of `stage` with `params` (defaults filled in) imports."""
    needs: dict[str, list[str]] = {}

    def add(packages: Iterable[str], why: str) -> None:
        for package in packages:
            needs.setdefault(canonical(package), []).append(why)

    add(KERNEL_PACKAGES, "every notebook")
    if stage == "01_extract":
        for key in ("model", "text_model"):
            name = params.get(key) or ""
            for loader in _model_loaders(name) if name else ():
                add(LOADER_PACKAGES[loader], f"01_extract {key} {name!r}, loader {loader}")
    if stage == "03_train":
        learner = params.get("learner", TRAIN_DEFAULTS.learner)
        if learner in LEARNERS:
            add((DISTRIBUTION_OF_IMPORT.get(m, m) for m in LEARNERS[learner].requires), f"03_train learner {learner!r}")
        if int(params.get("tune_trials", TRAIN_DEFAULTS.tune_trials) or 0) > 0:
            add(("optuna",), "03_train tune_trials > 0")
    return needs


def needs_of(kernels: Iterable[tuple[str, Mapping[str, Any]]]) -> dict[str, list[str]]:
    """{distribution: [why, ...]} of kernels given as (stage, parameters with the defaults filled in)."""
    needs: dict[str, list[str]] = {}
    for stage, params in kernels:
        for name, why in kernel_needs(stage, params).items():
            needs.setdefault(name, []).extend(w for w in why if w not in needs.get(name, []))
    return needs


def earlier_needs(plan_path: str | Path, dataset_id: str) -> dict[str, list[str]]:
    """What the kernels of a build folder's previous plan (plan.json) needed, when its wheel dataset is
    `dataset_id`: kernels pushed from it install from the dataset a new build replaces. {} without one; a package
    needed only as a shipped wheel's requirement is left to `plan_shipping` to find again."""
    try:
        dataset = json.loads(Path(plan_path).read_text(encoding="utf-8")).get("dataset", {})
    except (OSError, ValueError, AttributeError):
        return {}
    needs = dataset.get("needs") if isinstance(dataset, dict) and dataset.get("id") == dataset_id else None
    if not isinstance(needs, dict):
        return {}
    own = {name: [w for w in why if not str(w).endswith("'s requirements")]
           for name, why in needs.items() if isinstance(why, list)}
    return {name: why for name, why in own.items() if why}


def merge_needs(*tables: Mapping[str, list[str]]) -> dict[str, list[str]]:
    """Several {distribution: [why, ...]} as one, each reason once."""
    merged: dict[str, list[str]] = {}
    for table in tables:
        for name, why in table.items():
            merged.setdefault(name, []).extend(w for w in why if w not in merged.get(name, []))
    return merged


# ---------------------------------------------------------------- shipping what the image lacks

Downloader = Callable[[Sequence[str], Path], list[Path]]  # (requirement strings, folder) -> the wheels it wrote


def read_pins(constraints: str | Path) -> dict[str, str]:
    """{canonical name: version} of the `name==version` lines of a constraints file."""
    pins = {}
    path = Path(constraints)
    if path.is_file():
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split("#", 1)[0].strip()
            if "==" in line:
                name, version = line.split("==", 1)
                pins[canonical(name.strip())] = version.strip()
    return pins


def pip_download(requirements: Sequence[str], dest: Path) -> list[Path]:
    """`pip download --no-deps` wheels for Kaggle's Python and platform into `dest` (needs PyPI); the wheels of
    `requirements`, also those `dest` held already (pip skips a file it finds there: an earlier, failed build)."""
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="amzkit-download-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--python-version",
               KAGGLE_PYTHON, *[arg for tag in KAGGLE_PLATFORM for arg in ("--platform", tag)], "--dest", tmp,
               *requirements]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode:
            raise KaggleError(f"downloading {', '.join(requirements)} for Kaggle's image failed ({' '.join(cmd)}):\n"
                              f"{proc.stderr[-2000:]}\nIt needs PyPI. Without it, build with --no-deps and choose "
                              "models whose packages Kaggle's image has (amzkit.app.kaggle_image.KAGGLE_IMAGE).")
        wheels = []
        for wheel in sorted(Path(tmp).glob("*.whl")):
            (dest / wheel.name).unlink(missing_ok=True)
            wheels.append(Path(shutil.move(wheel, dest / wheel.name)))
    return wheels


def wheel_metadata(wheel: str | Path) -> tuple[str, str, list[str]]:
    """(name, version, Requires-Dist lines) from a wheel's METADATA."""
    with zipfile.ZipFile(wheel) as archive:
        names = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
        if not names:
            raise KaggleError(f"{wheel} has no .dist-info/METADATA: not a wheel")
        text = archive.read(names[0]).decode("utf-8", "replace")
    headers = text.split("\n\n", 1)[0].splitlines()
    field_of = [(line.partition(":")[0], line.partition(":")[2].strip()) for line in headers if ":" in line]
    name = next((v for k, v in field_of if k == "Name"), Path(wheel).name.split("-")[0])
    version = next((v for k, v in field_of if k == "Version"), "")
    return name, version, [v for k, v in field_of if k == "Requires-Dist"]


_KAGGLE_ENV = {**default_environment(), "python_version": KAGGLE_PYTHON, "python_full_version": f"{KAGGLE_PYTHON}.0",
               "sys_platform": "linux", "platform_system": "Linux", "platform_machine": "x86_64",
               "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython"}


def runtime_requirements(lines: Iterable[str]) -> list[Requirement]:
    """The Requires-Dist lines that apply on Kaggle's image without extras."""
    out = []
    for line in lines:
        try:
            req = Requirement(line)
        except InvalidRequirement:
            continue
        if req.marker is None or req.marker.evaluate({**_KAGGLE_ENV, "extra": ""}):
            out.append(req)
    return out


def image_conflict(req: Requirement) -> str:
    """A message when the image's recorded version of `req`'s package falls outside its specifier, else ''."""
    row = on_image(req.name)
    if row is None or row.version is None or not req.specifier:
        return ""
    try:
        ok = req.specifier.contains(Version(row.version), prereleases=True)
    except InvalidVersion:
        return ""
    return "" if ok else f"{req} but Kaggle's image has {row.name} {row.version}"


@dataclass
class ShippingPlan:
    """What the kernels need, what the image has, and the wheels shipped for the rest."""

    needs: dict[str, list[str]]  # distribution -> why (kernels, models, learners; or "<wheel>'s requirements")
    shipped: dict[str, str] = field(default_factory=dict)  # distribution -> wheel file name
    conflicts: list[str] = field(default_factory=list)  # shipped wheels' requirements the image's versions miss

    def missing(self) -> list[str]:
        return sorted(name for name in self.needs if on_image(name) is None)

    def as_dict(self) -> dict[str, Any]:
        return {"image": {"source": KAGGLE_IMAGE_SOURCE, "date": KAGGLE_IMAGE_DATE, "python": KAGGLE_PYTHON},
                "needs": self.needs, "shipped": self.shipped, "conflicts": self.conflicts}


def plan_shipping(needs: Mapping[str, list[str]], dest: str | Path, ship: bool = True,
                  downloader: Downloader | None = None, pins: Mapping[str, str] | None = None) -> ShippingPlan:
    """Download into `dest` every needed package the image lacks, then their own requirements it lacks too.

    With `ship` False nothing is downloaded and any package the image lacks is an error naming it and what
    needs it. Versions come from `pins` (constraints.txt) where pinned, else the newest release.
    """
    plan = ShippingPlan({name: list(why) for name, why in needs.items()})
    missing = plan.missing()
    if missing and not ship:
        raise KaggleError(_absent_message(missing, plan.needs))
    downloader = downloader or pip_download
    pins = {canonical(k): v for k, v in (pins or {}).items()}
    todo = list(missing)
    while todo:
        wanted = [f"{name}=={pins[name]}" if name in pins else name for name in todo]
        try:
            wheels = downloader(wanted, Path(dest))
        except KaggleError as err:
            raise KaggleError(f"{_absent_message(todo, plan.needs)}\n{err}") from None
        got = {}
        for wheel in wheels:
            name, _, requires = wheel_metadata(wheel)
            got[canonical(name)] = (wheel, requires)
        absent = [name for name in todo if name not in got]
        if absent:
            raise KaggleError(f"{_absent_message(absent, plan.needs)}\nThe downloader returned no wheel for them.")
        todo = []
        for name, (wheel, requires) in sorted(got.items()):
            plan.shipped[name] = Path(wheel).name
            for req in runtime_requirements(requires):
                dep = canonical(req.name)
                if dep in plan.shipped or dep in todo:
                    continue
                if on_image(dep) is None:
                    plan.needs.setdefault(dep, []).append(f"{name}'s requirements")
                    todo.append(dep)
                elif conflict := image_conflict(req):
                    plan.conflicts.append(f"{name} requires {conflict}")
    return plan


def _absent_message(names: Sequence[str], needs: Mapping[str, list[str]]) -> str:
    lines = [f"{name} (for {'; '.join(dict.fromkeys(needs.get(name, ['?'])))})" for name in names]
    return ("Kaggle's image lacks " + ", ".join(lines) + ". Build without --no-deps so `kaggle build` ships it in "
            "the wheel dataset (pip download, needs PyPI), or choose a model/learner whose packages the image has "
            f"(image of {KAGGLE_IMAGE_DATE}: amzkit.app.kaggle_image.KAGGLE_IMAGE).")
