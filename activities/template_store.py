"""Templates in PostgreSQL: immutable versions of a template's subject, text and html (with A/B
variants), publications (the version in force from a moment on), and what the send step asks:
which source, version, variant and category a message of a template gets.

The files in templates/ stay the defaults: a template without a publication renders from its files.
A journey asks `resolve(name, as_of=<when it started>)` and keeps the version in force then, so an
edit never changes a sleeping journey behind its back; `as_of=None` follows the latest.
A version is checked before it is saved (activities.template_checks); everything a template author
wrote is read and rendered in the renderer's child process.

The variables a version may read: the send step's, and the template's own. A file template's own
are the keys of its sample in templates/catalog.yaml, what its journeys send: a caller's sample
may give them other values, never add one (a version reading a variable no journey sends would fail
every send once published). A template that exists only in the database has no journey of ours:
its own variables are its samples' keys (the first version's, and any a later version's sample
adds), and a journey sending it must give each of them (an undefined one fails the send for good)."""

from __future__ import annotations

import asyncio
import functools
import hashlib
import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import yaml

from activities.render import PARTS, TEMPLATES_DIR, Rendered, Renderer, Source, TemplateProblem
from activities.template_checks import (SEND_STEP_VARIABLES, Problem, TemplateInvalid, check, sample_problems,
                                        variant_problems)

CATALOG = TEMPLATES_DIR / "catalog.yaml"
SEEDED_CATEGORIES = frozenset({"transactional", "reminders", "progress", "feedback", "marketing"})
PUBLICATIONS_FOR = 2.0  # seconds a process trusts what it read of a template's publications
CLOCK_MARGIN = timedelta(seconds=1)  # between this process's clock, PostgreSQL's and Temporal's
RESERVED = frozenset({"base"})  # the layouts: not a template


@dataclass(frozen=True)
class CatalogEntry:
    category: str
    description: str
    sample: dict[str, Any]


@dataclass(frozen=True)
class Catalog:
    """templates/catalog.yaml: each file template's category, description and sample context, and
    sample values of what the send step adds."""

    send_step: dict[str, Any]
    templates: dict[str, CatalogEntry]


@functools.cache
def load_catalog(path: Path = CATALOG) -> Catalog:
    raw = yaml.safe_load(path.read_text())
    return Catalog(send_step=raw["send_step"], templates={
        name: CatalogEntry(entry["category"], entry["description"], entry.get("sample") or {})
        for name, entry in raw["templates"].items()})


@dataclass(frozen=True)
class Variant:
    """An A/B arm: its share is weight / the sum of the weights; the parts it sets replace the version's."""

    name: str
    weight: int
    parts: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {"name": self.name, "weight": self.weight, **self.parts}


@dataclass(frozen=True)
class TemplateVersion:
    name: str
    version: int
    category: str
    source: Source
    variants: tuple[Variant, ...]
    sample: dict[str, Any]
    created_at: datetime

    def variant(self, name: str | None) -> Variant | None:
        return next((v for v in self.variants if v.name == name), None) if name is not None else None


@dataclass(frozen=True)
class Publication:
    name: str
    version: int
    published_at: datetime


@dataclass(frozen=True)
class Resolved:
    """What a message of `name` renders from: `source` None is the file default (`version` None)."""

    name: str
    version: int | None
    variant: str | None
    category: str
    source: Source | None


def pick_variant(name: str, version: int, variants: Iterable[Variant], recipient: str) -> Variant | None:
    """The arm a recipient gets, the same every time: a point from sha256 of the experiment (the
    template's version) and the address, laid on the weights in their order."""
    arms = [v for v in variants if v.weight > 0]
    total = sum(v.weight for v in arms)
    if total == 0:
        return None
    digest = hashlib.sha256(f"{name}@{version}\0{recipient.lower()}".encode()).digest()
    point = int.from_bytes(digest[:8], "big") % total
    for arm in arms:
        if point < arm.weight:
            return arm
        point -= arm.weight
    raise AssertionError("unreachable: the point is below the total weight")


