"""What happened to the messages of a scope (everything; one template, per version and variant; one
journey kind; one campaign, lead-nurture or broadcast) created in a period: counts from the outbox (`messages`), what
came after the send from the events (`message_events`), rates over the messages sent, and how
long a person took to open one.

Every figure after the send counts messages, not events: a message opened five times is one
opened message. Opens and clicks a machine made (an image proxy, Apple Mail Privacy Protection, a
link scanner) are counted apart from a person's, and only a person's first open times an open.
One statement per scope: the scope's messages, their events folded to one row each, then the
aggregates (per template version and variant too, through GROUPING SETS).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

Scope = Literal["overall", "template", "journey", "campaign"]

# Counted per message from its events; a rate over `sent` is reported for each.
TRACKED = ("delivered", "opened_human", "opened_machine", "clicked_human", "clicked_machine", "bounced",
           "soft_bounced", "complained", "unsubscribed")
_FLAGS = {
    "delivered": "e.kind = 'delivered'",
    "opened_human": "e.kind = 'opened' AND NOT e.machine",
    "opened_machine": "e.kind = 'opened' AND e.machine",
    "clicked_human": "e.kind = 'clicked' AND NOT e.machine",
    "clicked_machine": "e.kind = 'clicked' AND e.machine",
    "bounced": "e.kind = 'bounced'",  # hard
    "soft_bounced": "e.kind = 'soft_bounced'",
    "complained": "e.kind = 'complained'",
    "unsubscribed": "e.kind = 'unsubscribed'",
}
# The same split as activities.outgoing.reason_kind: `too late: due by …` → `too late`.
_SKIP_KIND = "trim(split_part(split_part(COALESCE(m.reason, 'skipped'), ':', 1), ' (', 1))"

_SCOPES: dict[Scope, tuple[str, str]] = {  # scope → (join, condition on $3)
    "overall": ("", "$3::text IS NULL"),
    "template": ("", "m.template = $3"),
    "journey": ("", "m.journey = $3"),
    # a lead's messages: its parent copies and forced resends count too (they are messages of the lead)
    # and a broadcast's messages are those of its workflow (journey `campaign`, entity its id)
    "campaign": ("LEFT JOIN leads l ON m.journey = 'lead' AND m.entity_id = l.lead_id",
                 "(l.campaign = $3 OR (m.journey = 'campaign' AND m.entity_id = $3))"),
}


def _statement(scope: Scope) -> str:
    join, condition = _SCOPES[scope]
    flags = ",\n".join(f"bool_or({test}) AS {name}" for name, test in _FLAGS.items())
    counts = ",\n".join(f"count(*) FILTER (WHERE {name}) AS {name}" for name in TRACKED)
    if scope == "template":
        columns, grouping = ("GROUPING(template_version, variant) = 3 AS total, template_version, variant",
                             "GROUPING SETS ((), (template_version, variant))")
        same_group = ("(g.total OR (p.template_version IS NOT DISTINCT FROM g.template_version "
                      "AND p.variant IS NOT DISTINCT FROM g.variant))")
    else:
        columns, grouping, same_group = "true AS total, NULL::integer AS template_version, NULL::text AS variant", "()", "true"
    return f"""
WITH scoped AS (
    SELECT m.key, m.status, m.sent_at, m.template_version, m.variant,
           CASE WHEN m.status = 'skipped' THEN {_SKIP_KIND} END AS skip_kind
    FROM messages m {join}
    WHERE {condition} AND ($1::timestamptz IS NULL OR m.created_at >= $1)
      AND ($2::timestamptz IS NULL OR m.created_at < $2)
), tracked AS (
    SELECT e.key, {flags},
           min(e.at) FILTER (WHERE e.kind = 'opened' AND NOT e.machine) AS first_open
    FROM message_events e JOIN scoped s ON s.key = e.key
    GROUP BY e.key
), per AS (
    SELECT s.*, {", ".join(f"COALESCE(t.{name}, false) AS {name}" for name in TRACKED)},
           CASE WHEN t.first_open IS NOT NULL AND s.sent_at IS NOT NULL
                THEN greatest(extract(epoch FROM t.first_open - s.sent_at), 0)::float8 END AS to_open
    FROM scoped s LEFT JOIN tracked t ON t.key = s.key
), grouped AS (
    SELECT {columns},
           count(*) AS messages,
           count(*) FILTER (WHERE status IN ('queued', 'sending')) AS pending,
           count(*) FILTER (WHERE status = 'sent') AS sent,
           count(*) FILTER (WHERE status = 'dry_run') AS dry_run,
           count(*) FILTER (WHERE status = 'failed') AS failed,
           {counts},
           count(to_open) AS timed_opens,
           percentile_cont(ARRAY[0.5, 0.9, 0.99]) WITHIN GROUP (ORDER BY to_open) AS to_open
    FROM per GROUP BY {grouping}
)
SELECT g.*, (SELECT COALESCE(jsonb_object_agg(kind, n), '{{}}')
             FROM (SELECT p.skip_kind AS kind, count(*) AS n FROM per p
                   WHERE p.skip_kind IS NOT NULL AND {same_group} GROUP BY 1) k) AS skipped
