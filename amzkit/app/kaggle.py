"""From the notebooks to Kaggle kernels: `kaggle build` writes one folder per kernel plus a wheel dataset (amzkit,
its version stamped with the build, and every package the kernels need that Kaggle's image lacks); `kaggle push`
and `kaggle fetch` (amzkit.app.kaggle_push) upload them in stage order and bring their outputs back."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import unicodedata
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat
import papermill as pm
import yaml

from amzkit.app.kaggle_api import KaggleError, read_credentials
from amzkit.app.kaggle_checks import (
    check_03_runs,
    check_reachable_paths,
    folds_02_and_03_differ,
    runs_no_01_kernel_extracts,
    runs_no_03_kernel_trains,
)
from amzkit.app.kaggle_image import (
    Downloader,
    earlier_needs,
    merge_needs,
    needs_of,
    on_image,
    plan_shipping,
    read_pins,
)
from amzkit.app.kaggle_runtime import (
    INSTALL_CELL,
    KERNELS,
    SPLIT_PARAMETERS,
    install_cell,
    kernel_spec,
    merge_cell,
    model_source_problems,
    unreachable_folders,
)
from amzkit.app.kaggle_wheel import build_wheel, wheel_version
from amzkit.app.parameters import check_parameters, stage_parameters
from amzkit.core.io import write_json
from amzkit.core.workdir import STAGES

REPO_ROOT = Path(__file__).resolve().parents[2]
NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
TEMPLATE = REPO_ROOT / "kernel-metadata.json"
CONSTRAINTS = REPO_ROOT / "constraints.txt"  # pins of the packages a build ships (open_clip_torch, ...)
DEFAULT_BUILD = Path("build/kaggle")
PLAN_FILE = "plan.json"
WHEEL_DATASET = "amzkit-wheel"
PLACEHOLDER_OWNER = "your-kaggle-username"
INSTALL_TAG = "amzkit-install"  # the tag of the notebooks' first code cell (INSTALL_CELL)
MERGE_TAG = "amzkit-merge-inputs"  # the tag of a merging kernel's cell after its parameters (merge_cell)

PLAIN_PREFIX = re.compile(r"[A-Za-z0-9][A-Za-z0-9 -]{0,19}")  # a --prefix that slugifies alike everywhere
MAX_TITLE_CHARS = 50  # Kaggle's limit on a kernel title (kaggle-cli PR #179, learntools PR #48)
TITLE_HASH_CHARS = 6  # a shortened variant ends in this many hex digits of its full name
# A stage with several kernels (a list of parameter sets) names them by this parameter, else by position.
VARIANT_KEY = {"01_extract": "model", "03_train": "run_name"}


def slugify(text: str) -> str:
    """Kaggle's slug of a title: ASCII, lower case, apostrophes dropped, other non-alphanumerics to one '-'."""
    text = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode()
    text = re.sub(r"['\u2019]", "", text.lower())
    return re.sub(r"[^a-z0-9]+", "-", text).strip("-")


def stage_title(stage: str, prefix: str = "amzkit", variant: str = "") -> str:
    """'amzkit 01 extract' (+ ' <variant>'): the title that slugifies to the kernel's slug."""
    return " ".join(part for part in (prefix, stage.replace("_", " "), variant) if part)


def check_kernel_metadata(meta: Mapping[str, Any], folder: str | Path, stage: str | None = None,
                          params: Mapping[str, Any] | None = None) -> list[str]:
    """Every rule of the facts file that `meta` (read from `folder`) breaks; [] when it is a valid kernel.

    With `stage` (and the kernel's baked `params`) the machine must be that kernel's (kaggle_runtime.kernel_spec).
    """
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
    if len(title) > MAX_TITLE_CHARS:
        problems.append(f"title {title!r} is longer than {MAX_TITLE_CHARS} characters (Kaggle refuses it)")
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
    problems += model_source_problems(meta)
    if stage is not None:
        spec = kernel_spec(stage, params)
        wanted = {"enable_gpu": spec.enable_gpu, "enable_internet": spec.enable_internet,
                  "machine_shape": spec.machine_shape}
        for name, value in wanted.items():
            if meta.get(name, "absent") != value:
                problems.append(f"{name} is {meta.get(name, 'absent')!r}; this {stage} kernel runs with {value!r}")
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
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as err:  # a typo in the file: its place, not a traceback
        kind = "JSON" if path.suffix == ".json" else "YAML"
        raise ValueError(f"--params {path} cannot be read as UTF-8 {kind} ({err}): fix the file") from None
    if not isinstance(data, dict):
        raise ValueError(f"{path} must map stage names to parameters, e.g. {{'03_train': {{'run_name': 'x'}}}}")
    out: dict[str, list[dict[str, Any]]] = {}
    for key, value in data.items():  # YAML reads an unquoted `03:` as the number 3
        stage = _stage_name(f"{key:02d}" if isinstance(key, int) and not isinstance(key, bool) else str(key))
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
    version: str = ""
    shipped: dict[str, str] = field(default_factory=dict)  # distribution -> wheel file, beside amzkit's


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
    raise KaggleError("no Kaggle owner: pass --owner <your-kaggle-username> (an API token does not name its user), "
                      "or set KAGGLE_USERNAME")


