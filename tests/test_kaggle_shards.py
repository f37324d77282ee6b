"""01 split over Kaggle kernels: `kaggle build -p 01_extract.num_shards=n` plans n shard kernels and a merging kernel
that alone mounts them, finds their work folders under /kaggle/input, and is the only 01 kernel later stages read."""

from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import nbformat
import numpy as np
import pytest
from test_kaggle import OWNER, _build, _meta

from amzkit.app import kaggle, runners
from amzkit.app.demo import make_demo
from amzkit.app.kaggle_runtime import attach_previous_outputs, merge_cell, mounted_work_dir
from amzkit.app.parameters import stage_parameters
from amzkit.core.schema import SPLITS, get_schema, load_data
from amzkit.core.workdir import KAGGLE_ROOT_ENV, list_runs
from amzkit.embed.runs import load_embeddings
from amzkit.images.tables import read_image_tables
from amzkit.stages.devices import extract_on_devices
from amzkit.stages.extract import extract, kernel_rows
from amzkit.stages.image_tables import write_image_tables

SHARD_ROWS = 8  # 40 train and 20 test rows: several shards per kernel
SHARDS = [f"{OWNER}/amzkit-01-extract-shard-1-of-2", f"{OWNER}/amzkit-01-extract-shard-2-of-2"]
MERGING = f"{OWNER}/amzkit-01-extract"
CLI = ["01.model=color-stats", "01.text_model=tfidf-svd", "01.num_shards=2"]


@pytest.fixture(scope="module")
def split(tmp_path_factory) -> kaggle.BuildResult:
    return _build(tmp_path_factory.mktemp("kaggle") / "build", cli_params=CLI)


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> Path:
    return make_demo(tmp_path_factory.mktemp("data"), n_train=40, n_test=20, seed=3).train_csv.parent


def _kernels(result: kaggle.BuildResult, stage: str) -> dict[str, kaggle.KernelPlan]:
    return {k.id: k for k in result.kernels if k.stage == stage}


def test_num_shards_plans_shard_kernels_then_a_merging_kernel_that_alone_mounts_them(split):
    extracts = _kernels(split, "01_extract")
    assert list(extracts) == [*SHARDS, MERGING]
    assert [extracts[k].params["shard_index"] for k in SHARDS] == [0, 1]
    assert all(extracts[k].params["num_shards"] == 2 and extracts[k].kernel_sources == [] for k in SHARDS)
    merging = extracts[MERGING]
    assert merging.params == {"model": "color-stats", "text_model": "tfidf-svd", "merge_dirs": SHARDS}
    assert merging.kernel_sources == SHARDS == _meta(split.out / merging.folder)["kernel_sources"]
    machines = {k: {key: _meta(split.out / extracts[k].folder)[key] for key in ("enable_gpu", "enable_internet")}
                for k in extracts}
    assert machines[MERGING] == {"enable_gpu": False, "enable_internet": False}, "merging joins files: CPU, offline"
    assert all(machines[k] == {"enable_gpu": True, "enable_internet": True} for k in SHARDS)
    (correlate,) = _kernels(split, "02_correlate").values()
    (train,) = _kernels(split, "03_train").values()
    assert correlate.kernel_sources == [MERGING]  # never a shard kernel's unmerged 01_extract/
    assert set(train.kernel_sources) == {correlate.id, MERGING}
    for kernel in split.kernels:
        assert kaggle.check_kernel_metadata(_meta(split.out / kernel.folder), split.out / kernel.folder,
                                            kernel.stage, kernel.params) == []


def test_only_the_merging_notebook_resolves_its_merge_dirs_right_after_its_parameters(split):
    for kernel in _kernels(split, "01_extract").values():
        nb = nbformat.read(split.out / kernel.folder / "01_extract.ipynb", as_version=4)
        tags = [c.metadata.get("tags", []) for c in nb.cells]
        cells = [c for c in nb.cells if kaggle.MERGE_TAG in c.metadata.get("tags", [])]
        if kernel.id != MERGING:
            assert cells == [] and merge_cell(kernel.stage, kernel.params) == ""
            continue
        assert [c.source for c in cells] == [merge_cell(kernel.stage, kernel.params)]
        assert "injected-parameters" in tags[tags.index([kaggle.MERGE_TAG]) - 1]


