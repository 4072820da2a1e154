"""FastAPI dependencies as ``Annotated`` aliases: settings, DB session, store, auth.

The trivial ones are ``async``: FastAPI runs a plain dependency in the thread
pool, a hop that costs more than reading an attribute. Anything that may
block (the database session) stays a plain function.
"""

from __future__ import annotations

import contextlib
import functools
import json
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime
from typing import Annotated, Any

import anyio
from celery import Celery
from fastapi import Depends, Header, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy import ColumnElement
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, col, exists, func, select
from sqlmodel.sql.expression import Select, SelectOfScalar

from app.api.errors import not_found, valid_id
from app.api.idempotency import IdempotentRequest
from app.api.middleware import caller_of, role_of
from app.api.schemas import MAX_OFFSET
from app.contracts.labels import MAX_TAGS, Experiment, Tag
from app.service.db import get_engine
from app.service.store import ArtifactStore, get_store
from app.service.tables import Job, ResourceType
from app.service.tables import Tag as TagRow
from app.settings import ROLES, Role, Settings


async def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


async def get_app_celery(request: Request) -> Celery:
    return request.app.state.celery


CeleryDep = Annotated[Celery, Depends(get_app_celery)]


async def get_session(request: Request, settings: SettingsDep) -> AsyncIterator[Session]:
    """A session for one request; it holds a pooled connection from its first query until it is closed.

    Made on the event loop (a session connects only when first used) and
    closed in a thread (closing returns the connection with a ROLLBACK), on
    a limiter of its own: a closing session frees a connection, so it never
    queues behind request threads that may be waiting for one. (How many
    requests hold a session at once is bounded by ``app.api.middleware``.)
    """
    session = Session(get_engine(settings), expire_on_commit=False)  # no connection yet: nothing blocks here
    try:
        yield session
    finally:
        await anyio.to_thread.run_sync(_close, session, limiter=request.app.state.session_close_limiter)


def _close(session: Session) -> None:
    # The database may have gone away after the response was made: the pool drops the dead
    # connection, and raising here would cut the client's keep-alive connection.
    with contextlib.suppress(OperationalError):
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


def get_artifact_store(settings: SettingsDep) -> ArtifactStore:
    return get_store(settings)


StoreDep = Annotated[ArtifactStore, Depends(get_artifact_store)]

_bearer = HTTPBearer(auto_error=False, description="required when RECOMB_API_KEYS is set")


async def get_caller(
    request: Request, _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]
) -> str:
    """The caller's API-key fingerprint ("" when the API is open).

    ``ApiKeyGate`` has already refused any request without a valid key,
    before its body was read; this dependency only reads who it let in, and
    declares the bearer scheme in the OpenAPI document.
    """
    return caller_of(request.scope)


AuthDep = Depends(get_caller)
CallerDep = Annotated[str, Depends(get_caller)]


@functools.cache  # one dependency per role, so FastAPI checks a role once per request however often it is named
def require_role(role: Role) -> Any:
    """A dependency that admits keys holding ``role`` or a higher one (read < submit < admin) and yields the
    caller's fingerprint; any other key gets 403 naming the role it has and the one the request needs.
    """
    needed = ROLES.index(role)

    async def caller_with_role(request: Request, caller: CallerDep) -> str:
        held = role_of(request.scope)
        if ROLES.index(held) < needed:
            raise HTTPException(
                status.HTTP_403_FORBIDDEN,
                f"this API key has the {held} role; {request.method} {request.url.path} needs {role} "
                f"(RECOMB_API_KEYS grants it as key:{role})",
            )
        return caller

    caller_with_role.__name__ = f"require_{role}_role"
    return Depends(caller_with_role)


# The caller's fingerprint, once the key's role allows the request.
SubmitterDep = Annotated[str, require_role("submit")]
AdminDep = Annotated[str, require_role("admin")]
IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=200,
        description="repeat a POST with the same key and body to get the first result back "
        "(per API key and route, for RECOMB_IDEMPOTENCY_WINDOW_S)",
    ),
]


