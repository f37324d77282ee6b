"""Stage parameters declared once: name, Kaggle default, type and a one-line help.

Each stage module declares its table (`PARAMETERS = Parameters(...)`); its library functions take their defaults
from it (`D = PARAMETERS.defaults`), the notebook's parameters cell is generated from it (with papermill's
`name: type = value  # help` so `papermill --help-notebook` explains every parameter), and the guard that every
notebook calls checks what papermill injected against it: an unknown or misspelt name is an error, never
silently ignored. A Param also declares what values it allows (a range, choices, or a plain name that stays
inside the work folder), and a table the relations between its parameters (factor_min <= factor_max): the
guard checks them, and so does each library function (`PARAMETERS.validate(...)`), since Python users call
those directly.
"""

from __future__ import annotations

import copy
import difflib
import json
import math
import numbers
import operator
import re
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import numpy as np

from amzkit.core.schema import SCHEMAS
from amzkit.core.workdir import check_name

INTEGER_TEXT = re.compile(r"\s*[+-]?[0-9]+\s*")  # what int() takes of a whole number as text ('--5', '²' it does not)
TYPES = {str: "str", bool: "bool", int: "int", float: "float", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Param:
    """One notebook parameter. `default` is a literal (Kaggle runs the parameters cell as it is)."""

    name: str
    default: Any
    help: str
    low: float | None = None  # the smallest value allowed (inclusive unless low_open)
    high: float | None = None  # the largest value allowed (inclusive)
    low_open: bool = False  # the value must lie above `low`, not on it
    choices: tuple = ()  # the values allowed (of a str, or of each item of a list)
    plain_name: bool = False  # a folder or file name inside the work folder (a str, or each item of a list);
    # "" is allowed when it is the default (it then means "none")
    reserved: tuple = ()  # names the value may not take, in any letter case (a stage's own files and folders)
    reserved_why: str = ""  # what holds those names (the error message says it)

    def __post_init__(self) -> None:
        # papermill's --help-notebook reads `name: type = value  # help` and skips a line with a second '='
        text = self.help + (self.default if isinstance(self.default, str) else "")
        if "=" in text or "#" in text or "\n" in text:
            raise ValueError(f"parameter {self.name!r}: its help and default must be one line without '=' or '#'")

    @property
    def type(self) -> str:
        """The papermill type name of the default: str, bool, int, float, list or dict."""
        kind = TYPES.get(type(self.default))
        if kind is None:
            raise TypeError(f"parameter {self.name!r}: default {self.default!r} is not a literal of {sorted(TYPES)}")
        return kind

    def cell_line(self) -> str:
        """`name: type = value  # help` as it stands in the notebook's parameters cell."""
        value = json.dumps(self.default) if isinstance(self.default, list | dict | str) else repr(self.default)
        return f"{self.name}: {self.type} = {value}  # {self.help}"

    def coerce(self, value: Any) -> Any:
        """`value` as the default's type: papermill's `-p name value` gives numbers, booleans or text."""
        kind = self.type
        if kind == "bool":
            if isinstance(value, bool | np.bool_):  # numpy booleans too: `mask.all()` gives one
                return bool(value)
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
        elif kind == "int":
            if isinstance(value, numbers.Integral) and not isinstance(value, bool | np.bool_):
                return int(value)  # numpy integers too: Python users pass them
            if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_) and float(value).is_integer():
                return int(value)
            if isinstance(value, str) and INTEGER_TEXT.fullmatch(value):
                return int(value)
            if (number := number_from_text(value, integer=True)) is not None:
                return number  # YAML 1.1 reads 1e3 (no dot) as text
        elif kind == "float":
            if isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_):
                return float(value)
            if isinstance(value, str):
                try:
                    return float(value)
                except ValueError:
                    pass
        elif kind == "list":
            if isinstance(value, list | tuple):
                return list(value)
            if isinstance(value, str):
                return self._list_from_text(value)
        elif kind == "dict":
            if isinstance(value, dict):
                return value
            if isinstance(value, str):
                parsed = self._json(value or "{}")
                if isinstance(parsed, dict):
                    return parsed
        elif isinstance(value, str):
            return value
        allowed = f" ({self.allowed()})" if self.allowed() else ""
        raise ValueError(f"parameter {self.name!r} must be a {kind} like its default {self.default!r}{allowed}, "
                         f"got {type(value).__name__} {value!r}: {self._how_to_set(value)}")

    def _how_to_set(self, value: Any) -> str:
        """What to pass instead of `value`: papermill's -p reads 2024, 1.10, True and None as Python values, so a
        text that looks like one needs -r (raw), which gives it as written."""
        usual = f"set -p {self.name} <value> in the notebook or pass {self.name}= to the function"
        if self.type == "bool":  # 1, 'yes' or 'on' are no booleans to the guard: say how one is written
            return (f"write True or False: -p {self.name} True (or false) with papermill, {self.name}: true in -y / "
                    f"-f YAML or a build's params file, {self.name} = True in the notebook, or {self.name}=True to "
                    "the function")
        if self.type not in ("str", "list") or not (value is None or isinstance(value, bool | int | float)):
            return usual
        if value is None:
            return (f"papermill's -p reads None as Python's None: where the help says \"\" means none, give -p "
                    f"{self.name} \"\"; for the text 'None', -r {self.name} None; or pass {self.name}= to the function")
        kind = "a boolean" if isinstance(value, bool) else "a number (007 as 7, 1.10 as 1.1)"
        return (f"papermill's -p reads {value!r} as {kind}: pass the text as written with -r {self.name} <value> "
                f"(raw), or quote it in -y / -f YAML; or pass {self.name}= to the function")

    def allowed(self) -> str:
        """What the declaration allows, in words ('' when anything of the type is)."""
        parts = []
        if self.low is not None:
            parts.append(f"{'>' if self.low_open else '>='} {_number(self.low)}")
        if self.high is not None:
            parts.append(f"<= {_number(self.high)}")
        if self.choices:
            parts.append(f"one of {list(self.choices)}")
        if self.plain_name:
            parts.append("a plain name (letters, digits, '_', '-', '.'; no '/' or '..')")
        if self.reserved:
            parts.append(f"none of {list(self.reserved)}")
        return " and ".join(parts)

    def check(self, value: Any) -> Any:
        """`value` when the declaration allows it; else a ValueError naming the parameter, the value and the range."""
        items = value if isinstance(value, list | tuple) else [value]
        for item in items:
            problem = self._problem(item)
            if problem:
                shown = f"{value!r}" if item is value else f"{value!r} (item {item!r})"
                raise ValueError(f"parameter {self.name!r} = {shown} {problem}: it must be {self.allowed()} "
                                 f"(default {self.default!r}); set -p {self.name} <value> in the notebook or pass "
                                 f"{self.name}= to the function")
        return value

    def _problem(self, item: Any) -> str:
        if self.low is not None or self.high is not None:
            if isinstance(item, bool) or not isinstance(item, int | float) or math.isnan(item):
                return "is not a number"
            if math.isinf(item):  # passes `> 0`, then fails in numpy (np.arange up to inf)
                return "is not a finite number"
            if self.low is not None and (item <= self.low if self.low_open else item < self.low):
                return "is too small"
            if self.high is not None and item > self.high:
                return "is too large"
        if self.choices and item not in self.choices:
            return "is not a known choice"
        if self.plain_name and not (item == "" and self.default == ""):
            if item == "":
                return "is empty"
            try:
                check_name(item, self.name)
            except ValueError:
                return "is not a plain name (a path would write or read outside the work folder)"
        if isinstance(item, str) and item.lower() in {name.lower() for name in self.reserved}:
            return f"is a reserved name ({self.reserved_why or 'the stage keeps it for itself'}; in any letter case)"
        return ""

    def _list_from_text(self, text: str) -> list:
        text = text.strip()
        if text.startswith("["):
            parsed = self._json(text)
            if isinstance(parsed, list):
                return parsed
        return [part.strip() for part in text.split(",") if part.strip()]

    def _json(self, text: str) -> Any:
        try:
            return json.loads(text)
        except json.JSONDecodeError as err:
            if self.type == "list":
                items = [str(item) for item in self.default][:2] or ["name1", "name2"]
                fix = (f"write it as JSON, each text in double quotes: -p {self.name} '{json.dumps(items)}', or "
                       f"without brackets, comma-separated: -p {self.name} {','.join(items)}")
            else:
                fix = f"write it as JSON, each key and text in double quotes: -p {self.name} '{{\"key\": 1}}'"
            raise ValueError(f"parameter {self.name!r}: {text!r} is not JSON ({err}): {fix}") from None


