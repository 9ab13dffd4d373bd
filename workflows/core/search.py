"""Search attributes: how operators find journeys in the Web UI and how bulk actions select them.

Register them once per namespace (`followups dev` and the tests do it; production: the compose
namespace job or `temporal operator search-attribute create`).
"""

from __future__ import annotations

from datetime import datetime

from temporalio import workflow
from temporalio.common import SearchAttributeKey, SearchAttributePair, TypedSearchAttributes

JOURNEY = SearchAttributeKey.for_keyword("Journey")
ENTITY_ID = SearchAttributeKey.for_keyword("EntityId")
STAGE = SearchAttributeKey.for_keyword("Stage")
NEXT_ACTION_AT = SearchAttributeKey.for_datetime("NextActionAt")
RECIPIENT = SearchAttributeKey.for_keyword("Recipient")
GROUP = SearchAttributeKey.for_keyword("JourneyGroup")  # a session's course, a lead's campaign: bulk actions select by it

ALL_KEYS = (JOURNEY, ENTITY_ID, STAGE, NEXT_ACTION_AT, RECIPIENT, GROUP)


def at_start(journey: str, entity_id: str) -> TypedSearchAttributes:
    return TypedSearchAttributes([SearchAttributePair(JOURNEY, journey), SearchAttributePair(ENTITY_ID, entity_id)])


def publish(
    *, journey: str, entity_id: str, stage: str, next_action_at: datetime | None, recipient: str | None,
    group: str | None = None,
) -> None:
    """Upsert only what changed: each upsert is a history event."""
    current = workflow.info().typed_search_attributes
    updates = []
    wanted = {JOURNEY: journey, ENTITY_ID: entity_id, STAGE: stage, RECIPIENT: recipient, GROUP: group}
    for key, value in wanted.items():
        if value is not None and current.get(key) != value:
            updates.append(key.value_set(value))
    if next_action_at is None:
        if current.get(NEXT_ACTION_AT) is not None:
            updates.append(NEXT_ACTION_AT.value_unset())
    elif current.get(NEXT_ACTION_AT) != next_action_at:
        updates.append(NEXT_ACTION_AT.value_set(next_action_at))
    if updates:
        workflow.upsert_search_attributes(updates)