@pytest.mark.parametrize("given", [["01.shard_index=1", "01.num_shards=2"],
                                   ['01.merge_dirs=["/kaggle/input/amzkit-01-extract-1/amzkit"]']])
def test_shard_index_and_merge_dirs_are_the_builds_to_set(tmp_path, given):
    with pytest.raises(ValueError, match="kaggle build sets .* give num_shards n alone"):
        _build(tmp_path / "build", cli_params=given)
    assert not (tmp_path / "build").exists()


def _mount(outputs: Path, root: Path, kernel_id: str, layout: str) -> None:
    """A finished kernel's /kaggle/working, mounted as Kaggle does: flat <slug>/ or notebooks/<owner>/<slug>/."""
    owner, slug = kernel_id.split("/")
    link = root / slug if layout == "flat" else root / "notebooks" / owner / slug
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(outputs, target_is_directory=True)


def _run_merge_cell(kernel: kaggle.KernelPlan, kaggle_root: Path) -> list[str]:
    """The built merging notebook's cell, run as on Kaggle (its own interpreter, /kaggle at `kaggle_root`)."""
    code = f"merge_dirs = {kernel.params['merge_dirs']!r}\n{merge_cell(kernel.stage, kernel.params)}\n" \
           "import json; print(json.dumps(merge_dirs))"
    env = {**os.environ, KAGGLE_ROOT_ENV: str(kaggle_root)}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=False)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.mark.parametrize("layout", ["flat", "grouped"])
def test_a_split_01_chains_through_kaggles_mounts_to_02_and_03(split, demo, tmp_path, layout):
    """Each kernel sees only its kernel_sources; 02 and 03 then read the merged runs and image tables."""
    data = load_data(demo, "amazon2025")
    extracts = _kernels(split, "01_extract")
    outputs: dict[str, Path] = {}
    for index, kernel_id in enumerate(SHARDS):  # what run_extract does in a shard kernel, with smaller shards
        work = tmp_path / kernel_id.split("/")[1] / "working" / "amzkit"
        for model in ("color-stats", "tfidf-svd"):
            extract(data, demo, work, "amazon2025", model, shard_rows=SHARD_ROWS, shard_index=index, num_shards=2)
        write_image_tables(data, "amazon2025", demo, work, progress=False,
                           rows={s: kernel_rows(len(data[s]), index, 2, SHARD_ROWS) for s in SPLITS})
        outputs[kernel_id] = work.parent

    merging = extracts[MERGING]
    kaggle_root = tmp_path / "merging"
    for source in merging.kernel_sources:
        _mount(outputs[source], kaggle_root / "input", source, layout)
    merge_dirs = _run_merge_cell(merging, kaggle_root)
    assert merge_dirs == [str(kaggle_root / "input" / (s.split("/")[1] if layout == "flat" else
                                                       f"notebooks/{OWNER}/{s.split('/')[1]}") / "amzkit")
                          for s in SHARDS]
    work = kaggle_root / "working" / "amzkit"
    params = SimpleNamespace(**{**stage_parameters("01_extract"), **merging.params, "merge_dirs": merge_dirs})
    ctx = runners.Context("01_extract", params, get_schema("amazon2025"), work, demo, data)
    runners.run_extract(ctx)
    outputs[MERGING] = work.parent

    for stage in ("02_correlate", "03_train"):
        (kernel,) = _kernels(split, stage).values()
        root = tmp_path / stage / "input"
        for source in [s for s in kernel.kernel_sources if s in outputs]:
            _mount(outputs[source], root, source, layout)
        later = tmp_path / stage / "working" / "amzkit"
        links = attach_previous_outputs(later, stage, root)
        assert links and all(outputs[MERGING] in link.resolve().parents for link in links)
        assert list_runs(later, "01_extract") == ["color-stats", "tfidf-svd"]
        for split_name in SPLITS:
            ids = data[split_name]["sample_id"]
            ok = load_embeddings(later, "tfidf-svd", split_name, ids)[1]
            assert ok.all() and len(ok) == len(ids)
            assert read_image_tables(later, split_name, data[split_name]["image_link"]) is not None