class Idempotency:
    """The ``Idempotency-Key`` of a POST, scoped to its caller and route (see ``app.api.idempotency``)."""

    def __init__(self, owner: str, route: str, key: str | None, window_s: float) -> None:
        self.owner, self.route, self.key, self.window_s = owner, route, key, window_s

    def of(self, content: dict[str, Any]) -> IdempotentRequest:
        """This request, identified by ``content``: what it asks for, as JSON-able values."""
        canonical = json.dumps(content, sort_keys=True, separators=(",", ":"), default=str).encode()
        return IdempotentRequest.of(self.owner, self.route, self.key, canonical, self.window_s)


async def get_idempotency(
    request: Request, caller: CallerDep, settings: SettingsDep, key: IdempotencyKey = None
) -> Idempotency:
    return Idempotency(caller, f"{request.method} {request.url.path}", key, settings.idempotency_window_s)


IdempotencyDep = Annotated[Idempotency, Depends(get_idempotency)]


def require_existing_job(job_id: str, settings: SettingsDep) -> str:
    """The path's ``job_id`` if that job exists, else 404; checked in its own short session.

    For streaming routes: ``SessionDep`` would stay open for the whole
    response, and on SQLite an open transaction holds the write lock.
    """
    with Session(get_engine(settings)) as session:
        exists = valid_id(job_id) and session.get(Job, job_id) is not None
    if not exists:
        raise not_found("job", job_id)
    return job_id


ExistingJobId = Annotated[str, Depends(require_existing_job)]


class Pagination:
    """``limit`` and ``offset`` of a list request, newest rows first."""

    def __init__(
        self,
        limit: Annotated[int, Query(ge=1, le=500)] = 50,
        offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    ) -> None:
        self.limit, self.offset = limit, offset

    def page(
        self,
        session: Session,
        query: Select | SelectOfScalar,
        model: type[SQLModel],
        order_by: Sequence[ColumnElement] = (),
        newest_by: str = "created_at",
    ) -> dict:
        """``{items, total, limit, offset}`` of ``query``, ordered by ``order_by`` (default: newest first by the
        ``newest_by`` column), then primary key."""
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        table = model.__table__  # type: ignore[attr-defined]  # every listed table has a time column
        order = [*order_by] or [table.c[newest_by].desc()]
        items = session.exec(
            query.order_by(*order, *table.primary_key.columns).offset(self.offset).limit(self.limit)
        ).all()
        return {"items": list(items), "total": total, "limit": self.limit, "offset": self.offset}


PageDep = Annotated[Pagination, Depends()]


class LabelFilters:
    """The filters every list takes: experiment, tags (every one must match) and a creation-time window."""

    def __init__(
        self,
        experiment: Annotated[Experiment | None, Query(description="only rows filed under this experiment")] = None,
        tag: Annotated[
            list[Tag] | None,
            Query(max_length=MAX_TAGS, description="only rows with this tag; repeat it to require several"),
        ] = None,
        created_after: Annotated[
            datetime | None, Query(description="only rows created at or after this ISO 8601 time (UTC if no zone)")
        ] = None,
        created_before: Annotated[
            datetime | None, Query(description="only rows created before this ISO 8601 time (UTC if no zone)")
        ] = None,
    ) -> None:
        self.experiment, self.tags = experiment, list(dict.fromkeys(tag or []))
        self.created_after, self.created_before = _as_utc(created_after), _as_utc(created_before)

    def apply(
        self,
        query: Select | SelectOfScalar,
        model: type[SQLModel],
        resource_type: ResourceType,
        tagged_id: Any,
    ) -> Select | SelectOfScalar:
        """``query`` narrowed to the filters; ``tagged_id`` is the column naming the row whose tags count."""
        columns = model.__table__.c  # type: ignore[attr-defined]  # every listed table has experiment and created_at
        if self.experiment is not None:
            query = query.where(columns.experiment == self.experiment)
        for tag in self.tags:  # one indexed semi-join per tag
            query = query.where(
                exists().where(
                    col(TagRow.resource_type) == resource_type,
                    col(TagRow.resource_id) == tagged_id,
                    col(TagRow.tag) == tag,
                )
            )
        if self.created_after is not None:
            query = query.where(columns.created_at >= self.created_after)
        if self.created_before is not None:
            query = query.where(columns.created_at < self.created_before)
        return query


def _as_utc(moment: datetime | None) -> datetime | None:
    # SQLite stores UTC wall-clock text, so every bound is compared in UTC.
    if moment is None:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


LabelFiltersDep = Annotated[LabelFilters, Depends()]
