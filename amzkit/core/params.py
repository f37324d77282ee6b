"""Stage parameters declared once: name, Kaggle default, type and a one-line help.

Each stage module declares its table (`PARAMETERS = Parameters(...)`); its library functions take their defaults
from it (`D = PARAMETERS.defaults`), the notebook's parameters cell is generated from it (with papermill's
`name: type = value  # help` so `papermill --help-notebook` explains every parameter), and the guard that every
notebook calls checks what papermill injected against it: an unknown or misspelt name is an error, never
silently ignored.
"""

from __future__ import annotations

import copy
import difflib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

TYPES = {str: "str", bool: "bool", int: "int", float: "float", list: "list", dict: "dict"}


@dataclass(frozen=True)
class Param:
    """One notebook parameter. `default` is a literal (Kaggle runs the parameters cell as it is)."""

    name: str
    default: Any
    help: str

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
            if isinstance(value, bool):
                return value
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
        elif kind == "int":
            if isinstance(value, int) and not isinstance(value, bool):
                return value
            if isinstance(value, float) and value.is_integer():
                return int(value)
            if isinstance(value, str) and value.strip().lstrip("-").isdigit():
                return int(value)
        elif kind == "float":
            if isinstance(value, int | float) and not isinstance(value, bool):
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
        raise ValueError(f"parameter {self.name!r} must be a {kind} like its default {self.default!r}, "
                         f"got {type(value).__name__} {value!r}")

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
            raise ValueError(f"parameter {self.name!r}: {text!r} is not JSON ({err})") from None


class Parameters:
    """An ordered table of Params (a stage's, or several stages' combined with `+`)."""

    def __init__(self, *params: Param):
        self.table: dict[str, Param] = {}
        for param in params:
            if param.name in self.table:
                raise ValueError(f"parameter {param.name!r} is declared twice")
            param.type  # noqa: B018 - refuses a default that is not a literal
            self.table[param.name] = param

    def __add__(self, other: Parameters) -> Parameters:
        return Parameters(*self, *other)

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
        return {name: self.table[name].coerce(value) for name, value in given.items()}


COMMON = Parameters(
    Param("schema", "amazon2025", "competition edition: amazon2025 (price, SMAPE, images) or amazon2023"),
    Param("data_dir", "auto", "folder with train.csv and test.csv; auto: probe /kaggle/input; demo: the demo data"),
    Param("work_dir", "auto", "where every stage writes; auto: /kaggle/working/amzkit on Kaggle, else runs/latest"),
)
