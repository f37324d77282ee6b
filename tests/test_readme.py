"""The README's commands are what users copy: every papermill `-p`, `kaggle build -p` and the build YAML it shows
passes the notebooks' parameter guard, and every learner it names takes the learner_params it is shown with."""

from __future__ import annotations

import re
import shlex

import pytest
import yaml
from conftest import REPO_ROOT
from papermill.cli import _resolve_type

from amzkit.app.kaggle import check_stage_params, parse_cli_params
from amzkit.app.parameters import parameters_of
from amzkit.stages.train import build_learner

README = (REPO_ROOT / "README.md").read_text()
NOTEBOOK = re.compile(r"notebooks/(0[1-5]_[a-z]+)\.ipynb")


def _code_blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", README, flags=re.S)


def _commands(first_word: str) -> list[list[str]]:
    """The README's shell lines starting with `first_word` (continuations joined, comments dropped), as words."""
    lines = []
    for block in _code_blocks("bash"):
        for line in block.replace("\\\n", " ").splitlines():
            line = line.strip()
            if line.startswith(first_word):
                lines.append(shlex.split(line.replace("$D", "/data").replace("$W", "/work"), comments=True))
    return lines


def _papermill_params(words: list[str]) -> tuple[str, dict]:
    stage = NOTEBOOK.search(words[1]).group(1)
    given = {words[i + 1]: _resolve_type(words[i + 2]) for i, word in enumerate(words) if word == "-p"}
    return stage, given


PAPERMILL = [_papermill_params(w) for w in _commands("papermill") if "--help-notebook" not in w]


def test_the_readme_shows_papermill_commands_for_every_notebook():
    assert {stage for stage, _ in PAPERMILL} == {"01_extract", "02_correlate", "03_train", "04_ensemble", "05_submit"}


@pytest.mark.parametrize("stage, given", PAPERMILL, ids=[f"{s}-{'-'.join(g)}" for s, g in PAPERMILL])
def test_readme_papermill_parameters_pass_the_notebook_guard(stage, given):
    table = parameters_of(stage)
    checked = table.check({**table.defaults_dict(), **given}, f"notebook {stage}")
    if stage == "03_train":
        build_learner(checked["learner"], checked["learner_params"])


def test_readme_kaggle_build_parameters_and_yaml_pass_the_guard():
    items = [w[i + 1] for w in _commands("python -m amzkit kaggle build") for i, x in enumerate(w) if x == "-p"]
    assert items, "the README shows kaggle build -p stage.name=value"
    for stage, given in parse_cli_params(items).items():
        check_stage_params(stage, given)
    (plan,) = [yaml.safe_load(block) for block in _code_blocks("yaml")]
    for stage, sets in plan.items():
        for given in sets if isinstance(sets, list) else [sets]:
            checked = {**parameters_of(stage).defaults_dict(), **check_stage_params(stage, given)}
            if stage == "03_train":
                learner = build_learner(checked["learner"], checked["learner_params"])
                if checked["learner"] == "finetune":  # a run named after an encoder fine-tunes that encoder
                    assert checked["run_name"] in learner.model, (checked["run_name"], learner.model)


@pytest.mark.parametrize("learner, params", [
    (m.group(1), m.group(2)) for m in re.finditer(r"-p learner (\w+) -p learner_params '([^']*)'", README)])
def test_readme_learner_params_are_the_learners_own(learner, params):
    build_learner(learner, parameters_of("03_train")["learner_params"].coerce(params))


def test_the_notebooks_table_names_every_file_04_writes():
    from amzkit.stages.ensemble import OUTPUTS

    row = next(line for line in README.splitlines() if line.startswith("| `04_ensemble` |"))
    listed = re.search(r"04_ensemble/\{([^}]*)\}", row).group(1).split(",")
    assert sorted(listed) == sorted(OUTPUTS)


def test_readme_papermill_runs_with_a_work_dir_write_their_notebooks_into_it():
    """A user copying the text-only block must not litter the checkout's root with 01.ipynb .. 05.ipynb."""
    with_work_dir = [w for w in _commands("papermill") if "work_dir" in w]
    assert with_work_dir
    for words in with_work_dir:
        work_dir = words[words.index("work_dir") + 1]
        assert words[2].startswith(work_dir + "/"), f"{' '.join(words[:3])} writes its notebook outside {work_dir}"
