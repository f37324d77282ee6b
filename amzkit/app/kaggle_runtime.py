"""Inside a Kaggle kernel: which stage runs where, what is mounted under /kaggle/input, and chaining kernels.

Mount layouts differ between Kaggle versions (flat `/kaggle/input/<slug>` or grouped `competitions/`,
`datasets/<owner>/`, `notebooks/<owner>/`): inputs are found by probing, never by one fixed path.
"""

from __future__ import annotations

import os
import posixpath
import re
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from amzkit.core.workdir import KAGGLE_INPUT, KAGGLE_ROOT_ENV, STAGES
from amzkit.embed.registry import LOCAL_DIR


@dataclass(frozen=True)
class StageKernel:
    """How one notebook runs as a Kaggle kernel, and whose outputs it reads."""

    enable_gpu: bool
    enable_internet: bool
    machine_shape: str | None  # None = Kaggle's CPU machine
    reads: tuple[str, ...]  # stages whose `<stage>/` folders this stage reads
    why: str


KERNELS: dict[str, StageKernel] = {
    "01_extract": StageKernel(True, True, "NvidiaTeslaT4", (),
                              "image/text encoders want a T4; internet fetches image_link URLs and hf-hub weights"),
    "02_correlate": StageKernel(False, False, None, ("01_extract",),
                                "numpy statistics over the embeddings: CPU; every input is mounted, so offline"),
    "03_train": StageKernel(False, False, None, ("01_extract",),
                            "LightGBM trains on CPU (a GPU session would only burn quota); inputs mounted, offline"),
    "04_ensemble": StageKernel(False, False, None, ("03_train",),
                               "weights over OOF predictions of 03's runs: seconds of CPU, offline"),
    "05_submit": StageKernel(False, False, None, ("04_ensemble", "03_train"),
                             "writes the CSV from 04's blend or one 03 run (-p source): CPU, offline"),
}


def finetune_machine(params: Mapping[str, Any]) -> StageKernel:
    """A finetune kernel's machine: a T4 unless its learner_params say `device: cpu`; internet only where it fetches
    its encoder from the hub (a registry name), not for a `local-dir:` folder mounted from a dataset."""
    own = params.get("learner_params") or {}
    gpu = own.get("device") != "cpu"
    model = own.get("model")
    hub = not (isinstance(model, str) and model.startswith(LOCAL_DIR))  # no model: the default, minilm, is a hub's
    return StageKernel(gpu, hub, "NvidiaTeslaT4" if gpu else None, ("01_extract",),
                       "fine-tunes a transformers encoder on the catalog text: " + ("a T4" if gpu else "on CPU (device "
                       "cpu)") + ("; internet fetches the encoder from the hub" if hub else "; offline (local-dir)"))


def torch_head_machine(params: Mapping[str, Any]) -> StageKernel:
    """An mlp / sparse_mlp kernel's machine: Kaggle's CPU machine (the learners' `auto` device there is the CPU)
    unless its learner_params say `device: cuda`, which a CPU machine cannot run; offline either way."""
    if (params.get("learner_params") or {}).get("device") != "cuda":
        return KERNELS["03_train"]
    return StageKernel(True, False, "NvidiaTeslaT4", ("01_extract",),
                       "a torch network on a T4 (device cuda); inputs mounted, offline")


# Kernels whose parameters need another machine than their stage's: (stage, parameter, value) -> their machine, of
# the kernel's parameters.
MACHINE_OVERRIDES: dict[tuple[str, str, Any], Callable[[Mapping[str, Any]], StageKernel]] = {
    ("03_train", "learner", "finetune"): finetune_machine,
    ("03_train", "learner", "mlp"): torch_head_machine,
    ("03_train", "learner", "sparse_mlp"): torch_head_machine,
}


@dataclass(frozen=True)
class SplitParameters:
    """The parameters of a stage whose rows several kernels share: a kernel's share, how many kernels, and the
    merging kernel's list of the kernels it joins."""

    index: str
    count: str
    merge: str
    merge_machine: StageKernel  # the merging kernel's: it joins files, so no GPU quota and no internet


