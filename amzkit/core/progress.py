"""Progress bars that read right where they are seen: live in an interactive notebook, finished in a saved one.

`tqdm.auto` draws an ipywidgets bar in every Jupyter kernel. A notebook saved by a headless run (papermill, or
Kaggle's "Save & Run All" batch run, whose saved copy is what readers of a kernel see) keeps only the text that
the widget's output held when the bar was created, so every finished bar read "0%|          | 0/N".
`tqdm` here takes tqdm's arguments and picks the bar by `progress_style`:

- `AMZKIT_PROGRESS` (widget | text | off), when set, decides;
- Kaggle's batch run (`KAGGLE_KERNEL_RUN_TYPE=Batch`) and a kernel without ipywidgets get text bars;
- any other Jupyter kernel gets widget bars whose saved text is rewritten when the bar ends (where it stopped, or
  nothing for a bar that clears itself), so a notebook saved by papermill, nbconvert or an interactive session
  shows how far each bar got;
- outside a kernel (a terminal, a script) text bars.

Text bars go to stderr. Where that is not a terminal (a kernel's output, a log file) they redraw at most every
`TEXT_MININTERVAL_S` seconds: a saved notebook or a Kaggle log holds a line per half minute, not one per item.
A caller's own `disable=`, `mininterval=` or `file=` wins.
"""

from __future__ import annotations

import functools
import importlib.util
import os
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any, TextIO

from tqdm.std import tqdm as text_tqdm

PROGRESS_ENV = "AMZKIT_PROGRESS"
PROGRESS_STYLES = {
    "widget": "live ipywidgets bars; a saved notebook shows where each ended",
    "text": "tqdm's text bars on stderr (at most one line per TEXT_MININTERVAL_S where stderr is no terminal)",
    "off": "no bars",
}
KAGGLE_RUN_TYPE_ENV = "KAGGLE_KERNEL_RUN_TYPE"  # "Interactive" in the editor, "Batch" in a Save Version run
KAGGLE_BATCH = "Batch"
TEXT_MININTERVAL_S = 30.0


def in_kernel() -> bool:
    """Whether this code runs in a Jupyter kernel (IPython's kernel app), as `tqdm.auto` decides it."""
    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    return shell is not None and "IPKernelApp" in shell.config


def progress_style(environ: Mapping[str, str] = os.environ, kernel: bool | None = None,
                   widgets: bool | None = None) -> str:
    """The bar style for where this runs (a key of PROGRESS_STYLES); `kernel` and `widgets` default to what
    this process finds (a Jupyter kernel; ipywidgets installed)."""
    chosen = environ.get(PROGRESS_ENV, "").strip().lower()
    if chosen:
        if chosen not in PROGRESS_STYLES:
            raise ValueError(f"{PROGRESS_ENV}={environ[PROGRESS_ENV]!r} is no progress style: set it to one of "
                             f"{', '.join(PROGRESS_STYLES)}, or unset it to choose by where the code runs")
        return chosen
    kernel = in_kernel() if kernel is None else kernel
    if not kernel or environ.get(KAGGLE_RUN_TYPE_ENV) == KAGGLE_BATCH:
        return "text"
    widgets = importlib.util.find_spec("ipywidgets") is not None if widgets is None else widgets
    return "widget" if widgets else "text"


def _is_terminal(stream: TextIO | None) -> bool:
    try:
        return bool(stream is not None and stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


def tqdm(*args: Any, **kwargs: Any) -> text_tqdm:
    """A progress bar with tqdm's arguments, in the style `progress_style` picks for where this runs."""
    style = progress_style()
    if style == "off":
        kwargs["disable"] = True
    if style == "widget":
        return _widget_bar()(*args, **kwargs)
    kwargs.setdefault("file", sys.stderr)
    if not _is_terminal(kwargs["file"]):
        kwargs.setdefault("mininterval", TEXT_MININTERVAL_S)
    return text_tqdm(*args, **kwargs)


@functools.cache
def _widget_bar() -> type[text_tqdm]:
    """tqdm's widget bar, displayed under a display id so that its saved text can be rewritten when it ends."""
    from IPython.display import display  # deferred: IPython is loaded only where a kernel runs this
    from tqdm.notebook import tqdm as notebook_tqdm  # deferred: imports ipywidgets, only for a kernel's bars

    class WidgetBar(notebook_tqdm):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            self._handle = None
            shown = kwargs.pop("display", True)
            super().__init__(*args, display=False, **kwargs)
            if shown and not self.disable:
                self._handle = display(self.container, display_id=True)
                self.displayed = True

        def display(self, msg: str | None = None, pos: int | None = None, close: bool = False,
                    bar_style: str | None = None, check_delay: bool = True) -> None:
            super().display(msg, pos, close=close, bar_style=bar_style, check_delay=check_delay)
            if self._handle is None or not (close or bar_style):
                return
            if close:  # leave=False: the live bar is hidden, and so is its saved text
                self._handle.update({"text/plain": ""}, raw=True)
            else:  # finished ('success') or stopped ('danger'): the widget again, with its text as it is now
                self._handle.update(self.container)

    return WidgetBar


@contextmanager
def text_bars_in_started_kernels() -> Iterator[None]:
    """Kernels started inside this block (papermill's, which nobody watches) draw text bars, unless the
    user set AMZKIT_PROGRESS; they inherit this process's environment."""
    if os.environ.get(PROGRESS_ENV):
        yield
        return
    before = os.environ.get(PROGRESS_ENV)
    os.environ[PROGRESS_ENV] = "text"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(PROGRESS_ENV, None)
        else:
            os.environ[PROGRESS_ENV] = before
