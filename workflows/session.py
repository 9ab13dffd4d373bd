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

with workflow.unsafe.imports_passed_through():
    from workflows import session_rules as rules
    from workflows.blocks import run_plan, send, with_overrides
    from workflows.models import (
        Attendee,
        ClassSession,
        PlannedStep,
        Recipient,
        SendRequest,
        SendStatus,
        SessionEvent,
        SessionInput,
        SessionState,
        SessionStatus,
        StepKind,
    )
    from workflows.search import publish

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
        self.policy = journey.policy
        self.session: ClassSession | None = None
        self.state = SessionState(session_id=journey.session_id, status=SessionStatus.AWAITING_START,
                                  policy=journey.policy)
        self.awaiting_since = workflow.now()
        self.revision = 0
        if journey.session is not None:
            self._start(journey.session)

    @workflow.run
    async def run(self, journey: SessionInput) -> SessionState:
        await run_plan(self)
        await workflow.wait_condition(workflow.all_handlers_finished)
        return self.state

    @workflow.signal
    def begin(self, session: ClassSession) -> None:
        if self.session is None:
            self._start(session)

    @workflow.signal
    def event(self, event: SessionEvent) -> None:
        unasked = (event.kind == "checkin_answer" and "checkin" not in self.state.steps_done
                   and workflow.patched(CHECKIN_ONLY_WHEN_ASKED))
        if rules.apply_event(self.state, event, workflow.now(), checkin_must_be_asked=unasked).applied:
            self.revision += 1

    @workflow.query
    def state_query(self) -> SessionState:
        return self.state

    def _start(self, session: ClassSession) -> None:
        self.session = session
        self.policy = self.state.policy = with_overrides(self.policy, session.policy)
        rules.start(self.state, session)
        self.revision += 1

    def _plan(self) -> PlannedStep | None:
        first = bool(self.session and self.session.tutor.first_session)
        step = rules.next_step(self.state, self.policy, self.awaiting_since, workflow.now(), first)
        self._show(step)
        return step

    async def _take(self, step: PlannedStep) -> None:
        state = self.state
        if step.kind == StepKind.ABANDON:
            state.status = SessionStatus.ABANDONED
        elif step.kind == StepKind.COMPLETE:
            state.status = SessionStatus.COMPLETED
        elif step.kind == StepKind.END:
            state.status = SessionStatus.ENDED
        elif step.kind == StepKind.NOTICE:
            state.notice_pending = False
            await self._fan_out("cancelled", "session_cancelled", step, state.roster)
        elif step.kind == StepKind.RECORDING:
            state.recording_pending = False
            await self._fan_out("recording", "session_recording", step, state.roster)
        elif step.kind == StepKind.FEEDBACK:
            waiting = [a for a in state.roster if a.attendee_id not in state.feedback_from]
            await self._fan_out("feedback", "session_feedback", step, waiting)
        elif step.kind == StepKind.CHECKIN:
            state.steps_done.append("checkin")
            assert self.session is not None
            tutor = self.session.tutor
            await self._send_one("checkin", "session_checkin", step,
                                 Recipient(email=tutor.email, name=tutor.name, time_zone=tutor.time_zone))
        elif step.kind == StepKind.ESCALATE:
            state.escalation_pending = False
            assert self.session is not None
            if self.session.manager_email is None:
                rules.record_skip(state, rules.key(state.session_id, "escalation"),
                                  "negative check-in answer, but the session names no manager_email", workflow.now())
            else:
                await self._send_one("escalation", "session_escalation", step,
                                     Recipient(email=self.session.manager_email, name="Manager"))
        else:
            assert state.starts_at is not None
            await self._fan_out(rules.reminder_step(state.starts_at, state.starts_at - step.at),
                                "session_reminder", step, state.roster)

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
        if status in (SendStatus.SENT, SendStatus.DRY_RUN):
            self.state.sent.append(key)

    async def _send_one(self, name: str, template: str, step: PlannedStep, recipient: Recipient) -> None:
        key = rules.key(self.state.session_id, name)
        if await send(self._request(key, template, step, recipient, "email", None), self._skip) in (
                SendStatus.SENT, SendStatus.DRY_RUN):
            self.state.sent.append(key)

    def _skip(self, key: str, reason: str) -> None:
        rules.record_skip(self.state, key, reason, workflow.now())

    def _request(self, key: str, template: str, step: PlannedStep, recipient: Recipient, channel: str,
                 phone: str | None) -> SendRequest:
        session, state = self.session, self.state
        assert session is not None
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

    def _show(self, step: PlannedStep | None) -> None:
        state = self.state
        state.next_step = step
        publish(journey="session", entity_id=state.session_id, stage=state.status.value,
                next_action_at=step.at if step else None, recipient=state.tutor_email, group=state.course)
        lines = [f"**Session {state.session_id}** {state.title or ''} — {state.status.value}",
                 f"roster: {len(state.roster)} · messages sent: {len(state.sent)}"]
        lines.append(f"next: {step.label}" if step else "next: nothing, the journey has ended")
        for skip in state.skips[-3:]:
            lines.append(f"skipped {skip.step}: {skip.reason}")
        workflow.set_current_details("\n\n".join(lines))


__all__ = ["SessionJourney", "workflow_id"]