def test_a_merge_of_kernels_that_embedded_another_csv_under_the_same_ids_is_refused_by_shard(demo, tmp_path):
    """The merging kernel's test.csv had one row's text edited since the shard kernels ran (same ids): the merge
    checked ids only and wrote the run, and 02/03 then refused it saying to rerun 01, which merged the same shards
    again; the merge now refuses, naming the shard and the kernels to rerun."""
    data = load_data(demo, "amazon2025")
    kernels = [tmp_path / f"kernel{index}" / "amzkit" for index in range(2)]
    for index, work in enumerate(kernels):
        extract(data, demo, work, "amazon2025", "tfidf-svd", shard_rows=SHARD_ROWS, shard_index=index, num_shards=2)
    edited = {split: frame.copy() for split, frame in data.items()}
    edited["test"].loc[9, "catalog_content"] += " (new pack size)"  # test shard #1: rows 8-15
    params = SimpleNamespace(**{**stage_parameters("01_extract"), "model": "", "text_model": "tfidf-svd",
                                "merge_dirs": [str(work) for work in kernels]})
    work = tmp_path / "merging" / "amzkit"
    ctx = runners.Context("01_extract", params, get_schema("amazon2025"), work, demo, edited)
    with pytest.raises(ValueError, match=r"test shard #1 \(.*kernel1.*\) was embedded from other text than this "
                                         r"test.csv holds .*rows 8-15.*rerun the shard kernels on this CSV"):
        runners.run_extract(ctx)
    assert list_runs(work, "01_extract") == [], "nothing merged"
    ctx = runners.Context("01_extract", params, get_schema("amazon2025"), work, demo, data)
    assert runners.run_extract(ctx).index.tolist() == ["tfidf-svd"], "the CSV the kernels embedded merges"


def _merge_image_kernels(demo: Path, tmp_path: Path, data: dict, **params) -> runners.Context:
    """Two shard kernels embed color-stats of `data`; the merging run's notebook context over their work folders."""
    kernels = [tmp_path / f"kernel{index}" / "amzkit" for index in range(2)]
    for index, work in enumerate(kernels):
        extract(data, demo, work, "amazon2025", "color-stats", shard_rows=SHARD_ROWS, shard_index=index, num_shards=2,
                images_offline_ok=True)  # a shard's 2 dead URLs among local files would read as the network down
        write_image_tables(data, "amazon2025", demo, work, progress=False,
                           rows={s: kernel_rows(len(data[s]), index, 2, SHARD_ROWS) for s in SPLITS})
    values = {**stage_parameters("01_extract"), "model": "color-stats", "text_model": "",
              "merge_dirs": [str(work) for work in kernels], **params}
    return runners.Context("01_extract", SimpleNamespace(**values), get_schema("amazon2025"),
                           tmp_path / "merging" / "amzkit", demo, data)