def _variant_names(stage: str, variants: list[dict[str, Any]]) -> list[str]:
    if len(variants) == 1:
        return [""]
    key = VARIANT_KEY.get(stage)
    names = [slugify(str(v[key])) if key and v.get(key) else str(i + 1) for i, v in enumerate(variants)]
    if len(set(names)) != len(names):
        raise ValueError(f"{stage}: several kernels would share the name {names}; give each a distinct "
                         f"{key or 'set of parameters'}")
    return names


def _is_install_cell(cell) -> bool:
    return cell.cell_type == "code" and (INSTALL_TAG in cell.metadata.get("tags", [])
                                         or cell.source.startswith(INSTALL_CELL.splitlines()[0]))


def set_install_cell(nb, want: str = "") -> None:
    """Make the notebook's first code cell `install_cell(want)` (replacing the tagged one, or inserting it)."""
    cells = [c for c in nb.cells if _is_install_cell(c)]
    if cells:
        cells[0].source = install_cell(want)
        return
    first_code = next((i for i, c in enumerate(nb.cells) if c.cell_type == "code"), len(nb.cells))
    nb.cells.insert(first_code, nbformat.v4.new_code_cell(install_cell(want), metadata={"tags": [INSTALL_TAG]}))


def sync_install_cells(notebooks_dir: str | Path = NOTEBOOKS_DIR, write: bool = False) -> list[str]:
    """The notebooks whose amzkit-install cell differs from INSTALL_CELL; with `write`, replace that cell only."""
    changed = []
    for path in sorted(Path(notebooks_dir).glob("*.ipynb")):
        nb = nbformat.read(str(path), as_version=4)
        cells = [c for c in nb.cells if INSTALL_TAG in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise ValueError(f"{path}: expected one cell tagged {INSTALL_TAG!r}, found {len(cells)}")
        if cells[0].source != INSTALL_CELL:
            changed.append(path.name)
            if write:
                cells[0].source = INSTALL_CELL
                nbformat.write(nb, str(path))
    return changed


def prepare_notebook(src: str | Path, dest: str | Path, params: Mapping[str, Any], want: str = "",
                     after_params: str = "") -> Path:
    """Copy a notebook with `params` baked in (papermill prepare-only: an `injected-parameters` cell after the
    `parameters` cell), its install cell expecting amzkit `want` (the build's wheel), and a kernelspec;
    `after_params` (kaggle_runtime.merge_cell) becomes a code cell right after the baked parameters."""
    nb = nbformat.read(str(src), as_version=4)
    set_install_cell(nb, want)
    nb.metadata.setdefault("kernelspec", {"display_name": "Python 3", "language": "python", "name": "python3"})
    nb = pm.execute_notebook(nb, None, parameters=dict(params), prepare_only=True, progress_bar=False,
                             kernel_name=nb.metadata.kernelspec.get("name", "python3"))
    nb.metadata.get("papermill", {}).update({"input_path": Path(src).name, "output_path": Path(dest).name})
    if after_params:
        at = max(i for i, c in enumerate(nb.cells)
                 if {"parameters", "injected-parameters"} & set(c.metadata.get("tags", [])))
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(after_params, metadata={"tags": [MERGE_TAG]}))
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, str(dest))
    return dest


def dataset_metadata(owner: str) -> dict[str, Any]:
    return {"title": "amzkit wheel", "id": f"{owner}/{WHEEL_DATASET}", "licenses": [{"name": "other"}],
            "description": "The amzkit wheel (MIT) and the packages Kaggle's image lacks, installed offline by the "
                           "amzkit notebooks with pip --no-index."}


