"""Writes the light client's generated modules from the API's OpenAPI document:
`followups_client/models.py` (one pydantic model per schema) and `followups_client/kinds.py` (every
journey kind, its start, view and events). Run `make client` (`python -m client.generate`) after
changing a route or a model; `--check` only says whether the committed files are current, and
tests/unit/test_light_client.py fails while they are not.

Only types are carried over, never bounds (lengths, patterns, ranges): the API holds every value to
them and answers 422 naming the field, and a client checking them itself would refuse what a newer
server accepts. For the same reason every model allows fields it does not know: an answer from a
newer server still reads, and keeps them. A schema construct this file does not know stops it with
an error rather than a guess.

This is a development tool: it imports the service to build its document, and is not part of the
`followups-client` distribution.
"""

from __future__ import annotations

import argparse
import json
import keyword
import re
import sys
import textwrap
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pydantic import BaseModel

PACKAGE = Path(__file__).resolve().parent / "followups_client"
MODELS, KINDS = PACKAGE / "models.py", PACKAGE / "kinds.py"

# A string's format gives its Python type where pydantic reads it back as such; any other format
# (email among them: the API validates addresses, with rules of its own) stays a str.
FORMATS = {"date-time": "datetime", "date": "date", "duration": "timedelta"}
SCALARS = {"integer": "int", "number": "float", "boolean": "bool", "null": "None"}
# Keywords that only bound or describe a value: the API checks them, the client needs none of them.
IGNORED = frozenset({"title", "description", "default", "examples", "format", "minLength", "maxLength", "pattern",
                     "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "minItems", "maxItems",
                     "uniqueItems", "minProperties", "maxProperties", "deprecated", "readOnly", "writeOnly",
                     "contentMediaType"})
UNDERSTOOD = IGNORED | {"type", "$ref", "anyOf", "enum", "const", "items", "properties", "required",
                        "additionalProperties", "patternProperties"}
# Names of BaseModel's own that a field must not shadow.
RESERVED = frozenset(name for name in dir(BaseModel) if not name.startswith("__"))

WIDTH = 120  # the repository's line length
HTTP_METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


class GenerateError(Exception):
    """The document holds something this generator does not translate: teach it, don't guess."""


def openapi() -> dict[str, Any]:
    """Today's document, as the API serves it at /openapi.json."""
    from settings import Settings
    from starter.api import create_app

    return create_app(Settings()).openapi()


def generate(document: dict[str, Any]) -> dict[Path, str]:
    schemas = Schemas(document.get("components", {}).get("schemas", {}))
    return {MODELS: schemas.module(), KINDS: kinds_module(document, schemas)}


# --- models ---------------------------------------------------------------------------------------

def class_name(key: str) -> str:
    """`Definition-Input` → DefinitionInput; pydantic names a model clashing with another by its module,
    `workflows__session__models__Tutor` → SessionTutor (and the tutor journey's own → Tutor)."""
    *modules, last = key.split("__")
    parts = [part for part in modules if part not in ("workflows", "activities", "starter", "routes", "models",
                                                     "views")]
    if parts and parts[-1].lower() == last.lower():
        parts.pop()
    name = "".join(part[:1].upper() + part[1:] for part in [*parts, last])
    return re.sub(r"[^A-Za-z0-9_]", "", name)