def test_a_merge_of_shard_kernels_warns_of_links_that_failed_passingly_and_stops_without_any_image(
        demo, tmp_path, dead_url, monkeypatch, capsys):
    """A one-kernel run warns when links failed for a passing reason and stops when no row got an image; a merge of
    shard kernels (-p merge_dirs) did neither (the kernels do not merge), so a split run whose host dropped went on
    to 03 with those rows silently imageless, and one without any image was only a printed line."""
    import amzkit.stages.extract as extract_module
    from amzkit.images.fetch import fetch_images
    from amzkit.images.http import RetryPolicy

    monkeypatch.setattr(extract_module, "fetch_images",
                        functools.partial(fetch_images, retry=RetryPolicy(attempts=1, final_pass_attempts=0)))
    data = load_data(demo, "amazon2025")
    dropped = {split: frame.assign(image_link=np.where(np.arange(len(frame)) % 4 == 0,
                                                       [f"{dead_url}/{i}.jpg" for i in frame["sample_id"]],
                                                       frame["image_link"]))
               for split, frame in data.items()}
    runners.run_extract(_merge_image_kernels(demo, tmp_path / "dropped", dropped))
    out = capsys.readouterr().out
    assert "WARNING: image run 'color-stats': 10 of 40 train links and 5 of 20 test links failed" in out
    assert "Rerun the shard kernels when it is back, then this merge" in out
    missing = {split: frame.assign(image_link=[f"images/gone-{i}.jpg" for i in frame["sample_id"]])
               for split, frame in data.items()}
    with pytest.raises(RuntimeError, match=r"not one of the 60 rows has an image .*Fix the links or the network, "
                                           r"then rerun the shard kernels and this merge"):
        runners.run_extract(_merge_image_kernels(demo, tmp_path / "missing", missing))
    kept = _merge_image_kernels(demo, tmp_path / "kept", missing, images_offline_ok=True)
    assert runners.run_extract(kept).loc["color-stats", "train ok"] == 0, "images_offline_ok keeps it, as ever"


def test_a_merge_naming_a_model_no_kernel_embedded_says_what_to_run(demo, tmp_path):
    """The shard kernels embedded color-stats only and the merge also named a text model: 'no shards found in
    [...]' said nothing of why or what to do."""
    ctx = _merge_image_kernels(demo, tmp_path, load_data(demo, "amazon2025"), text_model="tfidf-svd")
    with pytest.raises(FileNotFoundError, match=r"tfidf-svd'\]: no kernel merged here embedded with this model. Run "
                                                r"01 with it in each shard kernel .* -p text_model \"\"\)"):
        runners.run_extract(ctx)


def test_a_shard_kernel_embeds_its_shards_on_each_of_its_devices(demo, tmp_path, capsys):
    """-p device auto is every GPU of the kernel, but a shard kernel (num_shards 2; Kaggle gives each two T4s) went
    to extract on one device whatever -p device said: half of every shard kernel's GPUs stood idle."""
    data = load_data(demo, "amazon2025")
    values = {**stage_parameters("01_extract"), "model": "color-stats", "text_model": "", "shard_index": 0,
              "num_shards": 2, "device": "cpu,cpu"}
    work = tmp_path / "two" / "amzkit"
    runners.run_extract(runners.Context("01_extract", SimpleNamespace(**values), get_schema("amazon2025"), work,
                                        demo, data))
    assert "color-stats: 2 workers on cpu, cpu, shards split between them" in capsys.readouterr().out
    kernel = {"shard_rows": SHARD_ROWS, "shard_index": 1, "num_shards": 2}  # shards 1 and 3 of train, 1 of test
    summary = extract_on_devices(data, demo, tmp_path / "split", "amazon2025", "color-stats", device="cpu,cpu",
                                 **kernel)
    assert summary["shards_written"] == 3, "the workers' shards"
    extract(data, demo, tmp_path / "one", "amazon2025", "color-stats", **kernel)
    split, one = (tmp_path / name / "01_extract" / "color-stats" / "shards" for name in ("split", "one"))
    assert sorted(path.name for path in split.glob("*.json")) == ["test-00001.json", "train-00001.json",
                                                                 "train-00003.json"]
    arrays = [{path.name: path.read_bytes() for pattern in ("*.npy", "*.csv") for path in folder.glob(pattern)}
              for folder in (split, one)]
    assert len(arrays[0]) == 3 * 3 and arrays[0] == arrays[1], "a one-device kernel's arrays and fetch tables"