@dataclass(frozen=True)
class DataSources:
    """Where the kernels' train.csv / test.csv come from."""

    datasets: list[str]  # owner/slug of uploaded datasets (the 2025 challenge's zip, uploaded)
    competitions: list[str]  # competition slugs (for competitions hosted on Kaggle)


def data_sources(template: Mapping[str, Any], data: Sequence[str] = (), competitions: Sequence[str] = ()
                 ) -> DataSources:
    """`--data owner/dataset` (else the template's dataset_sources) and `--competition slug` (else the
    template's competition_sources); a placeholder owner left in the template is refused."""
    datasets = list(data) if data else list(template.get("dataset_sources", []))
    comps = list(competitions) if competitions else list(template.get("competition_sources", []))
    placeholders = [ref for ref in datasets if ref.partition("/")[0] == PLACEHOLDER_OWNER]
    datasets = [ref for ref in datasets if ref not in placeholders]
    if placeholders and not datasets and not comps:
        raise KaggleError(f"the template's data source {placeholders[0]!r} still names {PLACEHOLDER_OWNER!r}: pass "
                          "--data <owner>/<dataset> (the dataset you uploaded train.csv and test.csv to)")
    for ref in datasets:
        owner, sep, slug = ref.partition("/")
        if not sep or not owner or not slug or "/" in slug:
            raise KaggleError(f"data source {ref!r} is not '<owner>/<dataset>': pass --data <owner>/<dataset>, the "
                              "dataset you uploaded train.csv and test.csv to (its address on kaggle.com/datasets)")
    for slug in comps:
        if not slug or "/" in slug:
            raise KaggleError(f"competition source {slug!r} must be a competition's slug (kaggle.com/competitions/"
                              "<slug>), e.g. --competition titanic")
    if not datasets and not comps:
        raise KaggleError("no data source: pass --data <owner>/<dataset> (train.csv and test.csv uploaded as a "
                          "Kaggle dataset), or --competition <slug> for a competition hosted on Kaggle")
    return DataSources(datasets, comps)


def kernel_metadata(template: Mapping[str, Any], kernel: KernelPlan, code_file: str, sources: DataSources,
                    dataset_id: str) -> dict[str, Any]:
    """A kernel's metadata: the data and wheel datasets, the template's privacy and keywords, and the kernel's
    machine (its stage's, or kaggle_runtime.MACHINE_OVERRIDES for its parameters), written out."""
    spec = kernel_spec(kernel.stage, kernel.params)
    return {
        "id": kernel.id,
        "title": kernel.title,
        "code_file": code_file,
        "language": "python",
        "kernel_type": "notebook",
        "is_private": bool(template.get("is_private", True)),
        "enable_gpu": spec.enable_gpu,
        "enable_tpu": False,
        "enable_internet": spec.enable_internet,
        "machine_shape": spec.machine_shape,
        "dataset_sources": [d for d in sources.datasets if d != dataset_id] + [dataset_id],
        "competition_sources": list(sources.competitions),
        "kernel_sources": kernel.kernel_sources,
        "model_sources": list(template.get("model_sources", [])),
        "keywords": list(template.get("keywords", [])),
    }


