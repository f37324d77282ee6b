"""Notebook hygiene and the parameter guard: literal Kaggle defaults, no outputs, thin cells, no typos."""

from __future__ import annotations

import ast
import re

import nbformat
import papermill
import pytest
from conftest import REPO_ROOT

from amzkit.app.kaggle_runtime import INSTALL_CELL
from amzkit.app.parameters import (
    STAGE_PARAMETERS,
    check_parameters,
    parameters_cell,
    parameters_of,
    stage_parameters,
    sync_notebooks,
)

NOTEBOOKS = sorted((REPO_ROOT / "notebooks").glob("*.ipynb"))
MAX_LOGIC_LINES = 3


def _parameters_cell(nb) -> str:
    cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
    assert len(cells) == 1, "exactly one cell tagged 'parameters'"
    return cells[0].source


def test_the_five_numbered_notebooks_exist():
    assert [p.stem for p in NOTEBOOKS] == ["01_extract", "02_correlate", "03_train", "04_ensemble", "05_submit"]
    assert sorted(STAGE_PARAMETERS) == [p.stem for p in NOTEBOOKS]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_parameters_cell_holds_the_stage_defaults_as_literals(path):
    nb = nbformat.read(path, as_version=4)
    tree = ast.parse(_parameters_cell(nb))
    values = {}
    for node in tree.body:
        assert isinstance(node, ast.AnnAssign) and node.simple, ast.dump(node)  # name: type = literal
        values[node.target.id] = ast.literal_eval(node.value)  # raises on anything but a literal
    assert values == stage_parameters(path.stem)
    assert _parameters_cell(nb) == parameters_cell(path.stem), "regenerate: sync_notebooks('notebooks', True)"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_papermill_help_explains_every_parameter(path):
    """`papermill --help-notebook` shows a type and a one-line help for every parameter."""
    inferred = papermill.inspect_notebook(str(path))
    table = parameters_of(path.stem)
    assert list(inferred) == table.names()
    for name, info in inferred.items():
        assert info["inferred_type_name"] == table[name].type, name
        assert info["help"] == table[name].help and info["help"], name


def test_notebooks_are_in_step_with_the_declared_parameters(tmp_path):
    folder = tmp_path / "notebooks"
    folder.mkdir()
    for path in NOTEBOOKS:
        (folder / path.name).write_text(path.read_text())
    assert sync_notebooks(folder) == []
    nb = nbformat.read(folder / "03_train.ipynb", as_version=4)
    cell = next(c for c in nb.cells if "parameters" in c.metadata.get("tags", []))
    cell.source = cell.source.replace('n_folds: int = 5', 'n_folds: int = 4')
    nbformat.write(nb, folder / "03_train.ipynb")
    assert sync_notebooks(folder) == ["03_train"]
    assert sync_notebooks(folder, write=True) == ["03_train"] and sync_notebooks(folder) == []


