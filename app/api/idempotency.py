"""``Idempotency-Key``: a retried POST gets back what the first one created.

A key is scoped to the caller (the fingerprint of their API key) and the
route, and answers for ``RECOMB_IDEMPOTENCY_WINDOW_S`` after its first use.
Its record holds a hash of the request: the same key with another request
is a 422 naming the conflict, never a silent replay of something else. The
record is written in the transaction that creates the resource, so a key
never names nothing, and of two racing requests with one key only one
commits: the other's insert fails on the record's primary key, and it
replays the winner's resource.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

from sqlalchemy import delete
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from app.api.errors import unprocessable
from app.service.tables import IdempotencyRecord, utcnow

RowT = TypeVar("RowT", bound=SQLModel)


@dataclass(frozen=True)
class IdempotentRequest:
    """One POST: who sent it, where, under which key (None: not idempotent), and a hash of what it asked for."""

    owner: str
    route: str
    key: str | None
    request_sha256: str
    window_s: float

    @classmethod
    def of(cls, owner: str, route: str, key: str | None, content: bytes, window_s: float) -> IdempotentRequest:
        return cls(owner, route, key, hashlib.sha256(content).hexdigest(), window_s)

    def matches(self) -> tuple:
        """The WHERE clause of this request's record."""
        return (
            IdempotencyRecord.owner == self.owner,
            IdempotencyRecord.route == self.route,
            IdempotencyRecord.key == self.key,
        )

    def cutoff(self):
        """Records created before this have expired."""
        return utcnow() - timedelta(seconds=self.window_s)


def replay(session: Session, request: IdempotentRequest, model: type[RowT]) -> RowT | None:
    """The resource an earlier request with this key created, if the key is live; 422 if that request differed."""
    if request.key is None:
        return None
    record = session.exec(
        select(IdempotencyRecord).where(*request.matches(), IdempotencyRecord.created_at >= request.cutoff())
    ).first()
    if record is None:
        return None
    if record.request_sha256 != request.request_sha256:
        raise unprocessable(
            f"Idempotency-Key {request.key!r} was already used for a different request to {request.route}; "
            "send the same request to get its result, or use a new key"
        )
    return session.get(model, record.resource_id)


def commit_once(session: Session, request: IdempotentRequest, row: RowT, model: type[RowT]) -> tuple[RowT, bool]:
    """Commit ``row`` with its key's record; returns ``(row, True)``, or a racing twin's resource and False."""
    if request.key is not None:
        session.exec(
            delete(IdempotencyRecord).where(*request.matches(), IdempotencyRecord.created_at < request.cutoff())
        )  # an expired key is free again
        session.add(
            IdempotencyRecord(
                owner=request.owner,
                route=request.route,
                key=request.key,
                request_sha256=request.request_sha256,
                resource_id=row.id,  # type: ignore[attr-defined]  # every idempotent resource has a string id
            )
        )
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        winner = replay(session, request, model) if request.key is not None else None
        if winner is None:
            raise
        return winner, False
    return row, True  # sessions keep attributes across commits (expire_on_commit=False), so the row needs no reload
