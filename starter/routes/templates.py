"""Templates over HTTP: save immutable versions (checked first: 422 lists each problem with its
field and line), publish one, list them, and preview any version with a context. The files in
templates/ are the defaults every name starts from (`GET /v1/templates` lists them too)."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, Body, Path, Request
from fastapi.responses import JSONResponse
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from activities.render import RenderTimeout, TemplateProblem
from activities.template_checks import Problem, TemplateInvalid
from activities.template_store import (
    RESERVED, Publication, Resolved, TemplateStore, TemplateVersion, Variant, pick_variant,
)
from starter.service import NotFound, Rejected, Unavailable
from workflows.core.fields import FreeText, Moment, SingleLine

TAGS = ["templates"]
NAME_PATTERN = r"^[a-z][a-z0-9_]{0,63}$"
TemplateName = Annotated[str, Path(pattern=NAME_PATTERN, description="a file template's name, or a new one")]
VersionNumber = Annotated[int, Path(ge=1, le=2_000_000_000)]
SourceText = Annotated[str, Field(min_length=1, max_length=500_000), FreeText]
Category = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]{0,63}$")]


def _plain(value: Any, depth: int = 0) -> Any:
    """What jsonb and a UTF-8 answer hold: no NUL or lone surrogate, no NaN, at most 32 levels deep."""
    if depth > 32:
        raise ValueError("nests deeper than 32 levels")
    if isinstance(value, str) and any(c == "\x00" or "\ud800" <= c <= "\udfff" for c in value):
        raise ValueError("text must not contain NUL or lone surrogates")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError("NaN and infinities are not JSON numbers")
    for key, item in value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ():
        _plain(key, depth + 1)
        _plain(item, depth + 1)
    return value


Context = Annotated[dict[str, Any], AfterValidator(_plain)]


class InvalidTemplate(Rejected):
    """422: `detail` lists every problem as {field, line, reason}."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("", field=problems[0].field if problems else None)
        self.detail = [{"field": p.field, "line": p.line, "reason": p.reason} for p in problems]  # type: ignore[assignment]


class VariantBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")
    weight: int = Field(ge=0, le=10_000, description="its share: weight / the sum of the weights")
    subject: SourceText | None = None
    html: SourceText | None = None
    text: SourceText | None = None


class VersionBody(BaseModel):
    """A version's parts, Jinja2 in a sandbox: `subject` (one line), `text` and `html` (autoescaped),
    which may `{% extends "base.txt" %}` / `"base.html"` and fill `{% block body %}`."""

    model_config = ConfigDict(extra="forbid")
    subject: Annotated[str, Field(min_length=1, max_length=2_000), FreeText]
    text: SourceText
    html: SourceText
    category: Category | None = Field(None, description="default: the file template's, or the last version's; "
                                                        "required for a new name")
    variants: list[VariantBody] = Field([], max_length=10, description="A/B arms; a part left out is the version's")
    sample: Context | None = Field(None, description="values to check it with, over the catalog's sample. For a file "
                                                     "template's name it may only give values to the variables its "
                                                     "journeys send; for a new name its keys are the variables the "
                                                     "template may use, which its journeys must then send")


class VersionView(BaseModel):
    name: str
    version: int
    category: str
    subject: str
    text: str
    html: str
    variants: list[dict[str, Any]]
    sample: dict[str, Any]
    created_at: datetime
    created: bool | None = Field(None, description="a save: false when it was the same as the latest version")

    @classmethod
    def of(cls, v: TemplateVersion, created: bool | None = None) -> VersionView:
        return cls(name=v.name, version=v.version, category=v.category, subject=v.source.subject, text=v.source.text,
                   html=v.source.html, variants=[arm.as_json() for arm in v.variants], sample=v.sample,
                   created_at=v.created_at, created=created)


class PublicationView(BaseModel):
    name: str
    version: int
    published_at: datetime
    published: bool | None = Field(None, description="false: that version was already the one in force")

    @classmethod
    def of(cls, p: Publication, published: bool | None = None) -> PublicationView:
        return cls(name=p.name, version=p.version, published_at=p.published_at, published=published)


class TemplateSummary(BaseModel):
    name: str
    category: str
    description: str | None
    file_default: bool = Field(description="templates/ has it: what renders while no version is published")
    published_version: int | None
    published_at: datetime | None
    latest_version: int | None


class TemplateList(BaseModel):
    templates: list[TemplateSummary]


class TemplateDetail(TemplateSummary):
    versions: list[VersionView]
    publications: list[PublicationView] = Field(description="oldest first: the history of what was in force")


class PreviewBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    version: int | None = Field(None, ge=1, le=2_000_000_000, description="default: the one in force (at `as_of`)")
    variant: Annotated[str, SingleLine] | None = Field(None, max_length=32,
                                                       description="default: the recipient's, if one is given")
    recipient: Annotated[str, SingleLine] | None = Field(None, max_length=320, description="whose variant to show")
    as_of: Moment | None = Field(None, description="without `version`: the version in force then")
    context: Context = Field({}, description="over the template's sample and the send step's sample values")


class PreviewView(BaseModel):
    name: str
    version: int | None = Field(description="null: the file default")
    variant: str | None
    category: str
    subject: str
    text: str
    html: str


def store(request: Request) -> TemplateStore:
    found = getattr(request.app.state, "template_store", None)
    if found is None:  # one per app, made on first use: it holds caches and a rendering process
        found = request.app.state.template_store = TemplateStore(request.app.state.pool)
    return found


