"""Each notebook's parameters: the stages' declarations joined, and the guard every notebook calls.

papermill only warns when `-p` names a parameter the notebook lacks (a typo then runs with the default).
Every notebook calls `check_parameters(globals(), stage)` right after its parameters cell; the cell itself is
generated from the same table (`parameters_cell`), and a test keeps the committed notebooks in step.
"""

from __future__ import annotations

import ast
import os
from pathlib import Path
from types import ModuleType, SimpleNamespace
from typing import Any

import nbformat

from amzkit.core.params import COMMON, Parameters
from amzkit.stages import correlate, ensemble, extract, leaderboard, leaks, submit, train

STAGE_PARAMETERS: dict[str, Parameters] = {
    "01_extract": COMMON + extract.PARAMETERS,
    "02_correlate": COMMON + correlate.PARAMETERS + leaks.PARAMETERS,
    "03_train": COMMON + train.PARAMETERS,
    "04_ensemble": COMMON + ensemble.PARAMETERS,
    "05_submit": COMMON + submit.PARAMETERS + leaderboard.PARAMETERS,
}

_LITERAL_TYPES = (str, int, float, bool, list, dict, tuple, type(None))
_IPYTHON_NAMES = {"In", "Out", "exit", "quit", "get_ipython", "open"}
# what papermill itself injects beside the user's parameters (--inject-paths, --inject-input-path, ...)
PAPERMILL_NAMES = {"PAPERMILL_INPUT_PATH", "PAPERMILL_OUTPUT_PATH"}
PAPERMILL_CELL_HEADER = "# Parameters\n"  # the first line of the cell papermill injects after the parameters cell


def parameters_of(stage: str) -> Parameters:
    """The parameter table of notebook `stage` ('01_extract' .. '05_submit')."""
    if stage not in STAGE_PARAMETERS:
        raise ValueError(f"unknown stage {stage!r}; stages are {sorted(STAGE_PARAMETERS)}")
    return STAGE_PARAMETERS[stage]


def stage_parameters(stage: str) -> dict[str, Any]:
    """A fresh copy of the Kaggle defaults of `stage`."""
    return parameters_of(stage).defaults_dict()


def parameters_cell(stage: str) -> str:
    """The source of the notebook's parameters cell, `name: type = value  # help` per parameter."""
    return parameters_of(stage).cell_source()


def _assignments(source: str) -> tuple[set[str], bool]:
    """(the names a cell's top-level statements assign, whether assignments are all the cell does): a cell that
    does not parse assigns nothing."""
    try:
        body = ast.parse(source).body
    except SyntaxError:
        return set(), False
    names, only = set(), True
    for statement in body:
        if isinstance(statement, ast.Assign):
            targets = statement.targets
        elif isinstance(statement, ast.AnnAssign) and statement.value is not None:
            targets = [statement.target]
        else:
            only = False
            continue
        names.update(target.id for target in targets if isinstance(target, ast.Name))
    return names, only and bool(body)


def _papermills_cell(source: Any, assigned: tuple[set[str], bool]) -> bool:
    """Whether a cell is the one papermill injects (its header, then assignments only)."""
    return isinstance(source, str) and source.startswith(PAPERMILL_CELL_HEADER) and assigned[1]


