"""Journey definitions in PostgreSQL: immutable versions, and the built-in ones shipped in
`workflows/declared/builtin/*.yaml` (installed as a new version when the shipped file changes,
unless a user has saved a version of their own since)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
import yaml

from workflows.declared.definition import Definition

BUILTIN_DIR = Path(__file__).resolve().parent.parent / "workflows" / "declared" / "builtin"


@dataclass(frozen=True)
class Version:
    name: str
    version: int
    definition: Definition
    digest: str
    source: str
    created_at: datetime


def digest(definition: Definition) -> str:
    return hashlib.sha256(definition.model_dump_json().encode()).hexdigest()


def builtin_definitions(templates: frozenset[str] | None = None) -> dict[str, Definition]:
    """The shipped definitions, validated (against `templates` when given)."""
    context = {"templates": templates} if templates is not None else None
    return {path.stem: Definition.model_validate(yaml.safe_load(path.read_text()), context=context)
            for path in sorted(BUILTIN_DIR.glob("*.yaml"))}


class Definitions:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    @staticmethod
    def _version(row: asyncpg.Record) -> Version:
        body = row["body"]
        return Version(row["name"], row["version"], Definition.model_validate_json(body), row["digest"],
                       row["source"], row["created_at"])

    async def save(self, name: str, definition: Definition, source: str = "api") -> tuple[Version, bool]:
        """(the version, True if this call created it); the same body as the latest is not a new version."""
        wanted = digest(definition)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('journey_definitions/' || $1))", name)
            latest = await conn.fetchrow(
                "SELECT * FROM journey_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
            if latest is not None and latest["digest"] == wanted:
                return self._version(latest), False
            row = await conn.fetchrow(
                "INSERT INTO journey_definitions (name, version, body, digest, source) VALUES ($1, $2, $3, $4, $5) "
                "RETURNING *", name, (latest["version"] if latest else 0) + 1, definition.model_dump_json(), wanted,
                source)
            return self._version(row), True

    async def latest(self, name: str) -> Version | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM journey_definitions WHERE name = $1 ORDER BY version DESC LIMIT 1", name)
        return self._version(row) if row else None

    async def version(self, name: str, version: int) -> Version | None:
        row = await self.pool.fetchrow("SELECT * FROM journey_definitions WHERE name = $1 AND version = $2",
                                       name, version)
        return self._version(row) if row else None

    async def versions(self, name: str) -> list[Version]:
        rows = await self.pool.fetch("SELECT * FROM journey_definitions WHERE name = $1 ORDER BY version", name)
        return [self._version(row) for row in rows]

    async def names(self) -> list[Version]:
        """The latest version of every definition, by name."""
        rows = await self.pool.fetch(
            "SELECT DISTINCT ON (name) * FROM journey_definitions ORDER BY name, version DESC")
        return [self._version(row) for row in rows]

    async def install_builtins(self, templates: frozenset[str] | None = None) -> list[Version]:
        """Save each shipped definition whose latest version is a different built-in (or none)."""
        installed = []
        for name, definition in builtin_definitions(templates).items():
            latest = await self.latest(name)
            if latest is None or (latest.source == "builtin" and latest.digest != digest(definition)):
                version, created = await self.save(name, definition, source="builtin")
                if created:
                    installed.append(version)
        return installed