def test_library_functions_take_the_declared_defaults():
    """One source of defaults: a Python user gets what a notebook user gets."""
    import inspect

    from amzkit.stages import correlate, ensemble, extract, leaks, submit, train, tune

    checks = [(train.train_run, "03_train", ["n_folds", "seed", "fold_strategy", "preset", "tfidf_dim", "group_by",
                                            "num_threads", "pseudo_label_fraction", "pseudo_label_weight"]),
              (tune.tune_preset, "03_train", ["n_folds", "seed", "fold_strategy", "num_threads", "tfidf_dim"]),
              (extract.extract, "01_extract", ["batch_size", "device", "num_workers", "shard_index", "num_shards"]),
              (correlate.correlate, "02_correlate", ["top_k", "n_permutations", "n_folds", "knn_k", "seed"]),
              (leaks.leak_report, "02_correlate", []),
              (ensemble.ensemble, "04_ensemble", ["method", "meta"]),
              (submit.submit, "05_submit", ["source", "file_name", "solution_csv"])]
    for function, stage, names in checks:
        signature = inspect.signature(function).parameters
        defaults = stage_parameters(stage)
        for name in names:
            assert signature[name].default == defaults[name], (function.__name__, name)
    assert inspect.signature(train.train_run).parameters["learner"].default == stage_parameters("03_train")["learner"]
    assert list(inspect.signature(train.train_run).parameters["features"].default) == \
        stage_parameters("03_train")["features"]


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_committed_clean_and_thin(path):
    nb = nbformat.read(path, as_version=4)
    assert nb.metadata["kernelspec"]["name"] == "python3"
    code = [c for c in nb.cells if c.cell_type == "code"]
    params_at = next(i for i, c in enumerate(code) if "parameters" in c.metadata.get("tags", []))
    assert "check_parameters" in code[params_at + 1].source, "the guard runs right after the parameters cell"
    assert code[0].source.strip() == INSTALL_CELL.strip(), "first code cell installs amzkit on Kaggle"
    for cell in code:
        assert cell.outputs == [] and cell.execution_count is None, "commit notebooks without outputs"
        if "parameters" in cell.metadata.get("tags", []) or cell is code[0]:
            continue
        logic = [line for line in cell.source.splitlines()
                 if line.strip() and not line.lstrip().startswith(("#", "import ", "from "))]
        assert len(logic) <= MAX_LOGIC_LINES, f"cell has {len(logic)} lines of logic:\n{cell.source}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_last_cell_shows_finishs_line_not_its_returned_path(path):
    """finish() prints where the outputs are and returns that folder: as a cell's last expression without ';'
    Jupyter would show PosixPath('...') under the printed line."""
    last = [c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "code"][-1].source.strip()
    tail = ast.parse(last).body[-1]
    assert isinstance(tail, ast.Expr) and ast.unparse(tail.value) == "runners.finish(ctx)", last
    assert last.endswith(";"), f"end {path.name}'s last cell with ';': {last!r}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_the_notebooks_text_names_only_parameters_its_guard_knows(path):
    """A `-p name` in a markdown cell (or its papermill examples) is a parameter of that notebook: a renamed one
    would be refused by the guard."""
    nb = nbformat.read(path, as_version=4)
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    named = set(re.findall(r"-p (\w+)", text)) - {"name"}  # `-p name value`: the form, not a parameter
    assert named and named <= set(parameters_of(path.stem).names()), named - set(parameters_of(path.stem).names())


def test_03s_text_lists_every_learner_and_fold_group():
    """03's opening lists the learners and the feature groups fit inside the folds: one added since is named."""
    from amzkit.ml.featureset import FOLD_FEATURE_GROUPS, IMAGE_FEATURE_GROUP_NAMES
    from amzkit.ml.learners import LEARNERS

    text = nbformat.read(REPO_ROOT / "notebooks" / "03_train.ipynb", as_version=4).cells[0].source
    in_fold = re.search(r"in-fold groups \(([^)]*)\)", text).group(1)
    image = re.search(r"image groups \(([^)]*)\)", text).group(1)
    assert set(re.findall(r"`(\w+)`", in_fold)) == set(FOLD_FEATURE_GROUPS)
    assert set(re.findall(r"`(\w+)`", image)) == set(IMAGE_FEATURE_GROUP_NAMES)
    assert set(LEARNERS) <= set(re.findall(r"`(\w+)`", text.split("Features:")[0]))


def test_the_numbers_the_notebooks_text_states_are_the_codes():
    """02's verdict thresholds and 04's alike-runs correlation, as the cells' text states them."""
    from amzkit.ml.diversity import ALIKE_CORRELATION
    from amzkit.stages.correlate import VERDICTS

    def text(stage: str) -> str:
        nb = nbformat.read(REPO_ROOT / "notebooks" / f"{stage}.ipynb", as_version=4)
        return "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")

    (strong, strong_name, _), (moderate, moderate_name, _), (_, weak_name, _) = VERDICTS
    assert (f"> {strong:g} {strong_name}, {moderate:g}-{strong:g} {moderate_name}, < {moderate:g} {weak_name}"
            in text("02_correlate"))
    assert f"at or above {ALIKE_CORRELATION:g} are printed" in text("04_ensemble")


def test_unknown_parameter_is_refused_with_a_suggestion():
    namespace = {**stage_parameters("01_extract"), "modle": "x"}
    with pytest.raises(ValueError, match=r"unknown parameter 'modle' \(did you mean 'model'\?\)"):
        check_parameters(namespace, "01_extract")


