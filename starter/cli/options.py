"""Command-line parameters derived from a pydantic model, so that a journey kind's start and
events get their commands from the registry and a new kind needs no CLI code.

A field becomes an option named like it (`--scheduled-at`, `--event-id`); a nested model's fields
are prefixed with its name (`--payer-email`), except the policy's, which are the kind's knobs
(`--followup-after`). Times take ISO 8601 or `+2d`, durations `48h` or `PT48H`, booleans are flags
(`--notify/--no-notify`), lists repeat the option, and anything else is JSON. Hand-tuned
spellings (`--email` for `--candidate-email`, a positional time) come from `spellings.py`.
"""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import Enum
from typing import Annotated, Any, Literal, Optional, Union, get_args, get_origin

import typer
from pydantic import AwareDatetime, BaseModel, FutureDatetime, PastDatetime

from starter.cli.common import parse_duration, parse_json, parse_when

ARGUMENT = "argument"  # a spelling: the field is a positional argument
UNSET = inspect.Parameter.empty


@dataclass(frozen=True)
class FieldShape:
    """How one field of a model is typed on a command line."""

    path: tuple[str, ...]
    scalar: str  # str, int, float, bool, datetime, duration, choice, json
    many: bool
    required: bool  # a required field of the model itself (not of a nested one)
    help: str
    choices: tuple[str, ...] = ()

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


def _unwrap(annotation: Any) -> Any:
    """Without Annotated and Optional: `Optional[Annotated[int, Field(ge=0)]]` → int."""
    while True:
        if get_origin(annotation) is Annotated:
            annotation = get_args(annotation)[0]
        elif get_origin(annotation) in (Union, types.UnionType):
            rest = [arg for arg in get_args(annotation) if arg is not type(None)]
            if len(rest) != 1:
                return annotation  # a union of several types: JSON
            annotation = rest[0]
        else:
            return annotation


def _scalar(annotation: Any) -> tuple[str, tuple[str, ...]]:
    annotation = _unwrap(annotation)
    if get_origin(annotation) is Literal:
        return "choice", tuple(str(value) for value in get_args(annotation))
    if annotation in (AwareDatetime, FutureDatetime, PastDatetime):  # pydantic's, not subclasses
        return "datetime", ()
    if isinstance(annotation, type):
        for base, name in ((bool, "bool"), (int, "int"), (float, "float"), (datetime, "datetime"),
                           (timedelta, "duration")):
            if issubclass(annotation, base):
                return name, ()
        if issubclass(annotation, Enum):
            return "choice", tuple(str(member.value) for member in annotation)
        if issubclass(annotation, BaseModel):
            return "model", ()
        return "str", ()  # str, EmailStr, Decimal…: the model validates the text
    return "json", ()  # dict, Any, a union of models


def shapes(model: type[BaseModel], prefix: tuple[str, ...] = ()) -> Iterator[FieldShape]:
    """Every field a command line can set, nested models flattened (lists of models stay JSON)."""
    for name, info in model.model_fields.items():
        path, annotation = (*prefix, name), _unwrap(info.annotation)
        many = get_origin(annotation) in (list, tuple, set, frozenset)
        scalar, choices = _scalar(get_args(annotation)[0] if many and get_args(annotation) else annotation)
        if scalar == "model" and not many:
            yield from shapes(_unwrap(annotation), path)
            continue
        yield FieldShape(path, "json" if scalar == "model" else scalar, many, info.is_required() and not prefix,
                         info.description or "", choices)


def option_names(fields: list[FieldShape]) -> dict[tuple[str, ...], str]:
    """`--candidate-email`, and the policy's fields without `policy-` unless that name is taken."""
    def name(path: tuple[str, ...]) -> str:
        return "--" + "-".join(path).replace("_", "-")

    names = {f.path: name(f.path[1:] if f.path[0] == "policy" and len(f.path) > 1 else f.path) for f in fields}
    taken = [n for p, n in names.items() if p[0] != "policy"]
    return {p: name(p) if p[0] == "policy" and n in taken else n for p, n in names.items()}


_HINTS = {"datetime": "ISO time or +2d", "duration": "e.g. 48h, 7d, PT48H"}
_METAVARS = {"datetime": "WHEN", "duration": "DURATION", "json": "JSON", "int": "N", "float": "NUMBER"}