class Schemas:
    def __init__(self, components: dict[str, dict[str, Any]]) -> None:
        self.components = components
        self.names = {key: class_name(key) for key in components}
        taken: dict[str, str] = {"Model": "the models' base class"}
        for key, name in self.names.items():
            if name in taken or keyword.iskeyword(name):
                raise GenerateError(f"schemas {taken.get(name, 'a keyword')!r} and {key!r} both become {name}")
            taken[name] = key

    def ref(self, schema: dict[str, Any]) -> str:
        ref = schema["$ref"]
        key = ref.removeprefix("#/components/schemas/")
        if key == ref or key not in self.components:
            raise GenerateError(f"a reference outside the document's schemas: {ref}")
        return key

    def parts(self, schema: dict[str, Any], where: str) -> list[str]:
        """The members of the union a schema's values may be, as Python type expressions."""
        unknown = set(schema) - UNDERSTOOD
        if unknown:
            raise GenerateError(f"{where}: {', '.join(sorted(unknown))} not handled by client/generate.py")
        if "$ref" in schema:
            return [self.names[self.ref(schema)]]
        if "anyOf" in schema:
            return _unique(part for n, member in enumerate(schema["anyOf"])
                           for part in self.parts(member, f"{where}.anyOf[{n}]"))
        if "enum" in schema or "const" in schema:
            values = schema["enum"] if "enum" in schema else [schema["const"]]
            return [f"Literal[{', '.join(_literal(value) for value in values)}]"]
        kind = schema.get("type")
        if isinstance(kind, list):
            return _unique(part for one in kind for part in self.parts({**schema, "type": one}, where))
        if kind is None:
            return ["Any"]
        if kind == "string":
            return [FORMATS.get(schema.get("format", ""), "str")]
        if kind in SCALARS:
            return [SCALARS[kind]]
        if kind == "array":
            return [f"list[{self.annotation(schema.get('items', {}), f'{where}[]')}]"]
        if kind == "object":
            if "properties" in schema:
                raise GenerateError(f"{where}: an object with properties inside another schema: give it a model")
            values = [schema["additionalProperties"]] if isinstance(schema.get("additionalProperties"), dict) else []
            values += list(schema.get("patternProperties", {}).values())
            value = " | ".join(_unique(part for member in values for part in self.parts(member, f"{where}{{}}")))
            return [f"dict[str, {value or 'Any'}]"]
        raise GenerateError(f"{where}: type {kind!r} not handled by client/generate.py")

    def annotation(self, schema: dict[str, Any], where: str) -> str:
        return " | ".join(self.parts(schema, where))

    def is_model(self, key: str) -> bool:
        schema = self.components[key]
        return schema.get("type") == "object" and "properties" in schema

    def module(self) -> str:
        body = "\n\n\n".join(self.model(key) if self.is_model(key) else self.alias(key) for key in self.ordered())
        used = [name for name in ("date", "datetime", "timedelta") if re.search(rf"\b{name}\b", body)]
        imports = f"from datetime import {', '.join(used)}\n" if used else ""
        return _MODELS_HEADER.format(datetime=imports) + "\n\n\n" + body.rstrip() + "\n"

    def ordered(self) -> list[str]:
        """Document order, each schema after those it names (a type alias is evaluated at once)."""
        done: list[str] = []
        seen: set[str] = set()

        def visit(key: str, path: tuple[str, ...]) -> None:
            if key in seen:
                return
            if key in path:
                if not all(self.is_model(k) for k in (*path[path.index(key):],)):
                    raise GenerateError(f"a cycle through a non-model schema: {' → '.join((*path, key))}")
                return  # models may name each other: pydantic resolves them once all are defined
            for ref in sorted(_refs(self.components[key])):
                visit(ref.removeprefix("#/components/schemas/"), (*path, key))
            seen.add(key)
            done.append(key)

        for key in self.components:
            visit(key, ())
        return done

    def alias(self, key: str) -> str:
        schema, name = self.components[key], self.names[key]
        comment = "".join(f"# {line}\n" for line in _wrap(schema.get("description", ""), 98))
        line = f"{name} = {self.annotation(schema, key)}"
        if len(line) > WIDTH and "enum" in schema:  # a long Literal, its values wrapped
            rows: list[str] = []
            for value in map(_literal, schema["enum"]):
                if rows and len(rows[-1]) + len(value) + 6 <= WIDTH:
                    rows[-1] += f" {value},"
                else:
                    rows.append(f"{value},")
            line = "\n".join([f"{name} = Literal[", *(f"    {row}" for row in rows), "]"])
        return comment + line

    def model(self, key: str) -> str:
        schema, name = self.components[key], self.names[key]
        lines = [f"class {name}(Model):"]
        if schema.get("description"):
            lines += _docstring(schema["description"], "    ")
        required = set(schema.get("required", ()))
        for field, sub in schema["properties"].items():
            if not field.isidentifier() or keyword.iskeyword(field) or field in RESERVED:
                raise GenerateError(f"{key}.{field}: not a name a pydantic field can have (teach aliases)")
            parts = self.parts(sub, f"{key}.{field}")
            if field in required and "default" not in sub:
                lines.append(f"    {field}: {' | '.join(parts)}")
            else:
                default = sub.get("default")
                if default is None and not {"None", "Any"} & set(parts):
                    parts.append("None")  # left out of an answer, it reads as None
                lines.append(_default(f"    {field}: {' | '.join(parts)} = ", default, parts))
            if sub.get("description"):
                lines += _docstring(sub["description"], "    ")
        if len(lines) == 1:
            lines.append("    pass")
        return "\n".join(lines)


