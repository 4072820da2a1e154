"""Error helpers: every bad input is a precise 4xx with ``{"detail": ...}``."""

from __future__ import annotations

import re
from typing import TypeVar

from fastapi import HTTPException, status
from sqlmodel import Session, SQLModel

RowT = TypeVar("RowT", bound=SQLModel)
ID_PATTERN = re.compile(r"^[a-z]{2,5}_[0-9a-f]{20}$")


def not_found(what: str, identifier: str) -> HTTPException:
    return HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {identifier!r} not found")


def unprocessable(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, detail)


def valid_id(identifier: str) -> bool:
    """Ids are ``<prefix>_<20 hex>``; anything else (paths, NUL bytes) cannot exist."""
    return bool(ID_PATTERN.match(identifier))


def get_or_404(session: Session, model: type[RowT], identifier: str, what: str) -> RowT:
    """The row with this id, or a 404 naming it (malformed ids never reach the database)."""
    row = session.get(model, identifier) if valid_id(identifier) else None
    if row is None:
        raise not_found(what, identifier)
    return row