def test_missing_parameter_is_refused():
    namespace = stage_parameters("03_train")
    del namespace["n_folds"]
    with pytest.raises(ValueError, match="n_folds"):
        check_parameters(namespace, "03_train")


def test_papermill_strings_are_coerced_to_the_default_types():
    namespace = {**stage_parameters("03_train"), "embeddings": '["a", "b"]', "n_folds": "3",
                 "lgb_params": '{"num_leaves": 7}', "features": "quantity, brand"}
    params = check_parameters(namespace, "03_train")
    assert params.embeddings == ["a", "b"] and namespace["embeddings"] == ["a", "b"]
    assert params.n_folds == 3 and params.lgb_params == {"num_leaves": 7}
    assert params.features == ["quantity", "brand"]
    with pytest.raises(ValueError, match="lgb_params"):
        check_parameters({**stage_parameters("03_train"), "lgb_params": "[1]"}, "03_train")


def test_wrong_type_is_refused():
    namespace = {**stage_parameters("03_train"), "n_folds": "five"}
    with pytest.raises(ValueError, match="n_folds"):
        check_parameters(namespace, "03_train")


def test_a_parameter_set_to_an_object_is_taken_as_its_literal_or_refused_by_name():
    """work_dir = Path(...) or n_folds = np.int64(3) in a cell was reported as 'lacks parameters ['work_dir']'."""
    from pathlib import Path

    import numpy as np

    params = check_parameters({**stage_parameters("03_train"), "work_dir": Path("/tmp/w"), "n_folds": np.int64(3)},
                              "03_train")
    assert params.work_dir == "/tmp/w" and params.n_folds == 3 and type(params.n_folds) is int
    with pytest.raises(ValueError, match=r"parameter 'features' is a ndarray, not a literal"):
        check_parameters({**stage_parameters("03_train"), "features": np.array(["quantity"])}, "03_train")


def test_modules_functions_and_ipython_names_are_not_parameters():
    import math

    namespace = {**stage_parameters("02_correlate"), "math": math, "check_parameters": check_parameters,
                 "In": [""], "Out": {}, "_": None}
    assert check_parameters(namespace, "02_correlate").top_k == 20


def _kernel_namespace(stage: str, *cells: str) -> dict:
    """A kernel's globals after running `cells` (then the guard cell), with IPython's input history `_ih`."""
    namespace: dict = {"_ih": [""]}
    for source in cells:
        namespace["_ih"].append(source)
        exec(source, namespace)  # noqa: S102 - the test's own cell sources
    namespace["_ih"].append(f'p = check_parameters(globals(), "{stage}")')
    return namespace


def test_in_a_kernel_only_the_parameters_cell_is_checked_for_unknown_names():
    cell = parameters_cell("03_train")
    # run once: the notebook's own cells leave `metrics` and the user a scratch value; then a parameter is
    # edited and the parameters cell and the guard run again (a second Run All is the same)
    namespace = _kernel_namespace("03_train", cell, "metrics = {'cv_smape': 40.0}\nm = 3",
                                  cell.replace('run_name: str = "lgbm"', 'run_name: str = "b"'))
    assert check_parameters(namespace, "03_train").run_name == "b"
    # a misspelt name typed into the cell is refused, and no longer once it is deleted from the cell
    typo = cell + '\ntext_modle = "minilm"\n'
    with pytest.raises(ValueError, match=r"unknown parameter 'text_modle'"):
        check_parameters(_kernel_namespace("03_train", typo), "03_train")
    fixed = _kernel_namespace("03_train", typo, cell)
    assert "text_modle" in fixed and check_parameters(fixed, "03_train").run_name == "lgbm"
    # papermill: the parameters cell, then its injected cell (a typo there is refused), then the guard
    with pytest.raises(ValueError, match=r"unknown parameter 'modle'"):
        check_parameters(_kernel_namespace("03_train", cell, "# Parameters\nmodle = 'x'\n"), "03_train")
    # rerunning the guard alone finds the parameters cell run last, even after later cells
    guard = 'from amzkit.app.parameters import check_parameters\np = check_parameters(globals(), "03_train")'
    again = _kernel_namespace("03_train", cell, guard, "metrics = {}\nfig = None", "x = len('ab')")
    assert check_parameters(again, "03_train").learner == "lightgbm"