def build(out: str | Path = DEFAULT_BUILD, owner: str | None = None, params_file: str | Path | None = None,
          cli_params: Sequence[str] = (), stages: Sequence[str] | None = None, prefix: str = "amzkit",
          template: str | Path = TEMPLATE, notebooks_dir: str | Path = NOTEBOOKS_DIR, data: Sequence[str] = (),
          competitions: Sequence[str] = (), ship_deps: bool = True, downloader: Downloader | None = None,
          wheel_builder: Callable[[Path], Path] | None = None, constraints: str | Path = CONSTRAINTS,
          home: str | Path | None = None, environ: Mapping[str, str] | None = None) -> BuildResult:
    """Write the wheel dataset and one kernel folder per (stage, parameter set) under `out`, plus plan.json.

    The wheel dataset holds amzkit's wheel (version stamped with this build) and, unless `ship_deps` is False,
    the wheels of every package the selected kernels need that Kaggle's image lacks (kaggle_image): a kernel
    needing a package the image lacks is refused when nothing may be shipped. The dataset replaces the one every
    kernel installs from, so it also ships what the kernels of the stages not selected need (with the build's
    parameters, and as the folder's previous plan.json built them); with `ship_deps` False that is warned of.
    """
    tmpl = load_template(template)
    if "docker_image" in tmpl:
        warnings.warn(f"{template} sets docker_image; it is not copied (it would override the GPU request)",
                      stacklevel=2)
    owner = _resolve_owner(owner, tmpl, home, environ)
    sources = data_sources(tmpl, data, competitions)
    per_stage = load_params_file(params_file) if params_file else {}
    for stage, values in parse_cli_params(cli_params).items():
        per_stage[stage] = [{**v, **values} for v in per_stage.get(stage, [{}])]
    selected = [_stage_name(s) for s in stages] if stages else list(STAGES)
    dataset_id = f"{owner}/{WHEEL_DATASET}"
    if not PLAIN_PREFIX.fullmatch(prefix):  # other characters slugify differently on Kaggle's side (ß, ', 1,000)
        raise ValueError(f"prefix {prefix!r}: use ASCII letters, digits, spaces and '-' (kernel titles start with it "
                         "and must slugify to the kernel's id the same way on Kaggle)")
    planned = _plan_kernels(owner, prefix, per_stage)  # every parameter is checked before anything is written
    kernels = [k for k in planned if k.stage in selected]
    check_reachable_paths(kernels)  # data_dir / work_dir no kernel can use on Kaggle
    for unread in runs_no_01_kernel_extracts(kernels) + runs_no_03_kernel_trains(kernels) + folds_02_and_03_differ(
            kernels):
        warnings.warn(unread, stacklevel=2)
    needs = needs_of((k.stage, {**stage_parameters(k.stage), **k.params}) for k in kernels)
    # the dataset replaces the one every kernel installs from: those of the other stages (planned here, or pushed
    # from this folder's previous build) keep theirs
    others = merge_needs(needs_of((k.stage, {**stage_parameters(k.stage), **k.params}) for k in planned
                                  if k.stage not in selected), earlier_needs(Path(out) / PLAN_FILE, dataset_id))
    if not ship_deps:
        plan_shipping(needs, Path(out), ship=False)  # refuses a package the image lacks before writing anything
        lost = {name: why for name, why in others.items() if name not in needs and on_image(name) is None}
        if lost:
            warnings.warn("--no-deps: the wheel dataset this build uploads replaces the one every kernel installs "
                          "from, and holds no " + "; ".join(f"{n} (for {', '.join(w)})" for n, w in lost.items())
                          + ": those kernels, pushed before, would stop in their install cell when run again. Build "
                          "without --no-deps to ship them, or build and push those stages again", stacklevel=2)
        others = {}
    out = Path(out)
    _clean_previous_build(out)
    dataset_dir = out / WHEEL_DATASET
    dataset_dir.mkdir(parents=True, exist_ok=True)
    write_json(dataset_dir / "dataset-metadata.json", dataset_metadata(owner))
    wheel = (wheel_builder or build_wheel)(dataset_dir)
    version = wheel_version(wheel)
    shipping = plan_shipping(merge_needs(needs, others), dataset_dir, ship=ship_deps, downloader=downloader,
                             pins=read_pins(constraints))
    for conflict in shipping.conflicts:
        warnings.warn(f"a shipped package's requirement is not met by Kaggle's image: {conflict}", stacklevel=2)
    for kernel in kernels:
        folder = out / kernel.folder
        code_file = f"{kernel.stage}.ipynb"
        prepare_notebook(Path(notebooks_dir) / code_file, folder / code_file, kernel.params, want=version,
                         after_params=merge_cell(kernel.stage, kernel.params))
        meta = kernel_metadata(tmpl, kernel, code_file, sources, dataset_id)
        write_json(folder / "kernel-metadata.json", meta)
        for missing in unreachable_folders(kernel.params, meta):
            warnings.warn(f"{kernel.folder}: {missing}", stacklevel=2)
        problems = check_kernel_metadata(meta, folder, kernel.stage, kernel.params)
        if problems:
            raise KaggleError(f"{folder}/kernel-metadata.json is not a valid kernel: {problems}")
    plan = {"owner": owner, "version": version,
            "data": {"dataset_sources": sources.datasets, "competition_sources": sources.competitions},
            "dataset": {"id": dataset_id, "folder": WHEEL_DATASET, "wheel": wheel.name, **shipping.as_dict()},
            "kernels": [vars(k) for k in kernels]}
    write_json(out / PLAN_FILE, plan)
    return BuildResult(out, owner, dataset_id, dataset_dir, wheel, kernels, version, dict(shipping.shipped))


