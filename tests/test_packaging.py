"""The pins stay in one set: pyproject's packages, constraints.txt and environment.yml name the same ones."""

from __future__ import annotations

import ast
import importlib.metadata
import json
import re
import sys
import tomllib

from conftest import REPO_ROOT


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _requirement_name(line: str) -> str:
    return _canonical(re.split(r"[<>=!~\[ ;]", line.strip(), maxsplit=1)[0])


def _pyproject_packages() -> set[str]:
    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    names = {_requirement_name(r) for r in project["dependencies"]}
    names |= {_requirement_name(r) for r in project["optional-dependencies"]["test"]}
    return names


def _environment_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "environment.yml").read_text().splitlines():
        match = re.match(r"\s+- ([A-Za-z0-9_.-]+)==([^\s]+)\s*$", line)
        if match:
            pins[_canonical(match.group(1))] = match.group(2)
    return pins


def _constraint_pins() -> dict[str, str]:
    pins = {}
    for line in (REPO_ROOT / "constraints.txt").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, version = line.split("==")
            pins[_canonical(name)] = version.strip()
    return pins


def test_environment_yml_and_pyproject_name_the_same_packages():
    env = set(_environment_pins())
    project = _pyproject_packages()
    assert env == project, f"only in environment.yml: {env - project}; only in pyproject: {project - env}"


def test_environment_yml_and_constraints_pin_the_same_versions():
    assert _environment_pins() == _constraint_pins()


def test_user_listed_packages_are_all_dependencies():
    wanted = {"jupyter", "papermill", "nbformat", "torch", "transformers", "open-clip-torch", "lightgbm",
              "pandas", "matplotlib", "seaborn"}
    assert wanted <= _pyproject_packages()


def test_kernel_metadata_is_a_valid_kernel_for_01_extract():
    meta = json.loads((REPO_ROOT / "kernel-metadata.json").read_text())
    owner, slug = meta["id"].split("/")
    assert len(slug) >= 5 and len(meta["title"]) >= 5
    assert re.sub(r"[^a-z0-9]+", "-", meta["title"].lower()).strip("-") == slug
    assert (REPO_ROOT / meta["code_file"]).is_file() and meta["code_file"].endswith("01_extract.ipynb")
    assert meta["language"] == "python" and meta["kernel_type"] == "notebook"
    assert meta["enable_gpu"] is True and meta["enable_internet"] is True
    assert "docker_image" not in meta


def test_ci_runs_the_readme_test_command():
    assert "make test" in (REPO_ROOT / ".ci" / "run").read_text()
    readme = (REPO_ROOT / "README.md").read_text()
    assert readme.index("make demo") < readme.index("make test") < 1500, "README shows the two commands first"


# Imports amzkit may make without declaring them: a guarded fallback, or a learner's own (LEARNERS[...].requires).
UNDECLARED_IMPORTS = {"certifi": "images.http: requests' CA bundle when installed, else the system's",
                      "IPython": "core.progress: a widget bar's display, only inside a Jupyter kernel (IPython's)"}


def _third_party_imports() -> dict[str, list[str]]:
    """{top-level module: [files]} of every import in amzkit/ that is neither the standard library nor amzkit."""
    found: dict[str, list[str]] = {}
    for path in sorted((REPO_ROOT / "amzkit").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top not in sys.stdlib_module_names and top != "amzkit":
                    found.setdefault(top, []).append(str(path.relative_to(REPO_ROOT)))
    return found


def test_every_package_amzkit_imports_is_declared():
    from amzkit.app.kaggle_image import DISTRIBUTION_OF_IMPORT
    from amzkit.ml.learners import LEARNERS

    project = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]
    declared = {_requirement_name(r) for r in project["dependencies"]}
    declared |= {_requirement_name(r) for extra in project["optional-dependencies"].values() for r in extra}
    learners = {m for entry in LEARNERS.values() for m in entry.requires}
    imports = _third_party_imports()
    assert {"numpy", "scipy", "torch", "yaml"} <= set(imports), "the scan finds amzkit's imports"
    distributions = importlib.metadata.packages_distributions()
    undeclared = {}
    for module, files in imports.items():
        if module in learners or module in UNDECLARED_IMPORTS:
            continue
        names = distributions.get(module) or [DISTRIBUTION_OF_IMPORT.get(module, module)]
        if not {_canonical(n) for n in names} & declared:
            undeclared[module] = sorted(set(files))
    assert undeclared == {}, "declare these in pyproject.toml (and pin them in constraints.txt and environment.yml)"