FROM grouped g
ORDER BY g.total DESC, g.template_version NULLS FIRST, g.variant NULLS FIRST
"""


_STATEMENTS = {scope: _statement(scope) for scope in _SCOPES}


@dataclass(frozen=True)
class TimeToOpen:
    """Seconds from a message's sending to a person's first open, over `opens` opened messages."""

    opens: int
    p50: float | None
    p90: float | None
    p99: float | None


@dataclass(frozen=True)
class Figures:
    """One group of messages: all of the scope, or one (template_version, variant) of a template."""

    template_version: int | None
    variant: str | None
    messages: int
    pending: int  # queued or being sent
    sent: int
    dry_run: int
    failed: int
    skipped: dict[str, int]  # by kind of reason: "recipient suppressed", "too late", …
    tracked: dict[str, int]  # TRACKED → messages
    time_to_open: TimeToOpen
    rates: dict[str, float] = field(init=False)  # TRACKED → share of `sent`

    def __post_init__(self) -> None:
        rates = {name: round(count / self.sent, 4) if self.sent else 0.0 for name, count in self.tracked.items()}
        object.__setattr__(self, "rates", rates)

    @classmethod
    def of(cls, row: asyncpg.Record) -> Figures:
        quantiles = row["to_open"] or [None, None, None]
        return cls(
            template_version=row["template_version"], variant=row["variant"], messages=row["messages"],
            pending=row["pending"], sent=row["sent"], dry_run=row["dry_run"], failed=row["failed"],
            skipped=dict(sorted(json.loads(row["skipped"]).items())),
            tracked={name: row[name] for name in TRACKED},
            time_to_open=TimeToOpen(row["timed_opens"], *quantiles))


@dataclass(frozen=True)
class Report:
    totals: Figures
    breakdown: list[Figures]  # a template's, per (template_version, variant); empty for other scopes


class Analytics:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def report(self, scope: Scope, name: str | None = None, *, since: datetime | None = None,
                     until: datetime | None = None) -> Report:
        """The figures of the messages of `scope` (`name`: the template, journey kind or campaign)
        created in [since, until)."""
        if (scope == "overall") != (name is None):
            raise ValueError(f"scope {scope!r} {'takes no' if scope == 'overall' else 'needs a'} name")
        rows = await self.pool.fetch(_STATEMENTS[scope], since, until, name)
        totals, *breakdown = [Figures.of(row) for row in rows]
        return Report(totals, breakdown)

    async def known(self, scope: Scope, name: str, kinds: frozenset[str]) -> bool:
        """Whether `name` is something of that scope: a campaign with a lead; a journey kind the
        service runs (`kinds`) or has messages of; a template with messages or saved versions.
        (Whether a file template exists is the caller's to say, through `kinds`.)"""
        if scope == "campaign":
            return await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM leads WHERE campaign = $1) "
                                            "OR EXISTS (SELECT 1 FROM campaigns WHERE campaign_id = $1)", name)
        if name in kinds:
            return True
        if scope == "journey":
            return await self.pool.fetchval(
                "SELECT EXISTS (SELECT 1 FROM messages WHERE journey = $1) "
                "OR EXISTS (SELECT 1 FROM journey_definitions WHERE name = $1)", name)
        if await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE template = $1)", name):
            return True
        try:  # templates saved through the API (migration 012)
            return await self.pool.fetchval("SELECT EXISTS (SELECT 1 FROM template_versions WHERE name = $1)", name)
        except asyncpg.UndefinedTableError:
            return False


def as_dict(figures: Figures) -> dict[str, Any]:
    """The figures as the API shows them (flat counts, `rates`, `time_to_open`)."""
    return {"template_version": figures.template_version, "variant": figures.variant,
            "messages": figures.messages, "pending": figures.pending, "sent": figures.sent,
            "dry_run": figures.dry_run, "failed": figures.failed, "skipped": figures.skipped,
            **figures.tracked, "rates": figures.rates, "time_to_open": vars(figures.time_to_open)}