# Stages `kaggle build` splits over kernels when given `<count>: n` (n > 1): n shard kernels each embed their share
# of the rows, then one kernel merges them (`<merge>` names the shard kernels, owner/slug, turned into their
# mounted work folders by merge_cell); later stages read the merging kernel only.
SPLIT_PARAMETERS: dict[str, SplitParameters] = {
    "01_extract": SplitParameters("shard_index", "num_shards", "merge_dirs", StageKernel(
        False, False, None, (), "joins the shard kernels' embeddings and image tables: CPU, offline")),
}


def kernel_spec(stage: str, params: Mapping[str, Any] | None = None) -> StageKernel:
    """The machine of one kernel of `stage` with its baked `params` (a merging kernel's, MACHINE_OVERRIDES, else
    KERNELS[stage])."""
    if stage not in KERNELS:
        raise ValueError(f"unknown stage {stage!r}; stages are {list(KERNELS)}")
    split = SPLIT_PARAMETERS.get(stage)
    if split is not None and (params or {}).get(split.merge):
        return split.merge_machine
    for (where, name, value), machine in MACHINE_OVERRIDES.items():
        if where == stage and (params or {}).get(name) == value:
            return machine(params or {})
    return KERNELS[stage]


# Folders directly under the input root that group mounts by kind: name -> (kind, levels down to a mount).
MOUNT_GROUPS: dict[str, tuple[str, int]] = {
    "competitions": ("competition", 1),
    "datasets": ("dataset", 2),
    "notebooks": ("notebook", 2),
    "models": ("model", 2),
}


# Where the wheel can sit below the input root: <slug>/, <group>/<slug>/ or <group>/<owner>/<slug>/.
WHEEL_GLOBS: tuple[str, ...] = ("*/amzkit-*.whl", "*/*/amzkit-*.whl", "*/*/*/amzkit-*.whl")


def install_cell(want: str = "") -> str:
    """The first code cell of every notebook; `kaggle build` bakes the amzkit version of its wheel as `want`.

    On Kaggle it installs amzkit and the packages the image lacks from the attached amzkit-wheel dataset, offline
    and `--no-deps` (the image's own numpy/torch/... stay as they are); elsewhere there is nothing to install.
    It prints the amzkit version that runs and refuses one older than `want` (the build's time stamp after '+').
    """
    return f'''\
# Kaggle: install amzkit (and what the image lacks) from the attached amzkit-wheel dataset, offline; elsewhere a no-op.
# `kaggle build` sets _want to its wheel's version: an amzkit older than the kernel's build is refused.
import importlib as _il
import importlib.metadata as _md
import os as _os
import pathlib as _pl
import re as _re
import subprocess as _sp
import sys as _sys

_want = {want!r}
def _have():
    try:
        return _md.version("amzkit")
    except _md.PackageNotFoundError:
        return ""
def _build(version):
    return int((_re.findall(r"[+](\\d+)", version) or ["0"])[0])
_root = _pl.Path(_os.environ.get("{KAGGLE_ROOT_ENV}") or "/kaggle", "input")
_whl = sorted(w for g in {WHEEL_GLOBS!r} for w in _root.glob(g))
if _whl and (not _have() or _build(_have()) < _build(_want)):
    _sp.check_call([_sys.executable, "-m", "pip", "install", "-q", "--no-index", "--no-deps", "--force-reinstall",
                    "--find-links", str(_whl[-1].parent), "amzkit",
                    *sorted(str(w) for w in _whl[-1].parent.glob("*.whl") if not w.name.startswith("amzkit-"))])
    _il.invalidate_caches()
_none = f"no amzkit wheel under {{_root}}: attach your amzkit-wheel dataset (Add Input; kaggle push uploads it)"
print(f"amzkit {{_have() or (_none if _root.is_dir() and not _whl else '(no installed wheel)')}}"
      + (f"; this kernel was built with {{_want}}" if _want else ""))
if _build(_have()) < _build(_want):
    raise RuntimeError(f"{{_none}}, then run this kernel again" if not _whl else f"amzkit {{_have() or '(none)'}} is "
                       f"older than this kernel's build {{_want}}: upload the wheel dataset again (python -m "
                       "amzkit kaggle push without --skip-dataset), wait until Kaggle shows its new version, then "
                       "run this kernel again")'''


