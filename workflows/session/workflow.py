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

from temporalio import workflow

from workflows.contracts import Recipient, SendRequest
from workflows.core.send import send
from workflows.core.shell import JourneyCore, Reply
from workflows.core.steps import PlannedStep, StepKind, unreachable
from workflows.session import rules
from workflows.session.models import (
    Attendee,
    CheckinAnswer,
    ClassSession,
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


def workflow_id(session_id: str) -> str:
    return f"session-{session_id}"


@workflow.defn
class SessionJourney:
    @workflow.init
    def __init__(self, journey: SessionInput) -> None:
        state = SessionState(session_id=journey.session_id, status=SessionStatus.AWAITING_START, policy=journey.policy)
        self.core = JourneyCore("session", journey.session_id, rules, journey.policy, state, journey.session,
                                journey.state, journey.awaiting_since, apply=self._apply, details=self._details,
                                recipient=lambda: self.state.tutor_email, group=lambda: self.state.course)

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
        return self.core.started(session)

    @workflow.update
    def apply_event(self, event: SessionEvent) -> Reply[SessionState]:
        return self.core.applied(event)

    @apply_event.validator
    def _screen(self, event: SessionEvent) -> None:
        self.core.screen(event)

    @workflow.signal
    def begin(self, session: ClassSession) -> None:
        """The start as a signal: the durable fallback when no worker answers an update in time."""
        self.core.begin(session)

    @workflow.signal
    def event(self, event: SessionEvent) -> None:
        self.core.apply(event)

    @workflow.query
    def state_query(self) -> SessionState:
        return self.state

    def _apply(self, state: SessionState, event: SessionEvent, validating: bool):
        # A validator never marks a patch (it does not run on replay): it screens by today's rule.
        unasked = (isinstance(event, CheckinAnswer) and "checkin" not in state.steps_done
                   and (validating or workflow.patched(CHECKIN_ONLY_WHEN_ASKED)))
        return rules.apply_event(state, event, self.core.policy, workflow.now(), checkin_must_be_asked=unasked)

    async def _take(self, step: PlannedStep) -> None:
        state = self.state
        match step.kind:
            case StepKind.ABANDON:
                state.status = SessionStatus.ABANDONED
            case StepKind.COMPLETE:
                state.status = SessionStatus.COMPLETED
            case StepKind.END:
                state.status = SessionStatus.ENDED
            case StepKind.NOTICE:
                state.notice_pending = False
                await self._fan_out("cancelled", "session_cancelled", step, state.roster)
            case StepKind.RECORDING:
                state.recording_pending = False
                await self._fan_out("recording", "session_recording", step, state.roster)
            case StepKind.FEEDBACK:
                waiting = [a for a in state.roster if a.attendee_id not in state.feedback_from]
                await self._fan_out("feedback", "session_feedback", step, waiting)
            case StepKind.CHECKIN:
                state.steps_done.append("checkin")
                tutor = self._session.tutor
                await self._send_one("checkin", "session_checkin", step,
                                     Recipient(email=tutor.email, name=tutor.name, time_zone=tutor.time_zone))
            case StepKind.ESCALATE:
                state.escalation_pending = False
                if self._session.manager_email is None:
                    rules.record_skip(state, rules.key(state.session_id, "escalation"),
                                      "negative check-in answer, but the session names no manager_email",
                                      workflow.now())
                else:
                    await self._send_one("escalation", "session_escalation", step,
                                         Recipient(email=self._session.manager_email, name="Manager"))
            case StepKind.REMINDER:
                assert state.starts_at is not None
                await self._fan_out(rules.reminder_step(state.starts_at, state.starts_at - step.at),
                                    "session_reminder", step, state.roster)
            case _:
                unreachable(step)

    @property
    def _session(self) -> ClassSession:
        session = self.core.start
        assert isinstance(session, ClassSession)
        return session

    async def _fan_out(self, name: str, template: str, step: PlannedStep, attendees: list[Attendee]) -> None:
        """One send per attendee and channel, a chunk at a time. A reminder whose class was
        cancelled or moved meanwhile stops, and so does anything but the cancellation notice once
        the session is closed: the rest are recorded as skipped, never sent."""
        state = self.state
        if name not in state.steps_done:
            state.steps_done.append(name)
        targets = [(a, channel) for a in list(attendees) for channel in a.channels]
        starts_at = state.starts_at
        for begin in range(0, len(targets), FAN_OUT_CHUNK):
            chunk = targets[begin:begin + FAN_OUT_CHUNK]
            halted = rules.fan_out_halted(state, step, starts_at, workflow.now(),
                                          lambda: workflow.patched(FAN_OUT_STOPS_WHEN_CLOSED))
            sending = []
            for attendee, channel in chunk:
                why = halted or rules.passed_over(state, step, attendee.attendee_id)
                if why:
                    rules.record_skip(state, rules.key(state.session_id, name, attendee.attendee_id, channel),
                                      why, workflow.now())
                else:
                    sending.append((attendee, channel))
            await asyncio.gather(*(self._send_to(name, template, step, attendee, channel)
                                   for attendee, channel in sending))

    async def _send_to(self, name: str, template: str, step: PlannedStep, attendee: Attendee, channel: str) -> None:
        key = rules.key(self.state.session_id, name, attendee.attendee_id, channel)
        status = await send(self._request(key, template, step, attendee.recipient(), channel, attendee.phone),
                            self._skip)
        if status.delivered:
            self.state.sent.append(key)

    async def _send_one(self, name: str, template: str, step: PlannedStep, recipient: Recipient) -> None:
        key = rules.key(self.state.session_id, name)
        if (await send(self._request(key, template, step, recipient, "email", None), self._skip)).delivered:
            self.state.sent.append(key)

    def _skip(self, key: str, reason: str) -> None:
        rules.record_skip(self.state, key, reason, workflow.now())

    def _request(self, key: str, template: str, step: PlannedStep, recipient: Recipient, channel: str,
                 phone: str | None) -> SendRequest:
        session, state = self._session, self.state
        return SendRequest(
            key=key, journey="session", entity_id=state.session_id, template=template, recipient=recipient,
            channel=channel, phone=phone,
            context={
                "name": recipient.name, "title": session.title, "tutor_name": session.tutor.name,
                "starts_at": state.starts_at.isoformat() if state.starts_at else None,
                "ends_at": state.ends_at.isoformat() if state.ends_at else None,
                "join_url": session.join_url, "feedback_url": session.feedback_url,
                "recording_url": state.recording_url, "checkin_comment": state.checkin_comment,
                "session_id": state.session_id,
            },
            due_at=step.at, not_after=step.not_after,
        )

    def _carry(self) -> SessionInput:
        return SessionInput(session_id=self.state.session_id, session=self.core.start, policy=self.core.policy,
                            state=self.state, awaiting_since=self.core.awaiting_since)

    def _details(self) -> list[str]:
        state = self.state
        return [f"**Session {state.session_id}** {state.title or ''} — {state.status.value}",
                f"roster: {len(state.roster)} · messages sent: {len(state.sent)}"]