def test_under_papermill_a_typo_in_the_parameters_cell_is_refused_when_other_parameters_are_given():
    # papermill's cell (-p run_name x) shares run_name with the parameters cell, which was then taken for an
    # earlier run of it and left out: a misspelt line added to the cell passed silently whenever -p was used
    typo = parameters_cell("03_train") + '\ntune_trial: int = 20\n'
    injected = '# Parameters\nrun_name = "x"\n'
    with pytest.raises(ValueError, match=r"unknown parameter 'tune_trial' \(did you mean 'tune_trials'\?\)"):
        check_parameters(_kernel_namespace("03_train", INSTALL_CELL, typo, injected), "03_train")
    clean = _kernel_namespace("03_train", INSTALL_CELL, parameters_cell("03_train"), injected)
    assert check_parameters(clean, "03_train").run_name == "x"
    # the cell the user ran before a rerun of the parameters cell is still an earlier run, not read
    fixed = _kernel_namespace("03_train", typo, parameters_cell("03_train"))
    assert check_parameters(fixed, "03_train").tune_trials == 0


def test_a_refused_parameters_cell_leaves_no_old_p_for_the_next_cells():
    cell = parameters_cell("03_train")
    namespace = _kernel_namespace("03_train", cell)
    namespace["p"] = check_parameters(namespace, "03_train")
    namespace["_ih"] += [cell.replace('learner: str = "lightgbm"', 'learner: str = "lightbgm"'), "p = ..."]
    exec(namespace["_ih"][-2], namespace)  # noqa: S102
    with pytest.raises(ValueError, match="learner"):
        check_parameters(namespace, "03_train")
    assert "p" not in namespace  # a cell run past the error stops at `p`, not trains with the old parameters


def test_the_guard_in_a_real_kernel_lets_a_notebook_run_twice(tmp_path):
    """Jupyter's way: the 03 notebook's parameters cell and guard, a later cell, an edit, both again."""
    from jupyter_client.manager import start_new_kernel

    cells = [c.source for c in nbformat.read(str(REPO_ROOT / "notebooks" / "03_train.ipynb"), as_version=4).cells
             if c.cell_type == "code"]
    parameters, guard = cells[1], cells[2]
    assert "check_parameters" in guard
    manager, client = start_new_kernel(kernel_name="python3", cwd=str(tmp_path))
    try:
        def run(source: str) -> dict:
            reply = client.execute_interactive(source, timeout=120, output_hook=lambda msg: None)
            return reply["content"]

        assert run(parameters)["status"] == "ok" and run(guard)["status"] == "ok"
        assert run("metrics = {'cv_smape': 1.0}")["status"] == "ok"
        assert run(parameters.replace('run_name: str = "lgbm"', 'run_name: str = "b"'))["status"] == "ok"
        assert run(guard)["status"] == "ok", "the notebook's own `metrics` was taken for a misspelt parameter"
        assert run("assert p.run_name == 'b', p")["status"] == "ok"
        failed = run(parameters + '\ntext_modle = "x"\n') and run(guard)
        assert failed["status"] == "error" and "text_modle" in failed["evalue"]
    finally:
        client.stop_channels()
        manager.shutdown_kernel(now=True)


