"""The model registry: named models, numbered versions (one checkpoint each), movable aliases, and references to them.

A version number is the model's largest plus one. Registrations of one model
take its row's lock first (PostgreSQL; SQLite transactions are serialized
anyway), so they number one after another; the table's primary key is the
backstop, and a registration that still collides retries once with the next number.
"""

from __future__ import annotations

from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, func, select

from app.contracts.model_refs import ModelRef, parse_model_ref
from app.service.tables import ModelAlias, ModelVersion, RegisteredModel

VERSION_ATTEMPTS = 2


class VersionConflict(Exception):
    """Every attempt to number a new version collided with a concurrent one."""


def add_version(session: Session, model_name: str, checkpoint_id: str, created_by: str) -> ModelVersion:
    """Register ``checkpoint_id`` as the model's next version and commit; ``VersionConflict`` if racing writers took
    every number tried.
    """
    for _ in range(VERSION_ATTEMPTS):
        session.exec(select(RegisteredModel.name).where(col(RegisteredModel.name) == model_name).with_for_update())
        latest = session.exec(
            select(func.max(ModelVersion.version)).where(col(ModelVersion.model_name) == model_name)
        ).one()
        row = ModelVersion(
            model_name=model_name, version=(latest or 0) + 1, checkpoint_id=checkpoint_id, created_by=created_by
        )
        session.add(row)
        try:
            session.commit()
        except IntegrityError:
            session.rollback()
            continue
        return row
    raise VersionConflict(model_name)


def set_alias(session: Session, model_name: str, alias: str, version: int) -> ModelAlias:
    """Point ``alias`` at ``version`` (creating the alias, or moving it); the caller commits."""
    row = session.get(ModelAlias, (model_name, alias))
    if row is None:
        row = ModelAlias(model_name=model_name, alias=alias, version=version)
    row.version = version
    session.add(row)
    return row


def aliases_by_model(session: Session, model_names: list[str]) -> dict[str, dict[str, int]]:
    """``{model: {alias: version}}`` for these models, in one query."""
    aliases: dict[str, dict[str, int]] = {name: {} for name in model_names}
    for row in session.exec(select(ModelAlias).where(col(ModelAlias.model_name).in_(model_names))):
        aliases[row.model_name][row.alias] = row.version
    return aliases


def latest_versions(session: Session, model_names: list[str]) -> dict[str, int]:
    """The largest version number of each of these models that has one, in one query."""
    return dict(
        session.exec(
            select(ModelVersion.model_name, func.max(ModelVersion.version))
            .where(col(ModelVersion.model_name).in_(model_names))
            .group_by(col(ModelVersion.model_name))
        ).all()
    )


def find_version(session: Session, ref: ModelRef) -> ModelVersion:
    """The version ``ref`` names; ``LookupError`` naming the first part that does not exist."""
    if session.get(RegisteredModel, ref.model) is None:
        raise LookupError(f"model {ref.model!r} not found")
    version = ref.version
    if ref.alias is not None:
        alias = session.get(ModelAlias, (ref.model, ref.alias))
        if alias is None:
            raise LookupError(f"alias {ref.alias!r} of model {ref.model!r} not found")
        version = alias.version
    row = session.get(ModelVersion, (ref.model, version))
    if row is None:
        raise LookupError(f"version {version} of model {ref.model!r} not found")
    return row


def resolve_checkpoint_ref(session: Session, ref: str) -> str:
    """The checkpoint id ``ref`` names: itself when it is an id, else the registered version's checkpoint.

    ``ValueError`` for a malformed ``model@...`` reference, ``LookupError`` for an unknown model, alias or version.
    """
    parsed = parse_model_ref(ref)
    return ref if parsed is None else find_version(session, parsed).checkpoint_id