def router(authed: list) -> APIRouter:
    api = APIRouter(dependencies=authed, tags=TAGS)

    async def summaries(templates: TemplateStore, only: str | None = None) -> list[TemplateSummary]:
        saved, in_force = await templates.names(), await templates.in_force()
        names = sorted(set(templates.catalog.templates) | set(saved)) if only is None else [only]
        out = []
        for name in names:
            entry, published = templates.catalog.templates.get(name), in_force.get(name)
            if entry is None and name not in saved:
                continue
            out.append(TemplateSummary(
                name=name, category=published[1] if published else entry.category if entry else saved[name][1],
                description=entry.description if entry else None, file_default=entry is not None,
                published_version=published[0].version if published else None,
                published_at=published[0].published_at if published else None,
                latest_version=saved[name][0] if name in saved else None))
        return out

    @api.post("/v1/templates/{name}/versions", status_code=201, response_model=VersionView,
              responses={200: {"model": VersionView, "description": "the same as the latest version: nothing saved"}})
    async def save_version(name: TemplateName, body: Annotated[VersionBody, Body()], request: Request) -> Any:
        """Save a new immutable version after a sandbox compile and a render against sample data; it
        changes nothing that is sent until it is published. 422 lists every problem with its field
        (subject, text, html, variants.N.<part>, category, sample.<name> for a sample value the
        template's journeys never send; `template` for a render stopped from outside, past the time
        limit), line and reason."""
        if name in RESERVED:
            raise Rejected(f"{name!r} is the layout every template extends, not a template", field="name")
        variants = [Variant(v.name, v.weight, {p: t for p in ("subject", "text", "html") if (t := getattr(v, p))})
                    for v in body.variants]
        try:
            version, created = await store(request).save(
                name, subject=body.subject, text=body.text, html=body.html, category=body.category,
                variants=variants, sample=body.sample)
        except TemplateInvalid as err:
            raise InvalidTemplate(err.problems) from err
        return JSONResponse(VersionView.of(version, created).model_dump(mode="json"), status_code=201 if created else 200)

    @api.post("/v1/templates/{name}/versions/{version}/publish", status_code=201, response_model=PublicationView,
              responses={200: {"model": PublicationView, "description": "already the version in force"}})
    async def publish(name: TemplateName, version: VersionNumber, request: Request) -> Any:
        """Put a version in force from now on. Journeys started earlier keep the version in force when
        they started (unless their policy follows the latest)."""
        answer = await store(request).publish(name, version)
        if answer is None:
            raise NotFound(f"{name} has no version {version}", field="version")
        publication, published = answer
        return JSONResponse(PublicationView.of(publication, published).model_dump(mode="json"),
                            status_code=201 if published else 200)

    @api.get("/v1/templates")
    async def list_templates(request: Request) -> TemplateList:
        """Every template: the file defaults and those saved, with their category and published version."""
        return TemplateList(templates=await summaries(store(request)))

    @api.get("/v1/templates/{name}")
    async def show_template(name: TemplateName, request: Request) -> TemplateDetail:
        """A template's versions and its publication history."""
        templates = store(request)
        if not (found := await summaries(templates, name)):
            raise NotFound(f"no template {name!r}", field="name")
        return TemplateDetail(**found[0].model_dump(), versions=[VersionView.of(v) for v in await templates.versions(name)],
                              publications=[PublicationView.of(p) for p in await templates.publications(name)])

    @api.post("/v1/templates/{name}/preview")
    async def preview(name: TemplateName, body: Annotated[PreviewBody, Body()], request: Request) -> PreviewView:
        """Render a version (default: the one in force, else the file, else the latest saved) with a
        context over its sample. 422 when the context does not fit the template."""
        templates = store(request)
        resolved = await _chosen(templates, name, body)
        try:
            rendered = await templates.render(resolved, templates.context(await _sample(templates, resolved), body.context))
        except TemplateProblem as err:
            raise InvalidTemplate([Problem(err.field or "context", err.line, err.reason)]) from err
        except RenderTimeout as err:  # the machine was too busy, or the render sandbox died: try again
            raise Unavailable(f"the preview did not finish in time: {err}", field="template") from err
        return PreviewView(name=name, version=resolved.version, variant=resolved.variant, category=resolved.category,
                           subject=rendered.subject, text=rendered.text, html=rendered.html)

    return api


async def _chosen(templates: TemplateStore, name: str, body: PreviewBody) -> Resolved:
    """The version and variant a preview shows."""
    number = body.version
    if number is None:
        if templates.is_file(name) or await templates.publications(name):
            resolved = await templates.resolve(name, as_of=body.as_of, recipient=body.recipient or "")
            if resolved.version is None:
                if body.variant is not None:
                    raise Rejected(f"{name} renders from its file, which has no variants", field="variant")
                return resolved
            number = resolved.version
        elif (latest := await templates.latest(name)) is not None:
            number = latest.version  # saved, never published: a draft
        else:
            raise NotFound(f"no template {name!r}", field="name")
    version = await templates.version(name, number)
    if version is None:
        raise NotFound(f"{name} has no version {number}", field="version")
    arm = version.variant(body.variant) if body.variant is not None \
        else pick_variant(name, version.version, version.variants, body.recipient) if body.recipient else None
    if body.variant is not None and arm is None:
        raise NotFound(f"{name} version {version.version} has no variant {body.variant!r}", field="variant")
    return Resolved(name, version.version, arm.name if arm else None, version.category,
                    version.source.over(arm.parts) if arm else version.source)


async def _sample(templates: TemplateStore, resolved: Resolved) -> dict[str, Any]:
    """The sample under a preview's context: the version's own, or the catalog's for a file."""
    if resolved.version is not None and (version := await templates.version(resolved.name, resolved.version)):
        return version.sample
    entry = templates.catalog.templates.get(resolved.name)
    return entry.sample if entry else {}
