"""The audit log: who changed what, written in the transaction that makes the change.

Every administrative change (webhooks registered or deleted, and deletions,
retention and alias moves) calls ``record`` before its commit, so a change
is never without its row and a row never outlives a rolled-back change.
"""

from __future__ import annotations

from typing import Any

from sqlmodel import Session

from app.service.tables import AuditEvent


def record(
    session: Session, actor: str, action: str, target_type: str, target_id: str, detail: dict[str, Any] | None = None
) -> AuditEvent:
    """Add one audit row to the session's transaction (the caller commits).

    ``actor`` is the API key's fingerprint ("" when the API is open), ``action`` a dotted verb
    (``webhook.create``), ``detail`` JSON-able facts about the change (never a secret).
    """
    event = AuditEvent(
        actor=actor, action=action, target_type=target_type, target_id=target_id, detail=dict(detail or {})
    )
    session.add(event)
    return event