def test_a_shard_kernel_not_mounted_or_not_finished_is_named_with_what_to_do(tmp_path):
    root = tmp_path / "input"
    (root / "datasets" / OWNER / "amzkit-wheel").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match=f"kernel {SHARDS[0]} is not mounted .*dataset:amzkit-wheel.*attach"):
        mounted_work_dir(SHARDS[0], "01_extract", root)
    (root / "notebooks" / OWNER / SHARDS[0].split("/")[1] / "amzkit").mkdir(parents=True)  # an empty output
    with pytest.raises(FileNotFoundError, match="holds no 01_extract/ folder: it has not run to the end"):
        mounted_work_dir(SHARDS[0], "01_extract", root)
    (root / "notebooks" / "bob" / SHARDS[1].split("/")[1] / "01_extract").mkdir(parents=True)  # another owner's
    with pytest.raises(FileNotFoundError, match="not mounted"):
        mounted_work_dir(SHARDS[1], "01_extract", root)


def _push_01(split, tmp_path, monkeypatch, **state) -> tuple[dict, list[tuple[str, str]]]:
    """`kaggle push --wait --stages 01_extract` of the split build through the fake CLI (its `state`); returns the
    results and the CLI's kernel calls in order, as ("push" | "poll", kernel id)."""
    from test_kaggle import FAKE_KAGGLE, SECRET

    from amzkit.app import kaggle_push

    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "kaggle").write_text(FAKE_KAGGLE.format(python=sys.executable))
    (bin_dir / "kaggle").chmod(0o755)
    log, state_path = tmp_path / "kaggle.log", tmp_path / "state.json"
    state_path.write_text(json.dumps({"dataset_exists": True, "versions": {}, "statuses": {}, **state}))
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    for name, value in {"FAKE_KAGGLE_LOG": log, "FAKE_KAGGLE_STATE": state_path, "HOME": tmp_path / "home",
                        "KAGGLE_USERNAME": OWNER, "KAGGLE_KEY": SECRET}.items():
        monkeypatch.setenv(name, str(value))
    for name in ("KAGGLE_CONFIG_DIR", "KAGGLE_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    results = kaggle_push.push(split.out, stages=["01_extract"], wait=True, poll_interval=0, skip_dataset=True)
    folders = {str(split.out / k.folder): k.id for k in split.kernels}
    calls = [json.loads(line) for line in log.read_text().splitlines()]
    return results, [("push", folders[c[3]]) if c[1] == "push" else ("poll", c[2].rsplit("/", 1)[0])
                     for c in calls if c[0] == "kernels"]


def test_push_runs_the_shard_kernels_at_once_and_the_merging_kernel_after_both(split, tmp_path, monkeypatch):
    results, events = _push_01(split, tmp_path, monkeypatch,
                               statuses={SHARDS[0]: ["running", "running", 'has status "complete"']})
    assert results == {kernel_id: "complete" for kernel_id in [*SHARDS, MERGING]}
    first_poll = events.index(("poll", SHARDS[0]))
    assert {("push", s) for s in SHARDS} <= set(events[:first_poll]), "both shard kernels run at once"
    last_shard_poll = max(i for i, e in enumerate(events) if e[0] == "poll" and e[1] in SHARDS)
    assert events.index(("push", MERGING)) > last_shard_poll, "the merge starts once both shards completed"


def test_a_push_refused_for_want_of_a_session_waits_for_a_running_kernel_then_goes_again(split, tmp_path,
                                                                                          monkeypatch, capsys):
    results, events = _push_01(split, tmp_path, monkeypatch, refuse={SHARDS[1]: 1},
                               statuses={SHARDS[0]: ["running", 'has status "complete"']})
    assert results == {kernel_id: "complete" for kernel_id in [*SHARDS, MERGING]}
    assert events[:5] == [("push", SHARDS[0]), ("push", SHARDS[1]), ("poll", SHARDS[0]), ("poll", SHARDS[0]),
                          ("push", SHARDS[1])], "refused, it waits for shard 1 to end, then is pushed again"
    assert "sessions are all taken; waiting for " + SHARDS[0] in capsys.readouterr().out


def test_a_push_refused_with_none_of_its_kernels_running_says_what_to_do(split, tmp_path, monkeypatch):
    from amzkit.app.kaggle_api import KaggleError

    with pytest.raises(KaggleError, match=r"every session of the account is taken .* --stages 01_extract"):
        _push_01(split, tmp_path, monkeypatch, refuse={SHARDS[0]: 1})