class TemplateStore:
    """Versions are cached for good (immutable); publications for `publications_for` seconds."""

    def __init__(self, pool: asyncpg.Pool, renderer: Renderer | None = None, *, catalog: Path = CATALOG,
                 publications_for: float = PUBLICATIONS_FOR) -> None:
        self.pool, self.renderer = pool, renderer or Renderer()
        self.catalog = load_catalog(catalog)
        self.publications_for = publications_for
        self._versions: dict[tuple[str, int], TemplateVersion] = {}
        self._publications: dict[str, tuple[float, datetime, list[Publication]]] = {}  # (monotonic, read at, list)

    # --- reading ---------------------------------------------------------------------------------

    def is_file(self, name: str) -> bool:
        return name in self.catalog.templates

    async def version(self, name: str, version: int) -> TemplateVersion | None:
        if (found := self._versions.get((name, version))) is None:
            row = await self.pool.fetchrow("SELECT * FROM template_versions WHERE name = $1 AND version = $2",
                                           name, version)
            if row is None:
                return None
            found = self._versions[(name, version)] = _version(row)
        return found

    async def versions(self, name: str) -> list[TemplateVersion]:
        rows = await self.pool.fetch("SELECT * FROM template_versions WHERE name = $1 ORDER BY version", name)
        return [_version(row) for row in rows]

    async def latest(self, name: str) -> TemplateVersion | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM template_versions WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
        return _version(row) if row else None

    async def publications(self, name: str) -> list[Publication]:
        """Every publication of `name`, oldest first (read now, and kept for the cache)."""
        rows = await self.pool.fetch("SELECT name, version, published_at FROM template_publications WHERE name = $1 "
                                     "ORDER BY published_at, id", name)
        found = [Publication(row["name"], row["version"], row["published_at"]) for row in rows]
        if len(self._publications) >= 10_000:  # names asked for are few; any name may be asked (a preview)
            self._publications.clear()
        self._publications[name] = (time.monotonic(), datetime.now(timezone.utc), found)
        return found

    async def names(self) -> dict[str, tuple[int, str]]:
        """Every name saved in the database → (its latest version, that version's category)."""
        rows = await self.pool.fetch("SELECT DISTINCT ON (name) name, version, category FROM template_versions "
                                     "ORDER BY name, version DESC")
        return {row["name"]: (row["version"], row["category"]) for row in rows}

    async def in_force(self) -> dict[str, tuple[Publication, str]]:
        """Every published name → (its latest publication, the category of the version published)."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (p.name) p.name, p.version, p.published_at, v.category FROM template_publications p "
            "JOIN template_versions v USING (name, version) ORDER BY p.name, p.published_at DESC, p.id DESC")
        return {row["name"]: (Publication(row["name"], row["version"], row["published_at"]), row["category"])
                for row in rows}

    # --- what the send step asks -------------------------------------------------------------------

    async def resolve(self, name: str, *, as_of: datetime | None, recipient: str, variant: str | None = None) -> Resolved:
        """The version of `name` in force at `as_of` (None: now), the recipient's variant of it, and
        its category; the file default when nothing was published by then. A template that exists
        only in the database and was first published after `as_of` gets its first publication."""
        kept = self._publications.get(name)
        # A kept list is fresh enough for `latest` (a publication shows within publications_for), and
        # exact for a moment it was read after (a journey started earlier); a journey that started
        # after it was read may have a publication it lacks: read again.
        fresh = kept is not None and time.monotonic() - kept[0] < self.publications_for \
            and (as_of is None or as_of < kept[1] - CLOCK_MARGIN)
        published = kept[2] if fresh and kept is not None else await self.publications(name)
        chosen = next((p for p in reversed(published) if as_of is None or p.published_at <= as_of), None)
        if chosen is None:
            if (entry := self.catalog.templates.get(name)) is not None:
                if variant is not None:
                    raise TemplateProblem(f"template {name!r} has no published version, so no variant {variant!r}")
                return Resolved(name, None, None, entry.category, None)
            if not published:
                raise TemplateProblem(f"no template {name!r}: no file in templates/ and no published version")
            chosen = published[0]
        version = await self.version(name, chosen.version)
        assert version is not None  # a publication's version is never deleted (foreign key)
        if variant is not None:
            if (arm := version.variant(variant)) is None:
                raise TemplateProblem(f"template {name!r} version {version.version} has no variant {variant!r}")
        else:
            arm = pick_variant(name, version.version, version.variants, recipient)
        return Resolved(name, version.version, arm.name if arm else None, version.category,
                        version.source.over(arm.parts) if arm else version.source)

    # --- writing ---------------------------------------------------------------------------------

    async def save(self, name: str, *, subject: str, text: str, html: str, category: str | None = None,
                   variants: list[Variant] | None = None,
                   sample: Mapping[str, Any] | None = None) -> tuple[TemplateVersion, bool]:
        """Check, then save a new version (True), or answer the latest when it is the same (False).
        TemplateInvalid lists every problem. `sample` gives values to the template's variables: for
        a file template only to those of its catalog sample and the send step's (a new name is a
        problem); for a template only in the database its keys are variables the version may read
        (see the module's docstring)."""
        variants = list(variants or [])
        previous, entry = await self.latest(name), self.catalog.templates.get(name)
        category = category or (previous.category if previous else entry.category if entry else None)
        problems = variant_problems(variants)
        if entry is not None:  # its variables are fixed: what its journeys send
            variables = set(entry.sample)
            problems += sample_problems(name, sample or {}, variables)
            # of the last version's sample (saved before this rule, it may hold more), the variables only
            given = {**(previous.sample if previous else {}), **(sample or {})}
            own_sample = {**entry.sample, **{key: value for key, value in given.items()
                                             if key in variables or key in SEND_STEP_VARIABLES}}
        else:
            own_sample = {**(previous.sample if previous else {}), **(sample or {})}
            variables = set(own_sample)
        if category is None:
            problems.append(Problem("category", None, f"a new template needs a category: one of "
                                                      f"{', '.join(sorted(await self.categories()))}"))
        elif category not in (known := await self.categories()):
            problems.append(Problem("category", None, f"no category {category!r}: one of {', '.join(sorted(known))}"))
        source = Source(subject=subject, text=text, html=html)
        problems += await check(self.renderer, name, source, variants, variables, self.context(own_sample),
                                fixed=entry is not None)
        if problems:
            raise TemplateInvalid(problems)
        assert category is not None
        values = (category, subject, html, text, json.dumps([v.as_json() for v in variants]), json.dumps(own_sample))
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('template_versions/' || $1))", name)
            latest = await conn.fetchrow(
                "SELECT * FROM template_versions WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
            if latest is not None and _same(latest, values):
                return _version(latest), False
            row = await conn.fetchrow(
                "INSERT INTO template_versions (name, version, category, subject, html, text, variants, sample) "
                "VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING *",
                name, (latest["version"] if latest else 0) + 1, *values)
        return _version(row), True

    async def publish(self, name: str, version: int) -> tuple[Publication, bool] | None:
        """Put `version` in force from now on (True); the version already in force stays (False);
        None when there is no such version."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('template_publications/' || $1))", name)
            if await conn.fetchval("SELECT 1 FROM template_versions WHERE name = $1 AND version = $2",
                                   name, version) is None:
                return None
            current = await conn.fetchrow("SELECT * FROM template_publications WHERE name = $1 "
                                          "ORDER BY published_at DESC, id DESC LIMIT 1", name)
            if current is not None and current["version"] == version:
                return Publication(name, version, current["published_at"]), False
            # clock_timestamp(), not now(): taken once the lock is held, so publications are in order
            row = await conn.fetchrow(
                "INSERT INTO template_publications (name, version, published_at) "
                "VALUES ($1, $2, GREATEST(clock_timestamp(), $3)) RETURNING published_at",
                name, version, current["published_at"] if current else None)
        self._publications.pop(name, None)
        return Publication(name, version, row["published_at"]), True

    async def categories(self) -> frozenset[str]:
        """The categories a template may declare: the `categories` table's, once it exists."""
        async with self.pool.acquire() as conn:
            if await conn.fetchval("SELECT to_regclass('categories')") is None:
                return SEEDED_CATEGORIES
            return frozenset(row["name"] for row in await conn.fetch("SELECT name FROM categories"))

    # --- checking and rendering ------------------------------------------------------------------

    def context(self, sample: Mapping[str, Any], given: Mapping[str, Any] | None = None) -> dict[str, Any]:
        """A context to render with: the send step's sample values, `sample`, then `given` over them."""
        return {**self.catalog.send_step, **sample, **(given or {})}

    async def render(self, resolved: Resolved, context: Mapping[str, Any]) -> Rendered:
        """`resolved` rendered with `context` (saved sources in the renderer's child process)."""
        if resolved.source is None:
            return self.renderer.render(resolved.name, dict(context))
        return await asyncio.to_thread(self.renderer.render, resolved.name, dict(context), source=resolved.source)


def _version(row: asyncpg.Record) -> TemplateVersion:
    variants = tuple(Variant(v["name"], v["weight"], {p: v[p] for p in PARTS if v.get(p)})
                     for v in json.loads(row["variants"]))
    return TemplateVersion(row["name"], row["version"], row["category"],
                           Source(subject=row["subject"], text=row["text"], html=row["html"]), variants,
                           json.loads(row["sample"]), row["created_at"])


def _same(row: asyncpg.Record, values: tuple) -> bool:
    category, subject, html, text, variants, sample = values
    return (row["category"], row["subject"], row["html"], row["text"]) == (category, subject, html, text) \
        and json.loads(row["variants"]) == json.loads(variants) and json.loads(row["sample"]) == json.loads(sample)