INSTALL_CELL = install_cell()


@dataclass(frozen=True)
class Mount:
    """One input attached to a kernel."""

    kind: str  # competition | dataset | notebook | model | input (the flat layout does not say which)
    slug: str
    path: Path
    owner: str = ""


def _subdirs(folder: Path) -> list[Path]:
    try:
        return sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
    except OSError:
        return []


def list_mounts(root: str | Path = KAGGLE_INPUT) -> list[Mount]:
    """Every input under `root`, in both the flat and the grouped (competitions/datasets/notebooks) layouts."""
    mounts = []
    for child in _subdirs(Path(root)):
        if child.name not in MOUNT_GROUPS:
            mounts.append(Mount("input", child.name, child))
            continue
        kind, levels = MOUNT_GROUPS[child.name]
        if levels == 1:
            mounts += [Mount(kind, m.name, m) for m in _subdirs(child)]
        else:
            mounts += [Mount(kind, m.name, m, owner.name) for owner in _subdirs(child) for m in _subdirs(owner)]
    return mounts


KAGGLE_INPUT_PATH, KAGGLE_WORKING_PATH = "/kaggle/input", "/kaggle/working"  # as a pushed kernel sees them
# a model folder a parameter names under /kaggle/input (01's model / text_model, 03's learner_params model)
_MOUNTED_FOLDER = re.compile(r"local-dir(?:-text)?:(/kaggle/input/[^\s\"'\\,}]+)")
NEEDS_DATA = {"01_extract", "02_correlate", "03_train", "05_submit"}  # the stages that read train.csv / test.csv


def reads_data(stage: str, params: Mapping[str, Any]) -> bool:
    """Whether a `stage` run with `params` reads the CSVs in data_dir (04 only to calibrate or stack on columns)."""
    return stage in NEEDS_DATA or (stage == "04_ensemble" and bool(params.get("calibrate_by")
                                                                   or params.get("meta_features")))


def _on_kaggle(value: str) -> PurePosixPath:
    """A folder parameter as a pushed kernel resolves it (its cwd is /kaggle/working)."""
    return PurePosixPath(posixpath.normpath(posixpath.join(KAGGLE_WORKING_PATH, value)))


def unreachable_paths(stage: str, params: Mapping[str, Any]) -> list[str]:
    """What to change, for each folder of a `stage` kernel's `params` (the defaults filled in) that no kernel can
    use on Kaggle: a data_dir it reads outside /kaggle/input, where the inputs are mounted (a folder of this
    machine's: the kernel stops there), or a work_dir outside /kaggle/working (Kaggle keeps no other output: it is
    lost when the kernel ends, and the later kernels find nothing). Relative folders are /kaggle/working's."""
    problems = []
    data_dir, work_dir = params.get("data_dir"), params.get("work_dir")
    if isinstance(data_dir, str) and data_dir not in ("auto", "demo") and reads_data(stage, params) \
            and not _on_kaggle(data_dir).is_relative_to(KAGGLE_INPUT_PATH):
        problems.append(f"data_dir: {data_dir} is not under {KAGGLE_INPUT_PATH}, where a kernel's inputs are mounted: "
                        "on Kaggle the kernel would stop on a folder it cannot find; leave data_dir auto (it finds "
                        "train.csv and test.csv in the attached --data dataset) or give a folder under /kaggle/input")
    if isinstance(work_dir, str) and work_dir != "auto" \
            and not _on_kaggle(work_dir).is_relative_to(KAGGLE_WORKING_PATH):
        problems.append(f"work_dir: {work_dir} is not under {KAGGLE_WORKING_PATH}, where Kaggle keeps a kernel's "
                        "outputs: on Kaggle the kernel would write outputs that are lost when it ends, and later "
                        "kernels would find nothing; leave work_dir auto")
    return problems


