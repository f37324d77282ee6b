"""The house: layers that import only downwards (import-linter), no cycles, no hidden imports, small modules,
a small public API that loads lazily."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import REPO_ROOT

PACKAGE = REPO_ROOT / "amzkit"
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
# Deferred on purpose: heavy or optional packages, imported only when the code that needs them runs (IPython and
# tqdm's widget bars only in a Jupyter kernel).
DEFERRED = ("torch", "open_clip", "transformers", "optuna", "xgboost", "catboost", "certifi", "huggingface_hub",
            "IPython", "tqdm.notebook")
MAX_MODULE_LINES = 520


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(REPO_ROOT).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        out[name] = path
    return out


def _lint(root: Path) -> subprocess.CompletedProcess:
    return subprocess.run([str(LINT_IMPORTS), "--no-cache"], cwd=root, capture_output=True, text=True,
                          env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"}, timeout=300)


def test_import_contracts_hold():
    result = _lint(REPO_ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "1 kept, 0 broken" in result.stdout


def test_import_contracts_fail_when_a_lower_layer_imports_a_higher_one(tmp_path):
    shutil.copytree(PACKAGE, tmp_path / "amzkit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO_ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with open(tmp_path / "amzkit" / "core" / "metric.py", "a") as fh:
        fh.write("\nimport amzkit.stages.train  # a lower layer reaching up\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert "amzkit.core is not allowed to import amzkit.stages" in result.stdout
    assert "amzkit.core.metric -> amzkit.stages.train" in result.stdout


def _imports(path: Path, module: str) -> list[tuple[str, int, bool]]:
    """(imported amzkit module or package, line, inside a function) for every import in `path`."""
    tree = ast.parse(path.read_text())
    inside = {id(n) for f in ast.walk(tree) if isinstance(f, ast.FunctionDef | ast.AsyncFunctionDef)
              for n in ast.walk(f) if isinstance(n, ast.Import | ast.ImportFrom)}
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, node.lineno, id(node) in inside) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(module.split(".")[:-node.level] + ([base] if base else []))
            out.append((base, node.lineno, id(node) in inside))
            out += [(f"{base}.{alias.name}", node.lineno, id(node) in inside) for alias in node.names]
    return out


def test_no_import_cycle_between_modules():
    modules = _modules()
    graph = {name: {target for target, _, _ in _imports(path, name) if target in modules and target != name
                    and not name.startswith(target + ".")}  # a package's own __init__ is not a cycle
             for name, path in modules.items()}
    graph["amzkit"] = set()  # the package's lazy public API imports nothing at import time
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                raise AssertionError(f"import cycle: {' -> '.join(stack[stack.index(nxt):] + [nxt])}")
            if nxt not in state:
                visit(nxt)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node)


def test_imports_inside_functions_only_defer_heavy_optional_packages():
    offenders = []
    for name, path in _modules().items():
        lines = path.read_text().splitlines()
        for target, line, inside in _imports(path, name):
            if inside and target.split(".")[0] not in DEFERRED and not target.startswith(DEFERRED):
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line} imports {target} inside a function")
            elif inside and "#" not in lines[line - 1] and "#" not in lines[line - 2]:
                offenders.append(f"{path.relative_to(REPO_ROOT)}:{line}: say why {target} is deferred (a comment)")
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_no_module_is_too_long_to_read():
    long = {str(p.relative_to(REPO_ROOT)): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > MAX_MODULE_LINES}
    assert not long, f"split these modules: {long}"


def test_the_layers_are_folders_a_reader_can_see():
    layers = {p.name for p in PACKAGE.iterdir() if p.is_dir() and not p.name.startswith("__")}
    assert layers == {"core", "text", "images", "embed", "ml", "stages", "app"}
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py", "testing.py"]


def test_the_public_api_resolves_and_loads_lazily():
    import amzkit

    for name in amzkit.__all__:
        assert getattr(amzkit, name) is not None, name
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        amzkit.nope  # noqa: B018
    probe = ("import sys, amzkit; heavy = [m for m in ('torch', 'lightgbm', 'amzkit.stages', 'sklearn') "
             "if m in sys.modules]; print(heavy)")
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.stdout.strip() == "[]", result.stdout + result.stderr


RUFF = Path(sys.executable).with_name("ruff")


def test_library_tests_benchmarks_and_notebooks_are_ruff_clean():
    # the notebooks too: their generated install and parameters cells are code users read and lint
    result = subprocess.run([str(RUFF), "check", "--no-cache", "amzkit", "tests", "benchmarks", "notebooks"],
                            cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
