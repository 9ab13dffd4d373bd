"""CSV import of leads: one journey per good row, every bad row reported with its line and reason.

Columns (header row, any order, case-insensitive): `lead_id`, `email`, `name` (required);
`company`, `time_zone`, `offer_url`, `campaign` (optional; `campaign` may instead be given for the
whole file). Unknown columns are ignored and listed. A row is never half-imported: it is
validated whole, then its journey started; re-importing a file starts nothing twice (leads already
on record are counted, not started again).
"""

from __future__ import annotations

import asyncio
import csv
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field

from pydantic import ValidationError

from activities.store import Leads
from starter.service import Journeys
from workflows.lead.models import Lead

REQUIRED = ("lead_id", "email", "name")
OPTIONAL = ("company", "time_zone", "offer_url", "campaign")
CONCURRENT_STARTS = 200  # in-flight signal-with-start calls; the server's start rate is the bound


class BadFile(ValueError):
    """The file as a whole cannot be read (not CSV, no header, required columns missing)."""

    def __init__(self, reason: str, field: str = "file") -> None:
        super().__init__(reason)
        self.field = field


# A bad row: (line, field, reason). A plain tuple of plain values, which the garbage collector
# stops tracking: a file of 400,000 bad rows keeps that many, and full collections over as many
# tracked objects (a NamedTuple or a dataclass is one) stalled the API for 100 ms and more.
RowProblem = tuple[int, str, str]


@dataclass
class ImportReport:
    rows: int = 0
    started: int = 0
    already_imported: int = 0
    rejected: list[RowProblem] = field(default_factory=list)
    ignored_columns: list[str] = field(default_factory=list)


Parsed = tuple[list[tuple[int, Lead]], ImportReport]
ROWS_PER_TURN = 200  # rows validated between two turns of the event loop: a few ms of work


def parse(text: str, campaign: str | None, first_line: int = 1) -> Parsed:
    """Validate every row. `first_line` is the file line of the header (for chunked uploads)."""
    steps = _parse_in_steps(text, campaign, first_line)
    while (parsed := _advance(steps)) is None:
        pass
    return parsed


async def parse_cooperatively(text: str, campaign: str | None, first_line: int = 1) -> Parsed:
    """`parse`, handing the event loop back every ROWS_PER_TURN rows, so a file of 400,000 rows
    does not stall the API's other requests for the seconds it takes (a thread would: it holds
    the GIL for 5 ms at a time, and a request needs it many times)."""
    steps = _parse_in_steps(text, campaign, first_line)
    while (parsed := _advance(steps)) is None:
        await asyncio.sleep(0)
    return parsed


def _advance(steps: Generator[None, None, Parsed]) -> Parsed | None:
    """One more turn of the parse: its result once it is done, else None."""
    try:
        next(steps)
    except StopIteration as done:
        return done.value
    return None


def text_lines(text: str) -> Iterator[str]:
    """The text's lines, "\n" kept, one at a time (io.StringIO would copy the whole file at once,
    tens of ms for a large one, in one turn of the event loop)."""
    start, end = 0, len(text)
    while start < end:
        stop = text.find("\n", start)
        stop = end if stop == -1 else stop + 1
        yield text[start:stop]
        start = stop


def _parse_in_steps(text: str, campaign: str | None, first_line: int) -> Generator[None, None, Parsed]:
    report = ImportReport()
    try:
        sample = text[:4096]
        dialect = csv.Sniffer().sniff(sample, delimiters=",;\t") if sample.strip() else csv.excel
    except csv.Error:
        dialect = csv.excel
    reader = csv.reader(text_lines(text.lstrip("\ufeff")), dialect)
    try:
        header = next(reader)
    except StopIteration:
        raise BadFile("the file is empty: expected a header row with lead_id,email,name") from None
    except csv.Error as err:
        raise BadFile(f"not CSV: {err}") from None
    columns = [name.strip().lower() for name in header]
    missing = [name for name in REQUIRED if name not in columns]
    if missing:
        raise BadFile(f"missing column(s) {', '.join(missing)}; the header has {', '.join(columns) or 'nothing'}",
                      field="columns")
    if campaign is None and "campaign" not in columns:
        raise BadFile("no campaign: give one for the file or a campaign column", field="campaign")
    if len(set(columns)) != len(columns):
        raise BadFile("a column appears twice in the header", field="columns")
    report.ignored_columns = [name for name in columns if name not in REQUIRED + OPTIONAL]
    seen: dict[str, int] = {}
    leads: list[tuple[int, Lead]] = []
    line = first_line
    try:
        for count, values in enumerate(reader, start=1):
            if count % ROWS_PER_TURN == 0:
                yield
            line = first_line + reader.line_num - 1
            if not any(value.strip() for value in values):
                continue
            report.rows += 1
            if len(values) != len(columns):
                report.rejected.append((line, "row", f"{len(values)} values for {len(columns)} columns"))
                continue
            row = {name: value.strip() for name, value in zip(columns, values) if name in REQUIRED + OPTIONAL}
            lead_id = row["lead_id"]
            if lead_id in seen:
                report.rejected.append((line, "lead_id", f"duplicate of line {seen[lead_id]}"))
                continue
            try:
                lead = Lead(
                    lead_id=lead_id,
                    contact={"email": row["email"], "name": row["name"], "time_zone": row.get("time_zone") or None},
                    campaign=campaign or row.get("campaign", ""),
                    company=row.get("company") or None,
                    offer_url=row.get("offer_url") or None,
                )
            except ValidationError as err:
                problem = err.errors()[0]
                where = ".".join(str(part) for part in problem["loc"]).replace("contact.", "")
                report.rejected.append((line, where, problem["msg"]))
                continue
            seen[lead_id] = line
            leads.append((line, lead))
    except csv.Error as err:
        report.rejected.append((line + 1, "row", f"not CSV from here on: {err}"))
    return leads, report


async def start_all(journeys: Journeys, store: Leads, leads: list[tuple[int, Lead]], report: ImportReport,
                    progress: Callable[[int], None] | None = None) -> ImportReport:
    """Start the journeys of leads not on record yet, then record them; progress(n) after each."""
    known = await store.known([lead.lead_id for _, lead in leads])
    fresh = [lead for _, lead in leads if lead.lead_id not in known]
    report.already_imported += len(leads) - len(fresh)
    if progress and len(leads) != len(fresh):
        progress(len(leads) - len(fresh))
    gate = asyncio.Semaphore(CONCURRENT_STARTS)

    async def one(lead: Lead) -> None:
        async with gate:
            created = await journeys.start_new(lead)
        if created:
            report.started += 1
        else:
            report.already_imported += 1
        if progress:
            progress(1)

    for batch in (fresh[i:i + 1000] for i in range(0, len(fresh), 1000)):
        await asyncio.gather(*(one(lead) for lead in batch))
        await store.add_many([(lead.lead_id, lead.campaign, str(lead.contact.email)) for lead in batch])
    return report