def unreachable_folders(params: Mapping[str, Any], meta: Mapping[str, Any]) -> list[str]:
    """What to change, for each /kaggle/input folder in a kernel's parameters (a local-dir model, a data_dir) that
    no source of its metadata (datasets, models, kernels, competitions) can be mounted as (no component of the path
    is a source's slug): a warning, as a source's mount may be named otherwise."""
    refs = [*meta.get("dataset_sources", ()), *meta.get("kernel_sources", ()), *meta.get("model_sources", ())]
    slugs = {ref.split("/")[1].lower() for ref in refs if ref.count("/") >= 1}
    slugs |= {slug.lower() for slug in meta.get("competition_sources", ())}
    folders = [(name, path) for name, value in params.items() for path in _MOUNTED_FOLDER.findall(str(value))]
    data_dir = params.get("data_dir")
    if isinstance(data_dir, str) and data_dir not in ("auto", "demo") \
            and _on_kaggle(data_dir).is_relative_to(KAGGLE_INPUT_PATH):
        folders.append(("data_dir", str(_on_kaggle(data_dir))))
    return [
        f"{name}: {path} is in no attached source ({', '.join(refs)}); attach its dataset with --data <owner>/<slug> "
        "(or a Kaggle Model in the template's model_sources), or the kernel stops on a folder it cannot find"
        for name, path in folders if not {part.lower() for part in PurePosixPath(path).parts[3:]} & slugs]


MODEL_SOURCE = re.compile(r"[^/\s]+/[^/\s]+/[^/\s]+/[^/\s]+/\d+")  # a Kaggle Model instance version, as the CLI takes


def model_source_problems(meta: Mapping[str, Any]) -> list[str]:
    """The kernel's model_sources that `kaggle kernels push` (2.2.x) refuses before uploading: each must be
    '<owner>/<model>/<framework>/<variation>/<version>'."""
    models = meta.get("model_sources", [])
    return [f"model_sources entry {ref!r} must be '<owner>/<model>/<framework>/<variation>/<version>' (e.g. "
            "google/gemma/transformers/2b/1: the path the model page's Input tab shows), as kaggle kernels push "
            "requires" for ref in (models if isinstance(models, list) else []) if not MODEL_SOURCE.fullmatch(str(ref))]


def _walk(top: Path, max_depth: int) -> Iterator[tuple[Path, int, list[str], list[str]]]:
    """os.walk down to `max_depth` levels below `top`; yields (folder, depth, subfolder names, file names)."""
    top = Path(top)
    base = len(top.parts)
    for dirpath, dirnames, filenames in os.walk(top, followlinks=True):
        folder = Path(dirpath)
        depth = len(folder.parts) - base
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")) if depth < max_depth else []
        yield folder, depth, dirnames, filenames


def _inside_work_dir(folder: Path, stop: Path) -> bool:
    """True when `folder` sits in an amzkit work folder (a parent holding stage folders), e.g. demo data."""
    for parent in [folder, *folder.parents]:
        if any((parent / stage).is_dir() for stage in STAGES):
            return True
        if parent == stop:
            return False
    return False


def find_data_dirs(root: str | Path = KAGGLE_INPUT, train_name: str = "train.csv", test_name: str = "test.csv",
                   prefer: Sequence[str] = (), max_depth: int = 4) -> list[Path]:
    """Every folder holding both CSVs, best first: competition mounts (or slugs in `prefer`), then plain inputs,
    then copies inside a previous kernel's work folder; shallower before deeper."""
    ranked = []
    for mount in list_mounts(root):
        for folder, depth, _, files in _walk(mount.path, max_depth):
            if train_name in files and test_name in files:
                key = (0 if mount.kind == "competition" or mount.slug in prefer else 1,
                       1 if _inside_work_dir(folder, mount.path) else 0,
                       1 if mount.kind == "notebook" else 0, depth, str(folder))
                ranked.append((key, folder))
    return [folder for _, folder in sorted(ranked)]


