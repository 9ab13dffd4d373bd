"""The class-session journey (seeds 003 and 004): one workflow per session, id `session-{id}`.

SCHEDULED  reminders at starts_at − each offset (24 h, 15 min) to every attendee on the roster at
           that moment, on each of their channels (email, webhook), one key per attendee and channel;
           at ends_at → ENDED.
ENDED      a recording event notifies the roster with the watch link; a feedback reminder at end
           + 24 h (never after end + 48 h) to whoever sent no feedback; after a tutor's first
           session a check-in at end + 2 h whose negative answer is escalated to the manager;
           closes after `stay_open_for`.
Events     add/remove attendee, reschedule (every pending reminder re-planned in place), cancel
           (the roster is told once), recording_available, feedback, checkin_answer, complete.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from datetime import datetime, timedelta

from pydantic import BaseModel
from temporalio import workflow

from workflows.contracts import CHANGE_ROSTER, FAN_OUT, Recipient, SendRequest
from workflows.core.events import fingerprint, fingerprinted, id_taken, log_outcome
from workflows.core.send import SEND_RETRY, SEND_TIMEOUT, send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import REFUSED, EventOutcome, PlannedStep, StepKind, unreachable
from workflows.session import rules
from workflows.session.models import (
    Attendee,
    CheckinAnswer,
    ClassSession,
    FanOut,
    FanOutReport,
    RosterChange,
    RosterReport,
    SessionEvent,
    SessionInput,
    SessionState,
    SessionStatus,
)

FAN_OUT_CHUNK = 20  # sends in flight at once; a cancel between chunks stops the rest
# Journeys that began before this rule replay without it: a fan-out went on after `complete`.
FAN_OUT_STOPS_WHEN_CLOSED = "fan-out-stops-when-closed"
# … and took a check-in answer even where none was asked (not a first session): now refused.
CHECKIN_ONLY_WHEN_ASKED = "checkin-only-when-asked"
# … and kept the roster in the workflow's state, one send activity per attendee and channel; now
# the roster is a table (any size, changed by an activity) and a fan-out sends a chunk per activity.
ROSTER_IN_DATABASE = "roster-in-database"
# … and applied an event whose event_id a roster change still in flight had taken (a cancel under an
# add_attendee's id): now refused as a conflict, like a reuse of an id already applied.
EVENT_ID_IN_FLIGHT = "event-id-in-flight"
FAN_OUT_TIMEOUT = timedelta(minutes=5)  # a chunk of up to 1,000 attendees


def workflow_id(session_id: str) -> str:
    return f"session-{session_id}"


Targets = list[tuple[Attendee, str]]  # (attendee, channel): one message each


async def take(state: SessionState, step: PlannedStep, session: BaseModel | None, now: Callable[[], datetime],
               fan_out: Callable[[str, str, PlannedStep, list[Attendee], bool], Awaitable[None]],
               send_one: Callable[[str, str, PlannedStep, Recipient], Awaitable[None]],
               store_roster: Callable[[], Awaitable[None]]) -> None:
    """Take the step the loop woke for; `session` is the start. What goes out is passed in: the
    workflow's activities, or in the rules' tests sends on a fake clock with events arriving meanwhile."""

    async def to_attendees(name: str, template: str, attendees: list[Attendee], without_feedback: bool = False):
        if name not in state.steps_done:
            state.steps_done.append(name)
        await fan_out(name, template, step, attendees, without_feedback)

    match step.kind:
        case StepKind.ROSTER:
            await store_roster()
        case StepKind.ABANDON:
            state.status = SessionStatus.ABANDONED
        case StepKind.COMPLETE:
            state.status = SessionStatus.COMPLETED
        case StepKind.END:
            state.status = SessionStatus.ENDED
        case StepKind.NOTICE:
            state.notice_pending = False
            await to_attendees("cancelled", "session_cancelled", state.roster)
        case StepKind.RECORDING:
            state.recording_pending = False
            await to_attendees("recording", "session_recording", state.roster)
        case StepKind.FEEDBACK:
            waiting = [a for a in state.roster if a.attendee_id not in state.feedback_from]
            await to_attendees("feedback", "session_feedback", waiting, without_feedback=True)
        case StepKind.CHECKIN:
            state.steps_done.append("checkin")
            assert isinstance(session, ClassSession)
            tutor = session.tutor
            await send_one("checkin", "session_checkin", step,
                           Recipient(email=tutor.email, name=tutor.name, time_zone=tutor.time_zone))
        case StepKind.ESCALATE:
            state.escalation_pending = False
            assert isinstance(session, ClassSession)
            if session.manager_email is None:
                rules.record_skip(state, rules.key(state.session_id, "escalation"),
                                  "negative check-in answer, but the session names no manager_email", now())
            else:
                await send_one("escalation", "session_escalation", step,
                               Recipient(email=session.manager_email, name="Manager"))
        case StepKind.REMINDER:
            assert state.starts_at is not None
            await to_attendees(rules.reminder_step(state.starts_at, state.starts_at - step.at), "session_reminder",
                               state.roster)
        case _:
            unreachable(step)


async def fan_out_in_chunks(state: SessionState, name: str, step: PlannedStep, attendees: list[Attendee],
                            send: Callable[[Targets], Awaitable[object]], now: Callable[[], datetime],
                            chunk_size: int = FAN_OUT_CHUNK,
                            stops_when_closed: Callable[[], bool] = lambda: True) -> None:
    """The roster in the state: `send(chunk)` sends a chunk's messages together; before each chunk
    the halt rules are asked again, and who was removed or gave feedback meanwhile is passed over."""
    targets = [(a, channel) for a in list(attendees) for channel in a.channels]
    starts_at = state.starts_at
    for begin in range(0, len(targets), chunk_size):
        chunk = targets[begin:begin + chunk_size]
        halted = rules.fan_out_halted(state, step, starts_at, now(), stops_when_closed)
        sending = []
        for attendee, channel in chunk:
            why = halted or rules.passed_over(state, step, attendee.attendee_id)
            if why:
                rules.record_skip(state, rules.key(state.session_id, name, attendee.attendee_id, channel), why, now())
            else:
                sending.append((attendee, channel))
        await send(sending)


@workflow.defn
class SessionJourney:
    @workflow.init
    def __init__(self, journey: SessionInput) -> None:
        state = SessionState(session_id=journey.session_id, status=SessionStatus.AWAITING_START, policy=journey.policy)
        self.roster_lock = asyncio.Lock()  # roster changes apply one at a time, in the order they arrived
        self.in_flight: dict[str, str] = {}  # event_id → fingerprint of a roster change not yet applied
        if journey.session is not None and journey.state is None:  # a start in the input: decide before it applies
            self._decide_roster_store(state)
        self.core = JourneyCore("session", journey.session_id, rules, journey.policy, state, journey.session,
                                journey.state, journey.awaiting_since, apply=self._apply, details=self._details,
                                recipient=lambda: self.state.tutor_email, group=lambda: self.state.course,
                                facts=lambda: ["checkin.negative"] if self.state.checkin_answer is False else [])

    @property
    def state(self) -> SessionState:
        return self.core.state

    @workflow.run
    async def run(self, journey: SessionInput) -> SessionState:
        await self.core.run(self._take, self._carry)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.update
    def start_journey(self, session: ClassSession) -> Reply[SessionState]:
        self._roster_in_database()
        return self.core.started(session)

    @workflow.update
    async def apply_event(self, event: SessionEvent) -> Reply[SessionState]:
        if (taken := self._taken_in_flight(event)) is not None:
            self.core.updates += 1
            return self.core.reply(event, taken)
        if isinstance(event, rules.ROSTER_EVENTS) and self._roster_in_database():
            self.core.updates += 1
            return self.core.reply(event, await self._roster_event(event))
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: SessionEvent) -> None:
        if event.event_id and (taken := id_taken(event.event_id, self.in_flight.get(event.event_id), event)):
            self.core.refuse(taken)
        if isinstance(event, rules.ROSTER_EVENTS) and self.state.roster_store != "state":  # a validator never patches
            outcome = rules.screen_roster_event(self.state.model_copy(deep=True), event, workflow.now())
            if outcome is not None and outcome.code in REFUSED:
                self.core.refuse(outcome)
            return
        self.core.screen(event)

    @workflow.signal
    def begin(self, session: ClassSession) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self._roster_in_database()
        self.core.begin(session)

    @workflow.signal
    async def event(self, event: SessionEvent) -> None:
        if self._taken_in_flight(event) is not None:
            return
        if isinstance(event, rules.ROSTER_EVENTS) and self._roster_in_database():
            await self._roster_event(event)
        else:
            self.core.apply(event)

    @workflow.query
    def state_query(self) -> SessionState:
        return self.state

    def _roster_in_database(self) -> bool:
        return self._decide_roster_store(self.state)

    @staticmethod
    def _decide_roster_store(state: SessionState) -> bool:
        """Decided once, at the journey's first start or event: histories recorded before the
        roster left the state replay with it in the state."""
        if state.roster_store is None:
            state.roster_store = "database" if workflow.patched(ROSTER_IN_DATABASE) else "state"
        return state.roster_store == "database"

    def _taken_in_flight(self, event: SessionEvent) -> EventOutcome | None:
        """A refusal (logged) when a roster change still in flight holds this event's id for another event."""
        if not event.event_id or (taken := id_taken(event.event_id, self.in_flight.get(event.event_id), event)) is None:
            return None
        if not workflow.patched(EVENT_ID_IN_FLIGHT):
            return None
        log_outcome(self.state, taken)
        return taken

    async def _roster_event(self, event: SessionEvent) -> EventOutcome:
        """Add, remove or mark feedback in the roster table, one at a time in the order events
        arrive: screened once it is its turn (a copy in flight twice is a duplicate, an add queued
        behind a cancel is refused), so each reported size is the latest and a remove follows its add.
        Its event_id is taken from the moment it arrives."""
        holds = bool(event.event_id) and event.event_id not in self.in_flight
        if holds:
            self.in_flight[event.event_id] = fingerprint(event)
        try:
            return await self._change_in_turn(event)
        finally:
            if holds:
                del self.in_flight[event.event_id]

    async def _change_in_turn(self, event: SessionEvent) -> EventOutcome:
        async with self.roster_lock:
            state = self.state
            if (screened := rules.screen_roster_event(state, event, workflow.now())) is not None:
                return screened
            report = await self._change_roster(rules.roster_change(state, event),
                                               f"{event.kind} ({event.dedupe_key()})")
            outcome = fingerprinted(state, event, rules.roster_outcome(state, event, report.changed))
        if outcome.applied:
            self.core.revision += 1
        return outcome

    async def _change_roster(self, change: RosterChange, summary: str) -> RosterReport:
        """The caller holds `roster_lock`."""
        report = await workflow.execute_activity(
            CHANGE_ROSTER, change, result_type=RosterReport, start_to_close_timeout=SEND_TIMEOUT,
            retry_policy=SEND_RETRY, summary=summary)
        self.state.roster_size = report.members
        return report

    def _apply(self, state: SessionState, event: SessionEvent, validating: bool):
        # A validator never marks a patch (it does not run on replay): it screens by today's rule.
        unasked = (isinstance(event, CheckinAnswer) and "checkin" not in state.steps_done
                   and (validating or workflow.patched(CHECKIN_ONLY_WHEN_ASKED)))
        return rules.apply_event(state, event, self.core.policy, workflow.now(), checkin_must_be_asked=unasked)

    async def _take(self, step: PlannedStep) -> None:
        await take(self.state, step, self.core.start, workflow.now, self._fan_out, self._send_one, self._store_roster)

    async def _store_roster(self) -> None:
        state = self.state
        async with self.roster_lock:
            pending = state.roster_pending
            await self._change_roster(RosterChange(session_id=state.session_id, add=pending,
                                                   from_start=True), f"store the start's roster ({len(pending)})")
            state.roster_pending = []

    @property
    def _session(self) -> ClassSession:
        session = self.core.start
        assert isinstance(session, ClassSession)
        return session

    async def _fan_out(self, name: str, template: str, step: PlannedStep, attendees: list[Attendee],
                       without_feedback: bool = False) -> None:
        """One send per attendee and channel, a chunk at a time. A reminder whose class was
        cancelled or moved meanwhile stops, and so does anything but the cancellation notice once
        the session is closed: the rest are recorded as skipped, never sent."""
        if rules.in_database(self.state):
            return await self._fan_out_by_chunks(name, template, step, without_feedback)
        await fan_out_in_chunks(
            self.state, name, step, attendees,
            lambda chunk: asyncio.gather(*(self._send_to(name, template, step, attendee, channel)
                                           for attendee, channel in chunk)),
            workflow.now, stops_when_closed=lambda: workflow.patched(FAN_OUT_STOPS_WHEN_CLOSED))

    async def _fan_out_by_chunks(self, name: str, template: str, step: PlannedStep, without_feedback: bool) -> None:
        """The roster in the database: one activity per chunk of attendees, in attendee_id order;
        between chunks the same halt rules, the rest recorded as one skip with its count."""
        state, policy = self.state, self.core.policy
        starts_at, after, done, remaining = state.starts_at, None, 0, rules.members(state)
        context = self._context()
        while True:
            halted = rules.fan_out_halted(state, step, starts_at, workflow.now())
            if halted:
                rules.record_skip(state, rules.key(state.session_id, name),
                                  f"{halted}: {remaining} attendee(s) after the first {done} not sent it",
                                  workflow.now())
                return
            report = await workflow.execute_activity(
                FAN_OUT, FanOut(session_id=state.session_id, step=name, template=template, context=context,
                                due_at=step.at, not_after=step.not_after, after=after, limit=policy.fan_out_chunk,
                                without_feedback=without_feedback),
                result_type=FanOutReport, start_to_close_timeout=FAN_OUT_TIMEOUT, retry_policy=SEND_RETRY,
                summary=f"{name} to attendees {'after ' + after if after else 'from the first'}")
            done, remaining = done + report.attendees, report.remaining
            state.messages_sent += report.sent
            for reason, count in report.skipped.items():
                rules.record_skip(state, rules.key(state.session_id, name), f"{count} message(s): {reason}",
                                  workflow.now())
            if report.last is None:
                return
            after = report.last

    async def _send_to(self, name: str, template: str, step: PlannedStep, attendee: Attendee, channel: str) -> None:
        key = rules.key(self.state.session_id, name, attendee.attendee_id, channel)
        status = await send(self._request(key, template, step, attendee.recipient(), channel, attendee.phone,
                                          deferrable=False), self._skip)  # a fan-out never waits for one person
        if status.delivered:
            self.state.sent.append(key)

    async def _send_one(self, name: str, template: str, step: PlannedStep, recipient: Recipient) -> None:
        key = rules.key(self.state.session_id, name)
        if (await send(self._request(key, template, step, recipient, "email", None), self._skip,
                       self.core.waiting())).delivered:
            self.state.sent.append(key)

    def _skip(self, key: str, reason: str) -> None:
        rules.record_skip(self.state, key, reason, workflow.now())

    def _request(self, key: str, template: str, step: PlannedStep, recipient: Recipient, channel: str,
                 phone: str | None, deferrable: bool = True) -> SendRequest:
        return SendRequest(
            key=key, journey="session", entity_id=self.state.session_id, template=template, recipient=recipient,
            channel=channel, phone=phone, context={"name": recipient.name, **self._context()},
            due_at=step.at, not_after=step.not_after, deferrable=deferrable,
        )

    def _context(self) -> dict:
        """What every message of this session shows (a fan-out chunk adds each attendee's name)."""
        session, state = self._session, self.state
        return {
            "title": session.title, "tutor_name": session.tutor.name,
            "starts_at": state.starts_at.isoformat() if state.starts_at else None,
            "ends_at": state.ends_at.isoformat() if state.ends_at else None,
            "join_url": session.join_url, "feedback_url": session.feedback_url,
            "recording_url": state.recording_url, "checkin_comment": state.checkin_comment,
            "session_id": state.session_id,
        }

    def _carry(self) -> SessionInput:
        session = self.core.start
        if session is not None and rules.in_database(self.state):  # stored (or pending in the state): not twice
            session = session.model_copy(update={"attendees": []})
        return SessionInput(session_id=self.state.session_id, session=session, policy=self.core.policy,
                            state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        sent = state.messages_sent + len(state.sent)
        return [f"**Session {state.session_id}** {state.title or ''} — {state.status.value}",
                f"roster: {rules.members(state)} · messages sent: {sent}"]