def test_the_guard_finds_typos_in_a_parameters_cell_that_does_more_than_assign_literals():
    cell = parameters_cell("03_train")
    lines = cell.splitlines()
    half = len(lines) // 2
    extras = ["print('set')", "get_ipython().run_line_magic('time', '')", "seed = 40 + 2"]  # %time as IPython keeps it
    for extra in extras:
        edited = f"{extra}\n{cell}\ntext_modle = 'x'\n"
        # after a clean first run (its later cells too), the edited cell is the one read, not the clean one
        ran = ["from amzkit.app.parameters import check_parameters\np = check_parameters(globals(), '03_train')",
               "metrics = {'cv_smape': 1.0}"]
        namespace = {"_ih": [""], "get_ipython": lambda: type("Shell", (), {"run_line_magic": print})()}
        for source in [cell, *ran, edited]:
            namespace["_ih"].append(source)
            exec(source, namespace)  # noqa: S102
        namespace["_ih"].append(ran[0])
        with pytest.raises(ValueError, match="unknown parameter 'text_modle'"):
            check_parameters(namespace, "03_train")
        del namespace["text_modle"]
        namespace["_ih"][-1:] = [f"{extra}\n{cell}", ran[0]]  # fixed: a second Run All of a cell that prints
        exec(namespace["_ih"][-2], namespace)  # noqa: S102
        assert check_parameters(namespace, "03_train").run_name == "lgbm"
    # a parameters cell split in two, the typo in the first half
    first, second = "\n".join(lines[:half]) + "\ntext_modle = 'x'", "\n".join(lines[half:])
    with pytest.raises(ValueError, match="unknown parameter 'text_modle'"):
        check_parameters(_kernel_namespace("03_train", first, second), "03_train")
    # papermill's injected cell with a value that is no literal (float('inf')) beside a typo
    with pytest.raises(ValueError, match="unknown parameter 'modle'"):
        check_parameters(_kernel_namespace("03_train", cell, "modle = 'x'\ntune_minutes = float('inf')"), "03_train")
    # the same cell run twice in a row, its typo fixed the second time
    assert check_parameters(_kernel_namespace("03_train", cell + "\ntext_modle = 'x'", cell), "03_train")


def test_a_refusal_also_removes_the_notebooks_ctx():
    from types import SimpleNamespace

    cell = parameters_cell("04_ensemble")
    namespace = _kernel_namespace("04_ensemble", cell.replace('method: str = "best"', 'method: str = "stak"'))
    namespace["ctx"] = SimpleNamespace(params=SimpleNamespace(method="blend"), work_dir="w")
    with pytest.raises(ValueError, match="method"):
        check_parameters(namespace, "04_ensemble")
    assert "ctx" not in namespace  # `runners.run_ensemble(ctx)` stops there, not blends with the old method


def test_papermills_inject_paths_names_are_not_taken_for_misspelt_parameters():
    """`papermill --inject-paths` adds PAPERMILL_INPUT_PATH / PAPERMILL_OUTPUT_PATH to its injected cell."""
    injected = "# Parameters\nrun_name = 'b'\nPAPERMILL_INPUT_PATH = 'in.ipynb'\nPAPERMILL_OUTPUT_PATH = 'out.ipynb'\n"
    namespace = _kernel_namespace("03_train", parameters_cell("03_train"), injected)
    assert check_parameters(namespace, "03_train").run_name == "b"
    with pytest.raises(ValueError, match=r"unknown parameter 'modle'"):  # a typo beside them is still refused
        check_parameters(_kernel_namespace("03_train", parameters_cell("03_train"), injected + "modle = 'x'\n"),
                         "03_train")


@pytest.mark.parametrize("text", ["2024", "007", "True", "None"])
def test_a_text_parameter_papermill_reads_as_a_number_says_to_pass_it_raw(text):
    """`-p run_name 2024` reaches the notebook as the int 2024 (papermill's -p converts): the refusal must say how
    to give the text (-r, raw), not to set -p again."""
    from papermill.cli import _resolve_type

    value = _resolve_type(text)
    assert not isinstance(value, str)
    with pytest.raises(ValueError, match=r"-r run_name") as refused:
        check_parameters({**stage_parameters("03_train"), "run_name": value}, "03_train")
    assert "set -p run_name" not in str(refused.value)
    params = check_parameters({**stage_parameters("03_train"), "run_name": text}, "03_train")  # what -r gives
    assert params.run_name == text