def find_data_dir(root: str | Path = KAGGLE_INPUT, train_name: str = "train.csv", test_name: str = "test.csv",
                  prefer: Sequence[str] = ()) -> Path:
    """The competition data folder (train + test CSV) under `root`; the error lists what is attached."""
    found = find_data_dirs(root, train_name, test_name, prefer)
    if found:
        return found[0]
    attached = ", ".join(f"{m.kind}:{m.slug}" for m in list_mounts(root)) or "nothing"
    raise FileNotFoundError(
        f"no folder under {root} holds both {train_name} and {test_name} (attached: {attached}). Attach the "
        "dataset you uploaded them to (Add Input -> Datasets; `kaggle build --data <owner>/<dataset>`), or the "
        "competition's data when it is hosted on Kaggle (--competition <slug>), or pass -p data_dir <folder>."
    )


def merge_cell(stage: str, params: Mapping[str, Any]) -> str:
    """The cell a built merging kernel runs after its parameters: the shard kernels its merge parameter names
    become their work folders as Kaggle mounted them (mounted_work_dirs); "" for any other kernel."""
    split = SPLIT_PARAMETERS.get(stage)
    if split is None or not params.get(split.merge):
        return ""
    return f"""\
# kaggle build: {split.merge} names the kernels whose shards this kernel merges. Kaggle mounts their outputs under
# /kaggle/input (the layout differs between Kaggle versions): their work folders are found there by probing.
from amzkit.app.kaggle_runtime import mounted_work_dirs as _mounted_work_dirs

{split.merge} = _mounted_work_dirs({split.merge}, {stage!r})"""


def mounted_work_dir(kernel_id: str, stage: str, root: str | Path = KAGGLE_INPUT, max_depth: int = 4) -> Path:
    """The work folder (the parent of its `<stage>/`) of kernel `owner/slug`, mounted under `root` (any layout)."""
    owner, _, slug = kernel_id.partition("/")
    mounts = [m for m in list_mounts(root) if m.slug == slug and m.owner in ("", owner)]
    if not mounts:
        attached = ", ".join(f"{m.kind}:{m.slug}" for m in list_mounts(root)) or "nothing"
        raise FileNotFoundError(
            f"kernel {kernel_id} is not mounted under {root} (attached: {attached}), yet this {stage} kernel merges "
            "its outputs: attach it (Add Input -> Notebooks; `kaggle build` lists it in kernel_sources) once it "
            "has run to the end, then run this kernel again")
    for mount in mounts:
        for folder, _, dirnames, _ in _walk(mount.path, max_depth):
            if stage in dirnames:
                return folder
    raise FileNotFoundError(
        f"kernel {kernel_id} is mounted at {mounts[0].path} but holds no {stage}/ folder: it has not run to the end "
        "(or it failed). Run it again until it completes, then run this kernel again")


def mounted_work_dirs(kernel_ids: Sequence[str], stage: str, root: str | Path = KAGGLE_INPUT) -> list[str]:
    """mounted_work_dir of each kernel, as the strings a merge parameter holds."""
    return [str(mounted_work_dir(kernel_id, stage, root)) for kernel_id in kernel_ids]


def _is_stage_output(folder: Path) -> bool:
    """A stage folder written by amzkit: metrics.json in it, or a run folder with metrics.json/manifest.json."""
    if (folder / "metrics.json").is_file():
        return True
    return any((run / "metrics.json").is_file() or (run / "manifest.json").is_file() for run in _subdirs(folder))


def find_stage_dirs(stage: str, root: str | Path = KAGGLE_INPUT, max_depth: int = 6) -> list[Path]:
    """Every `<stage>/` output folder of previous kernels mounted under `root` (any layout), sorted."""
    if stage not in STAGES:
        raise ValueError(f"unknown stage {stage!r}; stages are {STAGES}")
    found = []
    for folder, _, dirnames, _ in _walk(Path(root), max_depth):
        if folder.name == stage and _is_stage_output(folder):
            found.append(folder)
            dirnames[:] = []
    return sorted(found)


def find_work_dirs(root: str | Path = KAGGLE_INPUT) -> list[Path]:
    """amzkit work folders of previous kernels: the parents of their stage folders."""
    return sorted({d.parent for stage in STAGES for d in find_stage_dirs(stage, root)})


