"""A class session's roster in PostgreSQL, and the fan-out over it: one activity call writes a
roster change, another sends one step to the next chunk of attendees (keyset order), each message
through the one send step, so preferences, suppressions and the outbox's idempotency all apply and
a retried chunk sends nobody twice."""

from __future__ import annotations

from collections import Counter

from temporalio import activity

from activities.outgoing import reason_kind
from activities.send import SendActivities, sent_in_batch
from activities.store import Roster
from workflows.contracts import CHANGE_ROSTER, FAN_OUT, SendRequest, SendStatus
from workflows.session import rules
from workflows.session.models import Attendee, FanOut, FanOutReport, RosterChange, RosterReport

SENDS_IN_FLIGHT = 20  # per chunk: enough to hide SMTP round trips, few enough for a small server


class RosterActivities:
    def __init__(self, roster: Roster, sends: SendActivities) -> None:
        self.roster, self.sends = roster, sends

    @activity.defn(name=CHANGE_ROSTER)
    async def change_roster(self, change: RosterChange) -> RosterReport:
        """Idempotent: the same change again reports `changed: 0`."""
        changed, members = 0, None
        if change.add:
            counts = await self.roster.add(change.session_id, [a.model_dump(mode="json") for a in change.add],
                                           keep_removed=change.from_start)
            changed, members = changed + counts.changed, counts.members
        if change.remove:
            counts = await self.roster.remove(change.session_id, change.remove)
            changed, members = changed + counts.changed, counts.members
        if change.feedback:
            counts = await self.roster.mark_feedback(change.session_id, change.feedback)
            changed, members = changed + counts.changed, counts.members
        if members is None:
            members = await self.roster.size(change.session_id)
        return RosterReport(changed=changed, members=members)

    @activity.defn(name=FAN_OUT)
    async def fan_out(self, chunk: FanOut) -> FanOutReport:
        """Send one step to the next `chunk.limit` attendees. A message no retry can fix (refused,
        a broken template) is counted and the rest go on; a transient failure fails the chunk,
        and its retry finds every message already sent recorded as done."""
        page = await self.roster.page(chunk.session_id, chunk.after, chunk.limit + 1,
                                      without_feedback=chunk.without_feedback)
        attendees = [Attendee.model_validate(row) for row in page[:chunk.limit]]

        async def one(attendee: Attendee, channel: str) -> tuple[SendStatus, str | None]:
            request = SendRequest(
                key=rules.key(chunk.session_id, chunk.step, attendee.attendee_id, channel), journey="session",
                entity_id=chunk.session_id, template=chunk.template, recipient=attendee.recipient(),
                context={**chunk.context, "name": attendee.name}, channel=channel, phone=attendee.phone,
                due_at=chunk.due_at, not_after=chunk.not_after,
            )
            result = await self.sends.send_counted(request)
            return result.status, result.reason

        outcomes = await sent_in_batch((one(a, channel) for a in attendees for channel in a.channels),
                                       SENDS_IN_FLIGHT)
        sent = sum(1 for status, _ in outcomes if status.delivered)
        skipped = Counter(reason_kind(reason or status.value) for status, reason in outcomes if not status.delivered)
        more = len(page) > chunk.limit
        remaining = 0
        if more:
            remaining = await self.roster.count_after(chunk.session_id, attendees[-1].attendee_id,
                                                      without_feedback=chunk.without_feedback)
        return FanOutReport(attendees=len(attendees), sent=sent, skipped=dict(skipped),
                            last=attendees[-1].attendee_id if more else None, remaining=remaining)