@pytest.mark.parametrize(("name", "text", "fix"), [
    ("embeddings", "['minilm:pca:16']", r"""-p embeddings '\["fashion-siglip:pca:64", "minilm:pca:32"\]'"""),
    ("embeddings", "[minilm:pca:16]", r"comma-separated: -p embeddings fashion-siglip:pca:64,minilm:pca:32"),
    ("lgb_params", "{'num_leaves': 31}", r"""double quotes: -p lgb_params '\{"key": 1\}'"""),
])
def test_a_list_or_dict_that_is_not_json_is_refused_with_the_form_that_works(name, text, fix):
    """Python's quotes or bare names inside brackets: the refusal shows how to write the value, not only
    where the JSON parser stopped."""
    with pytest.raises(ValueError, match=rf"parameter '{name}': .* is not JSON .*{fix}"):
        check_parameters({**stage_parameters("03_train"), name: text}, "03_train")
    for shown in ('["fashion-siglip:pca:64", "minilm:pca:32"]', "fashion-siglip:pca:64,minilm:pca:32"):
        # the forms the message shows are ones the guard takes
        params = check_parameters({**stage_parameters("03_train"), "embeddings": shown}, "03_train")
        assert params.embeddings == ["fashion-siglip:pca:64", "minilm:pca:32"]


@pytest.mark.parametrize("text", ["--5", "²", "5-"])
def test_a_whole_number_parameter_given_text_that_is_no_integer_is_refused_by_name(text):
    """`int()` of '--5' or '²' raised its own 'invalid literal for int()', naming no parameter."""
    with pytest.raises(ValueError, match=r"parameter 'n_folds' must be a int"):
        check_parameters({**stage_parameters("03_train"), "n_folds": text}, "03_train")


@pytest.mark.parametrize("value", [float("inf"), "inf", "1e999"])
def test_an_infinite_value_is_refused_by_a_ranged_parameter(value):
    """factor_max = inf passed `> 0` and then failed in numpy (np.arange up to inf) inside 04's calibration."""
    with pytest.raises(ValueError, match=r"parameter 'factor_max' = inf is not a finite number"):
        check_parameters({**stage_parameters("04_ensemble"), "factor_max": value}, "04_ensemble")


def test_a_numpy_boolean_is_taken_by_a_bool_parameter_as_numpy_integers_are_by_an_int_one():
    """`images_offline_ok=mask.all()` gives np.True_; it was refused as 'got bool np.True_'."""
    import numpy as np

    from amzkit.stages.extract import PARAMETERS

    values = PARAMETERS.validate(images_offline_ok=np.bool_(True), batch_size=np.int64(8))
    assert values == {"images_offline_ok": True, "batch_size": 8} and type(values["images_offline_ok"]) is bool


def test_a_number_yaml_reads_as_text_is_taken_by_a_number_parameter():
    """papermill's -y / -f (YAML 1.1) read `n_folds: 1e1` as the text '1e1': a whole-number parameter refused it."""
    import yaml
    from papermill.iorw import NoDatesSafeLoader

    given = yaml.load("n_folds: 1e1\ntune_minutes: 1e1\ntune_trials: 2.0e1", Loader=NoDatesSafeLoader)
    assert given["n_folds"] == "1e1"  # what papermill injects
    params = check_parameters({**stage_parameters("03_train"), **given}, "03_train")
    assert (params.n_folds, params.tune_minutes, params.tune_trials) == (10, 10.0, 20)
    with pytest.raises(ValueError, match=r"parameter 'n_folds' must be a int"):
        check_parameters({**stage_parameters("03_train"), "n_folds": "2.5e0"}, "03_train")


@pytest.mark.parametrize("value", [1, 0, "yes", "on"])
def test_a_bool_parameter_given_no_boolean_says_how_to_write_one(value):
    """-p images_offline_ok 1 (papermill gives the int 1) or 'yes' was refused with 'must be a bool like its
    default', saying only to set -p images_offline_ok <value>."""
    with pytest.raises(ValueError, match=r"must be a bool like its default .*write True or False: "
                                         r"-p images_offline_ok True \(or false\)"):
        check_parameters({**stage_parameters("01_extract"), "images_offline_ok": value}, "01_extract")
    for text, meant in (("True", True), ("false", False), (" TRUE ", True)):  # papermill's -p true gives 'true'
        assert check_parameters({**stage_parameters("01_extract"), "images_offline_ok": text},
                                "01_extract").images_offline_ok is meant
