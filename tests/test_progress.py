"""Progress bars in saved notebooks: a headless run (papermill, Kaggle's Save & Run All) saved every widget bar
as "0%| | 0/N" (the widget's text when it was created), so a finished kernel read as stalled."""

from __future__ import annotations

import io
import os
import re

import nbformat
import pytest

from amzkit.core import progress
from amzkit.core.progress import PROGRESS_ENV, TEXT_MININTERVAL_S, progress_style, text_bars_in_started_kernels

N_IMAGES = 300  # paths that do not exist: each bar runs to N_IMAGES without decoding anything
KIT_BARS = f"""
from amzkit.embed.simple import ColorStatsEmbedder
from amzkit.images.features import colour_of_paths

paths = [f"/nonexistent/{{i}}.jpg" for i in range({N_IMAGES})]
ColorStatsEmbedder().transform(paths)                          # an iterable bar (tqdm(paths))
colour_of_paths(paths, workers=1)                              # a manual bar (total=, update, close)
colour_of_paths(paths, workers=1, progress=False)              # progress=False: no bar at all
print("done")
"""


def _run(tmp_path, code: str) -> list[dict]:
    """Run `code` as a one-cell notebook with papermill, as a headless run does; the saved cell's outputs."""
    pm = pytest.importorskip("papermill")
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nb.cells = [nbformat.v4.new_code_cell(code)]
    nbformat.write(nb, tmp_path / "in.ipynb")
    pm.execute_notebook(str(tmp_path / "in.ipynb"), str(tmp_path / "out.ipynb"), kernel_name="python3",
                        progress_bar=False, cwd=str(tmp_path))
    return nbformat.read(tmp_path / "out.ipynb", as_version=4).cells[0].outputs


def _saved_text(outputs: list[dict]) -> tuple[str, str]:
    """(what a viewer shows of the widgets' saved text, the stderr stream as saved)."""
    shown = "\n".join(o["data"]["text/plain"] for o in outputs if o["output_type"] == "display_data")
    stderr = "".join(o["text"] for o in outputs if o["output_type"] == "stream" and o["name"] == "stderr")
    return shown, stderr


def _as_shown(stream: str) -> list[str]:
    """The lines a terminal or notebook shows of a stream: each carriage return restarts its line."""
    return [line.rsplit("\r", 1)[-1] for line in stream.split("\n") if line.rsplit("\r", 1)[-1].strip()]


@pytest.mark.parametrize("run_type", [None, "Batch"], ids=["papermill", "kaggle-batch"])
def test_a_headless_run_saves_the_kit_s_bars_as_finished(tmp_path, monkeypatch, run_type):
    """papermill (widget bars: their saved text is rewritten at the end) and Kaggle's batch run (text bars)."""
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    if run_type is None:
        monkeypatch.delenv(progress.KAGGLE_RUN_TYPE_ENV, raising=False)
    else:
        monkeypatch.setenv(progress.KAGGLE_RUN_TYPE_ENV, run_type)
    outputs = _run(tmp_path, KIT_BARS)
    shown, stderr = _saved_text(outputs)
    finished = f"100%|.*\\| {N_IMAGES}/{N_IMAGES} "
    bars = shown.splitlines() if run_type is None else _as_shown(stderr)
    assert [line.split(":")[0] for line in bars] == ["color-stats", "colour"], (shown, stderr)
    assert all(re.search(finished, line) for line in bars), bars
    assert " 0%|" not in shown
    if run_type == "Batch":  # text bars: no widget, and one saved line per bar (redraws are carriage returns)
        assert not [o for o in outputs if o["output_type"] == "display_data"]
        assert stderr.count("\n") == 2, stderr
    assert any(o.get("text") == "done\n" for o in outputs)


def test_a_widget_bar_that_clears_itself_or_stops_saves_that(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    monkeypatch.delenv(progress.KAGGLE_RUN_TYPE_ENV, raising=False)
    outputs = _run(tmp_path, """
from amzkit.core.progress import tqdm
for _ in tqdm(range(40), desc="cleared", leave=False):
    pass
try:
    for i in tqdm(range(40), desc="stopped"):
        if i == 10:
            raise KeyError("stop")
except KeyError:
    pass
""")
    widgets = [o["data"] for o in outputs if o["output_type"] == "display_data"]
    shown = [data["text/plain"] for data in widgets]
    assert shown[0] == ""  # hidden live, empty saved (as a text bar with leave=False clears its line)
    assert re.search(r"stopped:\s+25%\|.*\| 10/40 ", shown[1]), shown
    assert "application/vnd.jupyter.widget-view+json" in widgets[1]  # still the live widget


@pytest.mark.parametrize(("environ", "kernel", "widgets", "style"), [
    ({}, True, True, "widget"),                                            # Jupyter, Kaggle's editor
    ({"KAGGLE_KERNEL_RUN_TYPE": "Interactive"}, True, True, "widget"),
    ({"KAGGLE_KERNEL_RUN_TYPE": "Batch"}, True, True, "text"),             # Save & Run All: nobody watches
    ({}, True, False, "text"),                                             # a kernel without ipywidgets
    ({}, False, True, "text"),                                             # a terminal, a script
    ({PROGRESS_ENV: "widget", "KAGGLE_KERNEL_RUN_TYPE": "Batch"}, True, True, "widget"),
    ({PROGRESS_ENV: " Text "}, True, True, "text"),
    ({PROGRESS_ENV: "off"}, False, False, "off"),
])
def test_the_bar_style_follows_where_the_code_runs(environ, kernel, widgets, style):
    assert progress_style(environ, kernel=kernel, widgets=widgets) == style


def test_an_unknown_style_is_refused_naming_the_variable_and_the_choices():
    with pytest.raises(ValueError, match=r"AMZKIT_PROGRESS='bars'.*widget, text, off.*unset it"):
        progress_style({PROGRESS_ENV: "bars"}, kernel=True, widgets=True)


def test_text_bars_redraw_seldom_where_they_are_saved_and_off_means_off(monkeypatch):
    monkeypatch.setenv(PROGRESS_ENV, "text")
    saved = progress.tqdm(range(3), file=io.StringIO())  # no terminal: a kernel's output, a log file
    assert saved.mininterval == TEXT_MININTERVAL_S and not saved.disable
    own = progress.tqdm(range(3), file=io.StringIO(), mininterval=1.0)  # the caller's own word wins
    assert own.mininterval == 1.0 and progress.tqdm(range(3), file=io.StringIO(), disable=True).disable
    monkeypatch.setenv(PROGRESS_ENV, "off")
    out = io.StringIO()
    assert list(progress.tqdm(range(3), file=out)) == [0, 1, 2] and out.getvalue() == ""


def test_kernels_the_kit_starts_get_text_bars_unless_the_user_chose(monkeypatch):
    monkeypatch.delenv(PROGRESS_ENV, raising=False)
    with text_bars_in_started_kernels():
        assert progress_style(kernel=True, widgets=True) == "text"
    assert PROGRESS_ENV not in os.environ
    monkeypatch.setenv(PROGRESS_ENV, "widget")
    with text_bars_in_started_kernels():
        assert progress_style(kernel=True, widgets=True) == "widget"


def test_the_readme_states_the_text_bars_interval_and_the_styles():
    from conftest import REPO_ROOT

    readme = (REPO_ROOT / "README.md").read_text()
    assert f"redraw at most every {TEXT_MININTERVAL_S:g} s" in readme
    assert all(f"`{style}`" in readme for style in progress.PROGRESS_STYLES) and f"`{PROGRESS_ENV}`" in readme