@dataclass(frozen=True)
class Param:
    """One parameter of a generated command: its typer declaration and where its value goes."""

    dest: str  # the identifier typer hands the value back under
    annotation: Any  # Annotated[type, typer.Option(…) | typer.Argument(…)]
    default: Any = UNSET
    path: tuple[str, ...] = ()  # where the value goes in the body
    apply: Callable[[dict[str, Any], Any], None] | None = None  # or what it does to the body instead
    decls: tuple[str, ...] = ()
    spread: bool = False  # a repeated JSON option: each value one item, or a list of them

    def put(self, body: dict[str, Any], value: Any) -> None:
        if value is None or value == []:
            return  # not given: the model's default
        if self.spread:
            value = [item for given in value for item in (given if isinstance(given, list) else [given])]
        if self.apply is not None:
            self.apply(body, value)
            return
        *parents, last = self.path
        for part in parents:
            body = body.setdefault(part, {})
        body[last] = value


def _choice(choices: tuple[str, ...]) -> Callable[[str], str]:
    def parse(text: str) -> str:
        if text not in choices:
            raise typer.BadParameter(f"{text!r} is not one of {', '.join(choices)}")
        return text
    return parse


def param(field: FieldShape, decls: tuple[str, ...] | str, times: Callable[[str], Any] = parse_when) -> Param:
    """The typer parameter for a field: an option (or, spelled ARGUMENT, a positional argument)."""
    parser = {"datetime": times, "duration": parse_duration, "json": parse_json}.get(field.scalar)
    base = {"bool": bool, "int": int, "float": float}.get(field.scalar, Any if parser else str)
    hint = _HINTS.get(field.scalar, "")
    help_text = "; ".join(part for part in (field.help, hint, "repeatable" if field.many else "") if part)
    info: dict[str, Any] = dict(help=help_text, show_default=False)
    if parser:
        info["parser"] = parser
    if field.scalar == "choice":
        info["parser"], info["metavar"] = _choice(field.choices), f"[{'|'.join(field.choices)}]"
    if field.scalar in _METAVARS:
        info["metavar"] = _METAVARS[field.scalar]
    dest = "f_" + "__".join(field.path)
    if decls == ARGUMENT:
        info["metavar"] = field.path[-1].upper()
        required, base = field.required and not field.many, str if parser else base  # typer shows <str>, not <Any>
        annotation = list[base] if field.many else base if required else Optional[base]  # type: ignore[valid-type]
        return Param(dest, Annotated[annotation, typer.Argument(**info)], UNSET if required else None, field.path)
    if field.scalar == "bool":
        flag = tuple(d if "/" in d else f"{d}/--no-{d[2:]}" for d in decls)
        required = field.required
        annotation = bool if required else Optional[bool]
        return Param(dest, Annotated[annotation, typer.Option(*flag, **info)], UNSET if required else None, field.path,
                     decls=flag)
    annotation = list[base] if field.many else Optional[base]  # type: ignore[valid-type]
    return Param(dest, Annotated[annotation, typer.Option(*decls, **info)], [] if field.many else None, field.path,
                 decls=decls, spread=field.many and field.scalar == "json")


def spelled(field: FieldShape, generic: str, spellings: dict[str, Any]) -> tuple[str, ...] | str:
    """The field's declarations: a hand-tuned spelling first (it is what users know), then the
    generic name, except for a flag whose spelling already starts with it (`--ok/--not-ok`)."""
    own = spellings.get(field.dotted)
    if own is None:
        return (generic,)
    if own == ARGUMENT:
        return ARGUMENT
    if field.scalar == "bool" and any(d.split("/")[0] == generic for d in own):
        return tuple(own)
    return (*own, generic)


def summary(model: type[BaseModel], fallback: str) -> str:
    """A model's docstring as one line of help (its first paragraph)."""
    return " ".join((model.__doc__ or fallback).strip().split("\n\n")[0].split())


def command(params: list[Param], run: Callable[[dict[str, Any]], None], doc: str) -> Callable[..., None]:
    """A callback typer reads like a hand-written one: its signature is the parameters."""
    seen: set[str] = set()
    for p in params:
        names = {part for d in p.decls for part in d.split("/")}
        assert not names & seen, f"{doc!r}: {names & seen} declared twice"
        seen |= names

    def callback(**values: Any) -> None:
        run(values)

    callback.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter(p.dest, inspect.Parameter.KEYWORD_ONLY, annotation=p.annotation, default=p.default)
        for p in params])
    callback.__doc__ = doc
    return callback


def body_of(params: list[Param], values: dict[str, Any], body: dict[str, Any] | None = None) -> dict[str, Any]:
    """The values given, put where they go (over `body`, e.g. a JSON file's)."""
    body = body if body is not None else {}
    for p in params:
        if p.path or p.apply:
            p.put(body, values.get(p.dest))
    return body