def parameter_cell_names(namespace: dict[str, Any], known: set[str]) -> set[str] | None:
    """In an IPython kernel, the names assigned by the parameters cell run last (the latest cell that assigns a
    parameter, whatever else it does; when that is papermill's injected cell, the parameters cell run right
    before it too), by the cells run right before it that assign other parameters (a cell split in two; not an
    earlier run of the same cell) and by those run right after it that assign a parameter or do nothing but
    assign (papermill's injected cell); None outside IPython (no input history) or when no such cell ran."""
    history = namespace.get("_ih")
    if not isinstance(history, list) or len(history) < 2:
        return None
    cells = [_assignments(source) for source in history[:-1]]  # the last entry is the guard's own cell
    last = max((i for i, (names, _) in enumerate(cells) if names & known), default=None)
    if last is None:
        return None

    names = set(cells[last][0])
    start = last
    if _papermills_cell(history[last], cells[last]) and last > 0 and cells[last - 1][0] & known:
        start = last - 1  # the parameters cell papermill's cell overrides: it shares the names given with -p
        names |= cells[start][0]
    for before in range(start - 1, -1, -1):  # the other half of a split cell sets other parameters; an earlier
        earlier = cells[before][0]           # run of the same cell sets the same ones (its typo since fixed)
        if not earlier & known or earlier & names:
            break
        names |= earlier
    for after in cells[last + 1:]:
        if not (after[0] & known or after[1]):
            break
        names |= after[0]
    return names


def check_parameters(namespace: dict[str, Any], stage: str) -> SimpleNamespace:
    """Validate the notebook's parameters against the stage's table and return them.

    Unknown names (typos such as `-p modle x`) and missing ones are errors; values are coerced to the
    declared type and written back into `namespace`. In a kernel (Jupyter, papermill) the unknown names are
    looked for in the parameters cell last run (and papermill's cell after it), not among every variable:
    what the notebook's later cells or the user defined (`metrics`, a scratch value), and a misspelt name
    since deleted from the cell, do not stop a rerun. The previous check's `p` and the notebook's `ctx` are
    removed first, so no cell runs on with the old parameters after a refusal.
    """
    table = parameters_of(stage)
    for name in ("p", "ctx"):  # the checked parameters and the context the notebooks make of them
        if isinstance(namespace.get(name), SimpleNamespace) or hasattr(namespace.get(name), "params"):
            del namespace[name]
    known = set(table.names())
    in_cells = parameter_cell_names(namespace, known)
    given = {
        name: value
        for name, value in namespace.items()
        if not name.startswith("_")
        and name not in _IPYTHON_NAMES
        and name not in PAPERMILL_NAMES
        and not isinstance(value, ModuleType)
        and isinstance(value, _LITERAL_TYPES)
        and (in_cells is None or name in known or name in in_cells)
    }
    for name in known & set(namespace) - set(given):  # a cell set it to an object: say so, not "lacks parameters"
        given[name] = _plain(name, namespace[name], stage)
    values = table.check(given, f"notebook {stage}")
    missing = sorted(set(table.names()) - set(values))
    if missing:
        raise ValueError(f"notebook {stage} lacks parameters {missing}: restore them in its parameters cell")
    namespace.update(values)
    return SimpleNamespace(**values)


def _plain(name: str, value: Any, stage: str) -> Any:
    """A parameter a cell set to an object as the literal it stands for: a path as its text, a numpy scalar as its
    number; anything else is refused by name (the notebook's parameters are literals, as Kaggle runs them)."""
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if hasattr(value, "item") and getattr(value, "shape", None) == ():  # numpy scalar (np.int64(5), np.float32)
        return value.item()
    raise ValueError(f"notebook {stage} parameter {name!r} is a {type(value).__name__}, not a literal: give it as "
                     "text, a number, True/False, a list or a dict (e.g. str(path), list(array))")


def sync_notebooks(folder: str | Path, write: bool = False) -> list[str]:
    """Notebooks in `folder` whose parameters cell differs from the declared table (rewritten when `write`)."""
    stale = []
    for stage in STAGE_PARAMETERS:
        path = Path(folder) / f"{stage}.ipynb"
        nb = nbformat.read(str(path), as_version=4)
        cells = [c for c in nb.cells if "parameters" in c.metadata.get("tags", [])]
        if len(cells) != 1:
            raise ValueError(f"{path} needs exactly one cell tagged 'parameters', found {len(cells)}")
        if cells[0].source != parameters_cell(stage):
            stale.append(stage)
            if write:
                cells[0].source = parameters_cell(stage)
                nbformat.write(nb, str(path))
    return stale