def find_wheel_dir(root: str | Path = KAGGLE_INPUT) -> Path | None:
    """The folder of the amzkit wheel dataset (the same globs as INSTALL_CELL), or None."""
    wheels = sorted(w for g in WHEEL_GLOBS for w in Path(root).glob(g))
    return wheels[-1].parent if wheels else None


# Folders a stage writes beside its `<stage>/` output that later stages read too: 01's image cache (the
# fetched pictures and their manifest) feeds 02's image hashes and 03's image_meta / colour groups.
SIBLING_FOLDERS: dict[str, tuple[str, ...]] = {"01_extract": ("image_cache",)}


def attach_previous_outputs(work_dir: str | Path, stage: str, root: str | Path = KAGGLE_INPUT) -> list[Path]:
    """Link the outputs `stage` reads (KERNELS[stage].reads) from earlier kernels into `work_dir`.

    Each entry of a mounted `<stage>/` folder (a run folder, metrics.json, folds.csv, ...) becomes a symlink
    `work_dir/<stage>/<entry>`; entries already there are kept (this kernel's own and the first kernel's win),
    so several 03_train kernels merge into one 03_train/. SIBLING_FOLDERS beside a mounted stage folder
    (01's image_cache) are linked as `work_dir/<folder>` the same way. Returns the links made.
    """
    if stage not in KERNELS:
        raise ValueError(f"unknown stage {stage!r}; stages are {list(KERNELS)}")
    made = []
    for needed in KERNELS[stage].reads:
        for source in find_stage_dirs(needed, Path(root).absolute()):
            target = Path(work_dir) / needed
            target.mkdir(parents=True, exist_ok=True)
            for entry in sorted(source.iterdir()):
                link = target / entry.name
                if link.exists() or link.is_symlink():
                    continue
                link.symlink_to(entry, target_is_directory=entry.is_dir())
                made.append(link)
            for name in SIBLING_FOLDERS.get(needed, ()):
                sibling, link = source.parent / name, Path(work_dir) / name
                if sibling.is_dir() and not (link.exists() or link.is_symlink()):
                    link.symlink_to(sibling, target_is_directory=True)
                    made.append(link)
    return made


def detach_previous_outputs(work_dir: str | Path, root: str | Path = KAGGLE_INPUT) -> int:
    """Remove the links `attach_previous_outputs` made (so a kernel's output holds only what it wrote)."""
    roots = {Path(root).absolute(), Path(root).resolve()}
    removed = 0
    folders = [Path(work_dir) / stage for stage in STAGES]
    entries = [entry for folder in folders if folder.is_dir() for entry in folder.iterdir()]
    entries += [Path(work_dir) / name for names in SIBLING_FOLDERS.values() for name in names]
    for entry in entries:
        target = Path(os.readlink(entry)) if entry.is_symlink() else None
        if target is not None and any(target.is_relative_to(r) for r in roots):
            entry.unlink()
            removed += 1
    return removed


def describe_inputs(root: str | Path = KAGGLE_INPUT) -> str:
    """What a kernel sees under `root`: mounts, the data folder, previous stages' outputs, the wheel."""
    lines = [f"inputs under {root}:"]
    lines += [f"  {m.kind:<11} {m.owner + '/' if m.owner else ''}{m.slug}  {m.path}" for m in list_mounts(root)]
    data = find_data_dirs(root)
    if len(data) > 1:  # the notebooks' data_dir auto takes the first whose CSVs fit their schema, not the first
        lines.append("data_dir candidates (data_dir auto takes the first whose CSVs fit the schema; -p data_dir "
                     "<folder> picks one):")
        lines += [f"  {folder}" for folder in data]
    else:
        lines.append(f"data_dir: {data[0] if data else '(none: attach the dataset holding train.csv and test.csv)'}")
    for stage in STAGES:
        for folder in find_stage_dirs(stage, root):
            lines.append(f"{stage}: {folder}")
    lines.append(f"amzkit wheel: {find_wheel_dir(root) or '(none: attach the amzkit-wheel dataset)'}")
    return "\n".join(lines)