_MODELS_HEADER = '''"""The API's models, generated from its OpenAPI document by `make client` (client/generate.py):
do not edit. Types only: the API checks every bound and answers 422 naming the field."""

from __future__ import annotations

{datetime}from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class Model(BaseModel):
    """Fields a model does not know are kept (an answer from a newer server still reads); defaults
    are read like values (a policy's `"P2D"` is a timedelta)."""

    model_config = ConfigDict(extra="allow", validate_default=True)


def as_written(value: Any) -> Any:
    """A default as the document writes it, which the model reads into the field's type."""
    return value'''


def _refs(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = {schema["$ref"]} if isinstance(schema.get("$ref"), str) else set()
        for key, value in schema.items():
            if key not in ("default", "examples", "const", "enum"):
                found |= _refs(value)
        return found
    if isinstance(schema, list):
        return set().union(*map(_refs, schema)) if schema else set()
    return set()


def _unique(parts: Iterable[str]) -> list[str]:
    return list(dict.fromkeys(parts))


def _literal(value: Any) -> str:
    """A JSON value as Python source (json's string escapes are Python's too)."""
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return f"[{', '.join(map(_literal, value))}]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{_literal(k)}: {_literal(v)}" for k, v in value.items()) + "}"
    return repr(value)


def _fit(head: str, value: Any, tail: str = "", indent: str = "") -> str:
    """`head + value + tail` on one line if it fits, else the list or dict one item a line."""
    line = f"{head}{_literal(value)}{tail}"
    if len(line) <= WIDTH or not isinstance(value, (list, dict)) or not value:
        return line
    inner = indent + "    "
    items = ([_fit(f"{inner}{_literal(k)}: ", v, ",", inner) for k, v in value.items()] if isinstance(value, dict)
             else [_fit(inner, v, ",", inner) for v in value])
    opening, closing = "{}" if isinstance(value, dict) else "[]"
    return "\n".join([f"{head}{opening}", *items, f"{indent}{closing}{tail}"])


def _default(head: str, value: Any, parts: list[str]) -> str:
    """`head` (`    policy: InterviewPolicy = `) and the default as written in the document; through
    `as_written()` where it is not yet of the field's type (a duration's `"PT4H"`, a model's dict),
    which pydantic reads it into."""
    kinds = {str: ("str", "Literal["), bool: ("bool",), int: ("int", "float"), float: ("float",)}
    if value is None or value == [] or any(part.startswith(kinds.get(type(value), ())) for part in parts):
        return _fit(head, value, indent="    ")
    return _fit(f"{head}as_written(", value, ")", indent="    ")


def _wrap(text: str, width: int) -> list[str]:
    return [line for paragraph in text.strip().splitlines()
            for line in (textwrap.wrap(paragraph, width, break_long_words=False, break_on_hyphens=False) or [""])]


def _docstring(text: str, indent: str) -> list[str]:
    text = text.strip().replace("\\", "\\\\").replace('"""', '\\"\\"\\"')
    lines = _wrap(text, 104 - len(indent))
    if lines[-1].endswith('"'):
        lines[-1] = lines[-1][:-1] + '\\"'
    if len(lines) == 1:
        return [f'{indent}"""{lines[0]}"""']
    return [f'{indent}"""{lines[0]}', *(f"{indent}{line}" if line else "" for line in lines[1:]), f'{indent}"""']


# --- journey kinds --------------------------------------------------------------------------------

def route_name(operation: dict[str, Any], path: str, method: str) -> str | None:
    """The name the API gave the route (`interview_confirm`), read back from FastAPI's operation id
    (`{name}{path with non-word characters as _}_{method}`); None for an id of another shape (a
    journey's routes keep FastAPI's, which tests/unit/test_light_client.py checks against the registry)."""
    suffix = re.sub(r"\W", "_", path) + "_" + method
    operation_id = operation.get("operationId", "")
    return operation_id.removesuffix(suffix) if operation_id.endswith(suffix) else None


