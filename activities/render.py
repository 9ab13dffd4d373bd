"""Jinja2 rendering in a sandbox: autoescaped HTML, plain text, strict variables, no header injection."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel import UnknownLocaleError
from babel.numbers import format_currency
from jinja2 import (
    FileSystemLoader,
    StrictUndefined,
    TemplateNotFound,
    TemplateSyntaxError,
    UndefinedError,
    select_autoescape,
)
from jinja2.exceptions import SecurityError
from jinja2.sandbox import ImmutableSandboxedEnvironment

TEMPLATES_DIR = Path(__file__).resolve().parent.parent / "templates"


class TemplateProblem(ValueError):
    """A template or its context is wrong: retrying cannot fix it."""


@dataclass(frozen=True)
class Rendered:
    subject: str
    text: str
    html: str


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


class Renderer:
    def __init__(self, directory: Path = TEMPLATES_DIR) -> None:
        loader = FileSystemLoader(directory)
        common = dict(loader=loader, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.html_env = ImmutableSandboxedEnvironment(autoescape=select_autoescape(["html"]), **common)
        self.text_env = ImmutableSandboxedEnvironment(autoescape=False, **common)
        for env in (self.html_env, self.text_env):
            env.filters.update(FILTERS)

    def render(self, template: str, context: dict[str, Any]) -> Rendered:
        try:
            text_module = self.text_env.get_template(f"{template}.txt").make_module(context)
            subject = " ".join(str(getattr(text_module, "subject", "")).split())  # no CR/LF in a header
            if not subject:
                raise TemplateProblem(f"template {template}.txt sets no subject")
            html = self.html_env.get_template(f"{template}.html").render({**context, "subject": subject})
        except TemplateNotFound as err:
            raise TemplateProblem(f"no template {err.name!r}") from err
        except (UndefinedError, SecurityError) as err:
            raise TemplateProblem(f"template {template!r}: {err.message}") from err
        except TemplateSyntaxError as err:
            raise TemplateProblem(f"template {err.name or template!r} line {err.lineno}: {err.message}") from err
        except TemplateProblem:
            raise
        except (TypeError, ValueError, LookupError, ArithmeticError) as err:  # a filter given what it cannot use
            raise TemplateProblem(f"template {template!r}: {type(err).__name__}: {err}") from err
        return Rendered(subject=subject, text=str(text_module).strip() + "\n", html=html)
