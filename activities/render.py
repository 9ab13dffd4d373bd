"""Jinja2 rendering in a sandbox: autoescaped HTML (everything the HTML part renders, a .txt file it
includes too), plain text, strict variables, no header injection,
every HTML part CSS-inlined (css-inline) and every part capped in size.

Two kinds of source. The files in templates/ are ours: they render in this process. A saved
version's source (subject, text, html strings written through the API) may extend and include the
files, and renders in a child process (activities.render_sandbox) with a time limit and a memory
limit: the sandbox stops a template reaching Python's internals, not one that loops or allocates
without end, and such a template must cost a refused render, never the worker.

What goes wrong: `TemplateProblem`, the template or its context is wrong (failed for good), or
`RenderTimeout`, a saved version's render was stopped from outside, past the time limit or with its
child process dead (a loaded machine may do that to a good template: worth a retry)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from types import TracebackType
from typing import Any
from zoneinfo import ZoneInfo

import css_inline
from babel import UnknownLocaleError
from babel.numbers import format_currency
from jinja2 import (FileSystemLoader, StrictUndefined, Template, TemplateNotFound, TemplateSyntaxError, Undefined,
                    UndefinedError, meta, nodes)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"
MAX_RENDERED = 1_000_000  # characters in one rendered part: past it the render is refused
RENDER_TIMEOUT = 2.0  # seconds a saved version's render may take (a file template's renders in ~0.1 ms)
RENDER_MEMORY = 512 * 2**20  # bytes of address space the rendering child may hold
PARTS = ("subject", "text", "html")
# One inliner for the process. Styles move into style="" attributes; @media rules stay in a
# <style> (they cannot be inlined); a <link> is dropped, never fetched (no request to a URL a
# template author chose, from our network).
INLINER = css_inline.CSSInliner(keep_at_rules=True, load_remote_stylesheets=False)


class TemplateProblem(ValueError):
    """A template or its context is wrong: retrying cannot fix it. For a saved version, `field`
    (subject, text, html), `line` and `reason` (the message without the template's name) say where."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.field, self.line, self.reason = field, line, reason or message


class RenderTimeout(Exception):
    """A saved version's render was stopped from outside: it outlived the time limit, or the child
    process rendering it died (killed past its CPU limit, or by the machine). Not a TemplateProblem:
    on a loaded machine the same render may pass, so the send step may retry it. A version that
    reliably takes too long is refused when it is saved (activities.template_checks turns this into
    a problem there). `field`, `line` and `reason` as TemplateProblem's, when the child knew them."""

    def __init__(self, message: str, field: str | None = None, line: int | None = None,
                 reason: str | None = None) -> None:
        super().__init__(message)
        self.field, self.line, self.reason = field, line, reason or message


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


@dataclass(frozen=True)
class Source:
    """A saved version's parts (a variant's, its own parts over the version's). The subject and the
    text render without escaping, the html autoescaped; text and html may `{% extends "base.txt" %}`
    / `"base.html"` and include the files of templates/."""

    subject: str
    text: str
    html: str

    def over(self, parts: Mapping[str, Any]) -> Source:
        """This source with the parts `parts` gives (a variant: `{"html": ...}`) instead."""
        return dataclasses.replace(self, **{part: parts[part] for part in PARTS if parts.get(part)})


def local_time(value: str | datetime | None, zone: str | None = None, fmt: str = "%A %d %B %Y, %H:%M %Z") -> str:
    """`{{ scheduled_at | local_time(time_zone) }}`: the moment in the recipient's zone (UTC if none)."""
    if value is None:
        return ""
    moment = datetime.fromisoformat(value) if isinstance(value, str) else value
    return moment.astimezone(ZoneInfo(zone or "UTC")).strftime(fmt)


def money(amount: str | Decimal, currency: str, locale: str | None = None) -> str:
    """`{{ amount | money(currency, locale) }}`: the amount as the payer's locale writes it, with the
    currency's own decimals (`1.234,50 €` in de_DE, `€1,234.50` in en_US). Never formatted by hand."""
    try:
        value = Decimal(amount)
        if not value.is_finite():
            raise ValueError("not a finite amount")
        return format_currency(value, currency, locale=locale or "en_US")
    except (InvalidOperation, UnknownLocaleError, ValueError, TypeError) as err:  # a retry cannot fix these
        raise TemplateProblem(f"money: cannot format {amount!r} {currency!r} for locale {locale!r}: {err}") from err


FILTERS = {"local_time": local_time, "money": money}  # what templates may call, in every environment
# What a render may raise because of the template or its context (a filter given what it cannot use,
# local_time given a number, a range over the sandbox's limit, a macro calling itself forever).
RENDER_ERRORS = (TypeError, ValueError, LookupError, ArithmeticError, AttributeError, RecursionError, MemoryError)


class _TooLong(BaseException):
    """Raised in the child by its alarm: a BaseException, so that no `except Exception` in Jinja's
    constant folding swallows it, and the render stops with the line it was at."""


_DATA = (str, int, float, Decimal, date, type(None))  # date: a datetime too


def _is_data(value: Any, depth: int = 0) -> bool:
    if isinstance(value, list | tuple | dict) and depth < 20:
        items = value.items() if isinstance(value, dict) else enumerate(value)
        return all(isinstance(key, _DATA) and _is_data(item, depth + 1) for key, item in items)
    return isinstance(value, _DATA)


def _printable(value: Any) -> Any:
    """Every `{{ }}` prints data only: never a function, a class or one of Jinja's objects, whose text
    (`<function safe_range at 0x7f…>`) shows a template author Python's insides."""
    if isinstance(value, Undefined) or _is_data(value):
        return value  # an undefined variable keeps its own error
    raise SecurityError(f"cannot print a {type(value).__name__}: only text, numbers, and lists and mappings of them")


class _Layouts(FileSystemLoader):
    """The .txt and .html files of templates/, and nothing else there (catalog.yaml is no template)."""

    def get_source(self, environment: Any, template: str) -> Any:
        if not template.endswith((".txt", ".html")):
            raise TemplateNotFound(template)
        return super().get_source(environment, template)


def _line(err: BaseException) -> int | None:
    """The line of a saved source (a template made from a string) where a render failed. Jinja
    rewrites the traceback of an Exception so that a template's frames carry its own lines; the
    alarm's BaseException keeps the compiled code's frames, mapped here as Jinja maps them."""
    tb: TracebackType | None = err.__traceback__
    found = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            template = tb.tb_frame.f_globals.get("__jinja_template__")  # None in a rewritten frame
            found = template.get_corresponding_lineno(tb.tb_lineno) if template is not None else tb.tb_lineno
        tb = tb.tb_next
    return found


class Renderer:
    """`render(name, context)` a file template; `render(name, context, source=...)` a saved version
    (in the child process; `isolated=False` renders it here: the child runs one so)."""

    def __init__(self, directory: Path = TEMPLATES_DIR, *, isolated: bool = True, timeout: float = RENDER_TIMEOUT,
                 memory: int = RENDER_MEMORY, max_size: int = MAX_RENDERED) -> None:
        common = dict(loader=_Layouts(directory), undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                      finalize=_printable)
        # Autoescape by environment, not by file name: whatever the HTML part renders is escaped, a
        # .txt file it includes too (by name, `{% include "x.txt" %}` would print its values raw).
        self.html_env = ImmutableSandboxedEnvironment(autoescape=True, **common)
        self.text_env = ImmutableSandboxedEnvironment(autoescape=False, **common)
        for env in (self.html_env, self.text_env):
            env.filters.update(FILTERS)
        self.directory, self.max_size = directory, max_size
        self._compiled: dict[tuple[str, str], Template] = {}  # (part, source) → compiled, most recent last
        from activities.render_sandbox import _Child  # it imports this module: not at the top
        self._child = _Child(timeout, memory) if isolated else None

    def render(self, template: str, context: dict[str, Any], *, source: Source | None = None) -> Rendered:
        """The message `template` makes of `context`: from the files, or from `source` (a saved version
        of that template, as `TemplateStore.resolve` gives it)."""
        if source is not None:
            return self._isolated("render_source", template, source, context)
        try:
            text_module = self.text_env.get_template(f"{template}.txt").make_module(context)
            subject = " ".join(str(getattr(text_module, "subject", "")).split())  # no CR/LF in a header
            if not subject:
                raise TemplateProblem(f"template {template}.txt sets no subject")
            text = self._capped(iter([str(text_module)]), template, "text")
            html = self._capped(self.html_env.get_template(f"{template}.html").generate({**context, "subject": subject}),
                                template, "html")
        except TemplateNotFound as err:
            raise TemplateProblem(f"no template {err.name!r}") from err
        except (UndefinedError, SecurityError) as err:
            raise TemplateProblem(f"template {template!r}: {err.message}") from err
        except TemplateSyntaxError as err:
            raise TemplateProblem(f"template {err.name or template!r} line {err.lineno}: {err.message}") from err
        except TemplateProblem:
            raise
        except RENDER_ERRORS as err:
            raise TemplateProblem(f"template {template!r}: {type(err).__name__}: {err}") from err
        return Rendered(subject=subject, text=text.strip() + "\n", html=self._inline(html, template))

    def variables(self, part: str, text: str) -> dict[str, int]:
        """The variables a saved part (subject, text or html) reads from its context, each with the
        first line reading it; a syntax error or an unknown filter is a TemplateProblem. In the child:
        reading a template folds its constants, which may be `'x' * 10**10`."""
        return self._isolated("variables_of", part, text)

    def close(self) -> None:
        if self._child is not None:
            self._child.stop()

    def _isolated(self, operation: str, *args: Any) -> Any:
        if self._child is None:
            return getattr(self, operation)(*args)
        return self._child.call((operation, self.directory, self.max_size, args))

    # --- what runs in the child ------------------------------------------------------------------

    def render_source(self, template: str, source: Source, context: dict[str, Any]) -> Rendered:
        subject = " ".join(self._part(template, "subject", source.subject, context).split())
        if not subject:
            raise TemplateProblem(f"template {template!r}: the subject renders empty", "subject", 1, "renders empty")
        context = {**context, "subject": subject}
        text = self._part(template, "text", source.text, context)
        html = self._part(template, "html", source.html, context)
        return Rendered(subject=subject, text=text.strip() + "\n", html=self._inline(html, template))

    def variables_of(self, part: str, text: str) -> dict[str, int]:
        try:
            tree = (self.html_env if part == "html" else self.text_env).parse(text)
            names = meta.find_undeclared_variables(tree)
            self._compile(part, text)  # what only compiling finds: an unknown filter or test
        except TemplateSyntaxError as err:
            raise TemplateProblem(f"{part} line {err.lineno}: {err.message}", part, err.lineno, err.message) from err
        except RecursionError as err:
            raise TemplateProblem(f"{part}: the template nests too deeply", part, None, "nests too deeply") from err
        except _TooLong as err:
            raise RenderTimeout(f"{part}: {err}", part, None, str(err)) from err
        first: dict[str, int] = {}
        for node in tree.find_all(nodes.Name):
            if node.name in names and node.ctx == "load":
                first[node.name] = min(first.get(node.name, node.lineno), node.lineno)
        return first

    def _compile(self, part: str, text: str) -> Template:
        key = (part, text)
        if (found := self._compiled.pop(key, None)) is None:
            found = (self.html_env if part == "html" else self.text_env).from_string(text)
            if len(self._compiled) >= 256:
                del self._compiled[next(iter(self._compiled))]
        self._compiled[key] = found
        return found

    def _part(self, template: str, part: str, text: str, context: dict[str, Any]) -> str:
        try:
            return self._capped(self._compile(part, text).generate(context), template, part)
        except TemplateSyntaxError as err:
            reason, line = err.message or "syntax error", err.lineno
        except TemplateNotFound as err:
            reason, line = f"no template {err.name!r} to extend or include", _line(err)
        except (UndefinedError, SecurityError) as err:
            reason, line = err.message or type(err).__name__, _line(err)
        except TemplateProblem as err:
            reason, line = err.reason, err.line or _line(err)
        except MemoryError as err:
            reason, line = "needs more memory than a render may use", _line(err)
        except _TooLong as err:  # stopped from outside: not (for sure) the template's fault
            line = _line(err)
            raise RenderTimeout(f"template {template!r} {part}{f' line {line}' if line else ''}: {err}", part, line,
                                str(err)) from err
        except RENDER_ERRORS as err:
            reason, line = f"{type(err).__name__}: {err}", _line(err)
        raise TemplateProblem(f"template {template!r} {part}{f' line {line}' if line else ''}: {reason}", part, line,
                              reason)

    def _capped(self, pieces: Iterable[str], template: str, part: str) -> str:
        """The pieces joined, refused as soon as they pass the size cap (before they are all held)."""
        out, size = [], 0
        for piece in pieces:
            size += len(piece)
            if size > self.max_size:
                raise TemplateProblem(f"template {template!r} {part}: renders to more than {self.max_size} characters",
                                      part, None, f"renders to more than {self.max_size} characters")
            out.append(piece)
        return "".join(out)

    def _inline(self, html: str, template: str) -> str:
        try:
            inlined = INLINER.inline(html)
        except (css_inline.InlineError, ValueError) as err:
            raise TemplateProblem(f"template {template!r} html: the CSS cannot be inlined: {err}", "html") from err
        # The serializer writes U+00A0 as &nbsp;: the same page, but the money filter's non-breaking
        # space stays the character it was (the mail is UTF-8), as in the text part.
        inlined = inlined.replace("&nbsp;", "\xa0")
        if len(inlined) > self.max_size:
            raise TemplateProblem(f"template {template!r} html: inlined, more than {self.max_size} characters", "html")
        return inlined
