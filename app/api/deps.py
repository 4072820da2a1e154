"""FastAPI dependencies as ``Annotated`` aliases: settings, DB session, store, auth."""

from __future__ import annotations

import hmac
from collections.abc import Iterator
from typing import Annotated

from celery import Celery
from fastapi import Depends, Header, HTTPException, Query, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlalchemy.exc import OperationalError
from sqlmodel import Session, SQLModel, func, select
from sqlmodel.sql.expression import Select

from app.api.errors import not_found, valid_id
from app.core.config import Settings
from app.core.db import get_engine
from app.models import Job
from app.schemas import MAX_OFFSET
from app.store import ArtifactStore, get_store


def get_app_settings(request: Request) -> Settings:
    return request.app.state.settings


SettingsDep = Annotated[Settings, Depends(get_app_settings)]


def get_app_celery(request: Request) -> Celery:
    return request.app.state.celery


CeleryDep = Annotated[Celery, Depends(get_app_celery)]


def get_session(settings: SettingsDep) -> Iterator[Session]:
    session = Session(get_engine(settings), expire_on_commit=False)
    try:
        yield session
    finally:
        try:
            session.close()
        except OperationalError:
            # The database went away after the response was made: the pool drops the dead
            # connection, and raising here would cut the client's keep-alive connection.
            pass


SessionDep = Annotated[Session, Depends(get_session)]


def get_artifact_store(settings: SettingsDep) -> ArtifactStore:
    return get_store(settings)


StoreDep = Annotated[ArtifactStore, Depends(get_artifact_store)]

_bearer = HTTPBearer(auto_error=False, description="required when RECOMB_API_KEYS is set")


def require_api_key(settings: SettingsDep, credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)]) -> None:
    """Open when no keys are configured; otherwise a bearer token compared in constant time."""
    keys = settings.api_key_list
    if not keys:
        return
    offered = credentials.credentials.encode() if credentials else b""
    # Compare against every key, without early exit, so timing reveals nothing.
    matched = False
    for key in keys:
        matched |= hmac.compare_digest(offered, key.encode())
    if not matched:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing or invalid API key", headers={"WWW-Authenticate": "Bearer"})


AuthDep = Depends(require_api_key)
IdempotencyKey = Annotated[
    str | None,
    Header(alias="Idempotency-Key", min_length=1, max_length=200, description="repeat a POST with the same key to get the first result back"),
]


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

    def page(self, session: Session, query: Select, model: type[SQLModel]) -> dict:
        """``{items, total, limit, offset}`` of ``query``, ordered by ``created_at`` then id."""
        total = session.exec(select(func.count()).select_from(query.subquery())).one()
        items = session.exec(query.order_by(model.created_at.desc(), model.id).offset(self.offset).limit(self.limit)).all()
        return {"items": list(items), "total": total, "limit": self.limit, "offset": self.offset}


PageDep = Annotated[Pagination, Depends()]
