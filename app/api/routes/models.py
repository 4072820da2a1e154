"""The model registry: models, their numbered versions and movable aliases (``app.service.registry``)."""

from __future__ import annotations

import re
from typing import Any

from fastapi import APIRouter, HTTPException, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from app.api.deps import AdminDep, AuthDep, PageDep, SessionDep, SubmitterDep
from app.api.errors import get_or_404, not_found
from app.api.schemas import (
    AliasPublic,
    AliasUpdate,
    CheckpointPublic,
    ErrorDetail,
    ModelCreate,
    ModelPublic,
    ModelVersionCreate,
    ModelVersionPublic,
    Page,
)
from app.contracts.model_refs import ALIAS_PATTERN, MODEL_NAME_PATTERN, ModelRef
from app.service import audit, registry
from app.service.tables import Checkpoint, ModelAlias, ModelVersion, RegisteredModel

router = APIRouter(prefix="/models", tags=["models"], dependencies=[AuthDep])
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": ErrorDetail, "description": "the name is taken"}}


def get_model_row(session: Session, name: str) -> RegisteredModel:
    """The registered model, or a 404 naming it (a name outside the charset cannot exist)."""
    row = session.get(RegisteredModel, name) if re.match(MODEL_NAME_PATTERN, name) else None
    if row is None:
        raise not_found("model", name)
    return row


def model_views(session: Session, models: list[RegisteredModel]) -> list[ModelPublic]:
    """Public views with latest version and aliases, in two queries for the whole page."""
    names = [model.name for model in models]
    latest, aliases = registry.latest_versions(session, names), registry.aliases_by_model(session, names)
    return [
        ModelPublic.model_validate(model).model_copy(
            update={"latest_version": latest.get(model.name), "aliases": aliases[model.name]}
        )
        for model in models
    ]


def alias_view(session: Session, model_name: str, alias: str) -> AliasPublic:
    if not re.match(ALIAS_PATTERN, alias):
        raise not_found("alias", alias)
    try:
        version = registry.find_version(session, ModelRef(model_name, alias=alias))
    except LookupError as error:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(error)) from error
    checkpoint = session.get(Checkpoint, version.checkpoint_id)
    return AliasPublic(
        model_name=model_name,
        alias=alias,
        version=version.version,
        checkpoint=CheckpointPublic.model_validate(checkpoint),
    )


@router.post("", status_code=status.HTTP_201_CREATED, response_model=ModelPublic, responses=CONFLICT)
def create_model(body: ModelCreate, session: SessionDep, caller: SubmitterDep) -> ModelPublic:
    """Register a model name; its versions are added with ``POST /models/{name}/versions``."""
    if session.get(RegisteredModel, body.name) is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"model {body.name!r} already exists")
    row = RegisteredModel(name=body.name, description=body.description, created_by=caller)
    session.add(row)
    try:
        session.commit()
    except IntegrityError as error:  # registered by a concurrent request since the check above
        session.rollback()
        raise HTTPException(status.HTTP_409_CONFLICT, f"model {body.name!r} already exists") from error
    return model_views(session, [row])[0]


@router.get("", response_model=Page[ModelPublic])
def list_models(session: SessionDep, page: PageDep) -> dict:
    result = page.page(session, select(RegisteredModel), RegisteredModel)
    return result | {"items": model_views(session, result["items"])}


@router.get("/{name}", response_model=ModelPublic)
def get_model(name: str, session: SessionDep) -> ModelPublic:
    return model_views(session, [get_model_row(session, name)])[0]


@router.post(
    "/{name}/versions",
    status_code=status.HTTP_201_CREATED,
    response_model=ModelVersionPublic,
    responses={409: {"model": ErrorDetail, "description": "concurrent registrations took every number tried"}},
)
def create_model_version(
    name: str, body: ModelVersionCreate, session: SessionDep, caller: SubmitterDep
) -> ModelVersion:
    """Register a checkpoint as the model's next version (1, 2, ...)."""
    get_model_row(session, name)
    get_or_404(session, Checkpoint, body.checkpoint_id, "checkpoint")
    try:
        return registry.add_version(session, name, body.checkpoint_id, caller)
    except registry.VersionConflict as error:
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"model {name!r}: concurrent registrations took every version number; retry"
        ) from error


@router.get("/{name}/versions", response_model=Page[ModelVersionPublic])
def list_model_versions(name: str, session: SessionDep, page: PageDep) -> dict:
    """The model's versions, newest first."""
    get_model_row(session, name)
    return page.page(session, select(ModelVersion).where(col(ModelVersion.model_name) == name), ModelVersion)


@router.put(
    "/{name}/aliases/{alias}",
    response_model=AliasPublic,
    responses={422: {"model": ErrorDetail, "description": f"an alias must match {ALIAS_PATTERN}"}},
)
def set_model_alias(name: str, alias: str, body: AliasUpdate, session: SessionDep, caller: AdminDep) -> AliasPublic:
    """Point an alias at a version: created if new, moved if it pointed elsewhere (admin; audited)."""
    get_model_row(session, name)
    if not re.match(ALIAS_PATTERN, alias):
        raise HTTPException(
            status.HTTP_422_UNPROCESSABLE_CONTENT, f"alias {alias!r} must match {ALIAS_PATTERN} (not a number)"
        )
    if session.get(ModelVersion, (name, body.version)) is None:
        raise not_found(f"version of model {name!r}", str(body.version))
    previous = session.get(ModelAlias, (name, alias))
    detail = {"version": body.version, "previous_version": previous.version if previous else None}
    registry.set_alias(session, name, alias, body.version)
    audit.record(session, caller, "model.alias.set", "model_alias", f"{name}@{alias}", detail)
    session.commit()
    return alias_view(session, name, alias)


@router.get("/{name}/aliases/{alias}", response_model=AliasPublic)
def get_model_alias(name: str, alias: str, session: SessionDep) -> AliasPublic:
    """The version an alias points at, with its checkpoint."""
    get_model_row(session, name)
    return alias_view(session, name, alias)


@router.delete("/{name}/aliases/{alias}", status_code=status.HTTP_204_NO_CONTENT)
def delete_model_alias(name: str, alias: str, session: SessionDep, caller: AdminDep) -> None:
    """Remove an alias (its version stays; admin; audited)."""
    get_model_row(session, name)
    row = session.get(ModelAlias, (name, alias)) if re.match(ALIAS_PATTERN, alias) else None
    if row is None:
        raise not_found("alias", alias)
    audit.record(session, caller, "model.alias.delete", "model_alias", f"{name}@{alias}", {"version": row.version})
    session.delete(row)
    session.commit()
