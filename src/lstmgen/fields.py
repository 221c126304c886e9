"""A config dataclass's fields as options for every door: command-line
flags, chat commands and (later) server fields, made from the dataclass's
own names, types, defaults and attribute docstrings, so that a new field
appears everywhere without being copied by hand."""

from __future__ import annotations

import argparse
import ast
import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Callable

from .errors import LstmgenError


@dataclass(frozen=True)
class ConfigField:
    name: str
    kind: type
    """The value's type: int, float, str or bool; for a repeatable field, its items' type."""
    default: Any
    help: str
    optional: bool = False
    """None is a value (given as 'none')."""
    repeatable: bool = False
    """A tuple of values: the flag may be given several times."""
    choices: tuple | None = None

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def parse(self, text: str) -> Any:
        """One value from text (a chat's `/set NAME VALUE`, a flag's argument)."""
        if self.optional and text.strip().lower() == "none":
            return None
        if self.repeatable:
            return tuple(item for item in text.split(",") if item) if text else ()
        return _parse(self.kind, text, self.flag, self.choices)


def _parse(kind: type, text: str, flag: str, choices: tuple | None) -> Any:
    try:
        if kind is bool:
            lowered = text.strip().lower()
            if lowered not in ("true", "false", "on", "off", "yes", "no", "1", "0"):
                raise ValueError
            return lowered in ("true", "on", "yes", "1")
        value = kind(text)
    except ValueError:
        raise LstmgenError(f"{flag} takes {'a whole number' if kind is int else 'a number' if kind is float else 'true or false' if kind is bool else 'text'}, got {text!r}") from None
    if choices and value not in choices:
        raise LstmgenError(f"{flag} must be one of {', '.join(map(str, choices))}, got {text!r}")
    return value


@lru_cache(maxsize=None)
def config_fields(cls: type) -> tuple[ConfigField, ...]:
    """The fields of dataclass ``cls``, with their attribute docstrings as help."""
    hints = typing.get_type_hints(cls)
    docs = _attribute_docstrings(cls)
    out = []
    for f in dataclasses.fields(cls):
        kind, optional, repeatable = _unwrap(hints[f.name])
        out.append(ConfigField(f.name, kind, f.default, docs.get(f.name, ""), optional, repeatable,
                               f.metadata.get("choices")))
    return tuple(out)


def _unwrap(hint) -> tuple[type, bool, bool]:
    """(item type, optional, repeatable) of int, float | None, tuple[str, ...] and the like."""
    optional = False
    args = typing.get_args(hint)
    if typing.get_origin(hint) in (typing.Union, types.UnionType):
        optional = type(None) in args
        hint = next(a for a in args if a is not type(None))
    if typing.get_origin(hint) is tuple:
        return typing.get_args(hint)[0], optional, True
    return hint, optional, False


def _attribute_docstrings(cls: type) -> dict[str, str]:
    """The string literal under each annotated field in the class body."""
    tree = ast.parse(inspect.getsource(cls).lstrip())
    body = next(node for node in ast.walk(tree) if isinstance(node, ast.ClassDef)).body
    docs = {}
    for node, following in zip(body, body[1:]):
        if (isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name)
                and isinstance(following, ast.Expr) and isinstance(following.value, ast.Constant)
                and isinstance(following.value.value, str)):
            docs[node.target.id] = " ".join(following.value.value.split())
    return docs


def add_config_arguments(parser: argparse.ArgumentParser | argparse._ArgumentGroup, cls: type,
                         skip: tuple[str, ...] = ()) -> None:
    """One flag per field of ``cls``; an option not given stays None (the field's default)."""
    for f in config_fields(cls):
        if f.name in skip:
            continue
        default = f.default if f.default is not dataclasses.MISSING else None
        shown = ", ".join(map(repr, default)) if f.repeatable else default
        help_text = f"{f.help} (default: {shown if shown not in ('', None) else 'none'})".replace("%", "%%")
        if f.kind is bool:
            parser.add_argument(f.flag, dest=f.name, action="store_true", default=None, help=help_text)
        elif f.repeatable:
            parser.add_argument(f.flag, dest=f.name, action="append", metavar="TEXT",
                                help=help_text + "; give it once per value, or '' for none")
        else:
            parser.add_argument(f.flag, dest=f.name, type=_argparse_type(f), default=None, help=help_text,
                                metavar=f.name.upper() if not f.choices else None, choices=f.choices)


def _argparse_type(f: ConfigField) -> Callable[[str], Any]:
    def convert(text: str):
        try:
            return f.parse(text)
        except LstmgenError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    convert.__name__ = f.kind.__name__
    return convert


def config_from_arguments(cls: type, args: argparse.Namespace, base=None, **fixed):
    """An instance of ``cls`` from the flags given; the rest keep their
    defaults, or ``base``'s values when one is given."""
    values = dataclasses.asdict(base) if base is not None else {}
    for f in config_fields(cls):
        value = getattr(args, f.name, None)
        if value is not None:
            values[f.name] = tuple(v for v in value if v) if f.repeatable else value
    return cls(**dict(values, **fixed))