def number_from_text(value: Any, integer: bool = False) -> int | float | None:
    """The finite number a text such as '1e-3' stands for (YAML 1.1, as papermill's -y / -f read it, keeps a number
    written without a dot, 1e-3, as text); None for any other value, or a whole number wanted and not given."""
    if not isinstance(value, str):
        return None
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    if integer:
        return int(number) if number.is_integer() else None
    return number


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


RELATIONS = {"<": operator.lt, "<=": operator.le}


class Parameters:
    """An ordered table of Params (a stage's, or several stages' combined with `+`), and the relations between
    them: `relations=(("factor_min", "<=", "factor_max"),)`."""

    def __init__(self, *params: Param, relations: tuple[tuple[str, str, str], ...] = ()):
        self.table: dict[str, Param] = {}
        for param in params:
            if param.name in self.table:
                raise ValueError(f"parameter {param.name!r} is declared twice")
            param.type  # noqa: B018 - refuses a default that is not a literal
            self.table[param.name] = param
        for left, op, right in relations:
            if op not in RELATIONS or left not in self.table or right not in self.table:
                raise ValueError(f"relation {left} {op} {right}: both must be declared parameters, op one of "
                                 f"{sorted(RELATIONS)}")
        self.relations = tuple(relations)

    def __add__(self, other: Parameters) -> Parameters:
        return Parameters(*self, *other, relations=self.relations + other.relations)

    def __iter__(self) -> Iterator[Param]:
        return iter(self.table.values())

    def __contains__(self, name: str) -> bool:
        return name in self.table

    def __getitem__(self, name: str) -> Param:
        return self.table[name]

    def names(self) -> list[str]:
        return list(self.table)

    def defaults_dict(self) -> dict[str, Any]:
        """A fresh copy of every default (lists and dicts are new objects)."""
        return {p.name: copy.deepcopy(p.default) for p in self}

    @property
    def defaults(self) -> SimpleNamespace:
        """Defaults for function signatures: lists become tuples, dicts stay (never mutate them)."""
        return SimpleNamespace(**{p.name: tuple(p.default) if isinstance(p.default, list) else p.default
                                  for p in self})

    def cell_source(self) -> str:
        """The notebook's parameters cell, generated from the table."""
        return "\n".join(p.cell_line() for p in self)

    def check(self, given: dict[str, Any], where: str) -> dict[str, Any]:
        """`given` coerced to the declared types; an unknown name (with the closest known one) is an error."""
        unknown = sorted(set(given) - set(self.table))
        if unknown:
            hints = []
            for name in unknown:
                close = difflib.get_close_matches(name, self.names(), n=1)
                hints.append(f"{name!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
            raise ValueError(f"unknown parameter {', '.join(hints)} for {where}; its parameters are "
                             f"{sorted(self.table)}")
        values = {name: self.table[name].check(self.table[name].coerce(value)) for name, value in given.items()}
        self._check_relations(values)
        return values

    def validate(self, **values: Any) -> dict[str, Any]:
        """The library functions' check of their arguments against the declarations (types, ranges, names, and
        the relations among the values given); returns them coerced to the declared types."""
        return self.check(values, "this call")

    def _check_relations(self, values: dict[str, Any]) -> None:
        for left, op, right in self.relations:
            if left in values and right in values and not RELATIONS[op](values[left], values[right]):
                raise ValueError(f"parameters {left} = {values[left]!r} and {right} = {values[right]!r}: "
                                 f"{left} must be {op} {right}; change one of them")


COMMON = Parameters(
    Param("schema", "amazon2025", "competition edition: amazon2025 (price, SMAPE, images) or amazon2023",
          choices=tuple(SCHEMAS)),
    Param("data_dir", "auto", "folder with train.csv and test.csv; auto: probe /kaggle/input; demo: the demo data"),
    Param("work_dir", "auto", "where every stage writes; auto: /kaggle/working/amzkit on Kaggle, else runs/latest"),
)