def _plan_kernels(owner: str, prefix: str, per_stage: Mapping[str, list[dict[str, Any]]]) -> list[KernelPlan]:
    """Every kernel in stage order with its checked parameters and kernel_sources: the previous stage's kernels
    plus those of every stage it reads (KERNELS[stage].reads), so each kernel sees what it reads. A parameter set
    split over kernels (_shard_params) becomes its shard kernels, then the kernel merging them, which alone has
    them as sources; later stages read the merging kernel, never a shard kernel's unmerged output."""
    ids_by_stage: dict[str, list[str]] = {}
    kernels = []
    for index, stage in enumerate(STAGES):
        checked = [check_stage_params(stage, v) for v in per_stage.get(stage, [{}])]
        if stage == "03_train":
            check_03_runs(checked)
        if stage == "04_ensemble" and len(checked) > 1:  # 05 links the first 04 kernel's files it finds
            raise ValueError(f"{len(checked)} 04_ensemble parameter sets: 05 mounts every 04 kernel but reads one "
                             "04_ensemble/ folder, so it would submit whichever it found first. Give 04 one parameter "
                             "set (method best picks among blend, stack and calibration, and its table.csv scores "
                             "them all)")
        sources_from = ([STAGES[index - 1]] if index else []) + list(KERNELS[stage].reads)
        sources = list(dict.fromkeys(k for s in sources_from for k in ids_by_stage.get(s, [])))
        ids_by_stage[stage] = []
        for params, name in zip(checked, _variant_names(stage, checked), strict=True):
            shards = [_kernel_plan(owner, prefix, stage, shard_name, shard_params, sources)
                      for shard_params, shard_name in _shard_params(stage, params, name)]
            if shards:
                split = SPLIT_PARAMETERS[stage]
                params = {**{k: v for k, v in params.items() if k != split.count}, split.merge: [k.id for k in shards]}
            kernels += [*shards, _kernel_plan(owner, prefix, stage, name, params, sources + [k.id for k in shards])]
            ids_by_stage[stage].append(kernels[-1].id)
    ids = [k.id for k in kernels]
    if len(set(ids)) != len(ids):
        raise ValueError(f"several kernels would share an id: {sorted({i for i in ids if ids.count(i) > 1})}; "
                         "give each parameter set a distinct name (its model or run_name)")
    return kernels


def _kernel_plan(owner: str, prefix: str, stage: str, variant: str, params: dict[str, Any],
                 sources: list[str]) -> KernelPlan:
    title = stage_title(stage, prefix, variant)
    if len(title) > MAX_TITLE_CHARS:  # Kaggle answers a longer title with "500 - An internal server error"
        base = stage_title(stage, prefix)
        room = MAX_TITLE_CHARS - len(base) - len(" -") - TITLE_HASH_CHARS
        if room < 1:
            raise ValueError(f"kernel title {base!r} leaves no room for a variant within Kaggle's "
                             f"{MAX_TITLE_CHARS} characters: choose a shorter --prefix")
        digest = hashlib.sha1(variant.encode()).hexdigest()[:TITLE_HASH_CHARS]  # keeps shortened names apart
        title = stage_title(stage, prefix, f"{slugify(variant)[:room].rstrip('-')}-{digest}")
    slug = slugify(title)
    return KernelPlan(stage, f"{owner}/{slug}", title, slug, params, sources)


def _shard_params(stage: str, params: Mapping[str, Any], name: str) -> list[tuple[dict[str, Any], str]]:
    """(parameters, variant name) of each shard kernel when `params` split the stage's rows over kernels
    (SPLIT_PARAMETERS: `num_shards: n`, n > 1); [] when one kernel does the whole stage."""
    split = SPLIT_PARAMETERS.get(stage)
    if split is None:
        return []
    planned = [p for p in (split.index, split.merge) if p in params]
    if planned:
        raise ValueError(f"{stage}: kaggle build sets {planned} itself; give {split.count} n alone (e.g. -p "
                         f"{stage}.{split.count}=2) and it plans n kernels that each take their share of the rows "
                         "and one that merges them, each with the kernel sources it reads")
    count = params.get(split.count, 1)
    if count == 1:
        return []
    return [({**params, split.index: i}, " ".join(filter(None, (name, f"shard {i + 1} of {count}"))))
            for i in range(count)]


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
