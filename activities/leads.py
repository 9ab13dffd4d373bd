"""The lead journey's one bookkeeping activity: record how a lead ended, for campaign stats."""

from __future__ import annotations

from temporalio import activity

from activities.store import Leads
from workflows.contracts import RECORD_LEAD_END
from workflows.lead.models import LeadState


class LeadActivities:
    def __init__(self, leads: Leads) -> None:
        self.leads = leads

    @activity.defn(name=RECORD_LEAD_END)
    async def record_lead_end(self, state: LeadState) -> None:
        """Idempotent upsert: a retry writes the same row."""
        await self.leads.record_end(state.lead_id, state.campaign or "", state.contact_email or "",
                                    state.status.value, state.conversion_reference)