def kinds_module(document: dict[str, Any], schemas: Schemas) -> str:
    """A journey kind is what the API routes as `start_{kind}` (POST /v1/{plural}), `show_{kind}`
    (GET /v1/{plural}/{{kind}_id}) and `{kind}_{event}` below that; nothing else is guessed."""
    operations = {(path, method): (route_name(operation, path, method), operation)
                  for path, item in document.get("paths", {}).items()
                  for method, operation in item.items() if method in HTTP_METHODS}
    names = {name: key for key, (name, _) in operations.items()}
    entries, journeys, journeys_async = [], [], []
    for (path, method), (name, operation) in operations.items():
        match = re.fullmatch(r"/v1/([a-z][a-z0-9-]*)", path)
        if method != "post" or match is None or name is None or not name.startswith("start_"):
            continue
        kind = name.removeprefix("start_")
        plural, id_field = match.group(1), f"{kind}_id"
        show = f"{path}/{{{id_field}}}"
        if names.get(f"show_{kind}") != (show, "get"):
            continue
        view = _response_model(operations[(show, "get")][1], schemas, f"GET {show}")
        start = _body_model(operation, schemas, f"POST {path}")
        events = []
        for (event_path, event_method), (event_name, event_operation) in operations.items():
            if event_path.startswith(show + "/") and event_name and event_name.startswith(f"{kind}_"):
                where = f"{event_method.upper()} {event_path}"
                if _response_model(event_operation, schemas, where) != view:
                    raise GenerateError(f"{where}: an event that does not answer with {view}")
                body = _body_model(event_operation, schemas, where)
                events.append(f"            {_literal(event_name.removeprefix(kind + '_'))}: Event("
                              f"{_literal(event_method.upper())}, {_literal(event_path.removeprefix(show + '/'))}, "
                              f"{f'models.{body}' if body else 'None'}),")
        entries.append("\n".join([
            f"    {_literal(kind)}: Kind(",
            f"        {_literal(kind)}, {_literal(plural)}, start=models.{start}, view=models.{view}, events={{",
            *events,
            "        },",
            "    ),",
        ]))
        attribute = plural.replace("-", "_")
        journeys.append(f"    {attribute}: JourneyClient[models.{view}]")
        journeys_async.append(f"    {attribute}: AsyncJourneyClient[models.{view}]")
    if not entries:
        raise GenerateError("no journey kind in the document (POST /v1/{plural} named start_{kind})")
    return "\n".join([
        _KINDS_HEADER,
        "KINDS: dict[str, Kind[Any]] = {",
        *entries,
        "}",
        "",
        "",
        "class Journeys:",
        '    """`FollowupsClient`\'s journey attributes, one per kind: `client.interviews.confirm(...)`."""',
        "",
        *journeys,
        "",
        "",
        "class AsyncJourneys:",
        '    """`AsyncFollowupsClient`\'s journey attributes, one per kind."""',
        "",
        *journeys_async,
        "",
    ])


def _media_schema(content: dict[str, Any] | None, where: str) -> dict[str, Any] | None:
    if not content:
        return None
    if "application/json" not in content:
        raise GenerateError(f"{where}: a journey route without JSON ({', '.join(content)})")
    schema = content["application/json"].get("schema", {})
    members = [member for member in schema.get("anyOf", [schema]) if member.get("type") != "null"]
    if len(members) != 1 or "$ref" not in members[0]:
        raise GenerateError(f"{where}: a journey route's body or answer is not one model")
    return members[0]


def _body_model(operation: dict[str, Any], schemas: Schemas, where: str) -> str | None:
    schema = _media_schema(operation.get("requestBody", {}).get("content"), where)
    return schemas.names[schemas.ref(schema)] if schema else None


def _response_model(operation: dict[str, Any], schemas: Schemas, where: str) -> str:
    found = {schemas.names[schemas.ref(schema)] for status, response in operation.get("responses", {}).items()
             if status.startswith("2") and (schema := _media_schema(response.get("content"), where))}
    if len(found) != 1:
        raise GenerateError(f"{where}: answers with {sorted(found) or 'nothing'}, not one view")
    return found.pop()


_KINDS_HEADER = '''"""Every journey kind of the API and its events, generated from its OpenAPI document by
`make client` (client/generate.py): do not edit. A kind is started with `POST /v1/{plural}`, read with
`GET /v1/{plural}/{id}` and steered with one route per event, `Event(method, path below the id, body)`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from followups_client import models
from followups_client.routes import Event, Kind

if TYPE_CHECKING:
    from followups_client.client import AsyncJourneyClient, JourneyClient

'''


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m client.generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--check", action="store_true", help="only say whether the committed files are current")
    parser.add_argument("--document", type=Path, help="an OpenAPI document (JSON) instead of today's app's")
    args = parser.parse_args(argv)
    document = json.loads(args.document.read_text()) if args.document else openapi()
    written = generate(document)
    stale = [path for path, text in written.items() if not path.exists() or path.read_text(encoding="utf-8") != text]
    root = Path.cwd()
    shown = [str(path.relative_to(root)) if path.is_relative_to(root) else str(path) for path in stale]
    if args.check:
        print(f"stale: {', '.join(shown)} (run `make client`)" if stale else "the light client is current")
        return 1 if stale else 0
    for path in stale:
        path.write_text(written[path], encoding="utf-8")
    print(f"wrote {', '.join(shown)}" if stale else "the light client was already current")
    return 0


if __name__ == "__main__":
    sys.exit(main())
