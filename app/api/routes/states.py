"""State buffers: ``.npy`` upload (validated, never unpickled), list, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, Query, UploadFile, status
from sqlmodel import func, select

from app import crud
from app.api.deps import AuthDep, IdempotencyKey, SessionDep, StoreDep
from app.api.errors import not_found, unprocessable, valid_id
from app.api.uploads import UPLOAD_ERROR_RESPONSES, read_limited
from app.models import StateBuffer
from app.schemas import MAX_OFFSET, Page, StatesPublic
from core.states import load_npy

router = APIRouter(prefix="/states", tags=["states"], dependencies=[AuthDep])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=StatesPublic, responses=UPLOAD_ERROR_RESPONSES)
async def upload_states(
    session: SessionDep,
    store: StoreDep,
    file: Annotated[UploadFile, File(description=".npy array of shape (n_states, input_dim), numeric and finite")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    idempotency_key: IdempotencyKey = None,
) -> StateBuffer:
    """Upload a state buffer; it is stored as float32."""
    if existing := crud.find_idempotent(session, StateBuffer, idempotency_key):
        return existing
    data = await read_limited(file)
    try:
        states = load_npy(data)
    except ValueError as error:
        raise unprocessable(str(error)) from error
    row = crud.create_state_buffer(session, store, states, name=name or file.filename and file.filename[:200], idempotency_key=idempotency_key)
    return crud.commit_idempotent(session, row, StateBuffer, idempotency_key)[0]


@router.get("", response_model=Page[StatesPublic])
def list_states(session: SessionDep, limit: Annotated[int, Query(ge=1, le=500)] = 50, offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0) -> dict:
    total = session.exec(select(func.count()).select_from(StateBuffer)).one()
    items = session.exec(select(StateBuffer).order_by(StateBuffer.created_at.desc(), StateBuffer.id).offset(offset).limit(limit)).all()
    return {"items": items, "total": total, "limit": limit, "offset": offset}


@router.get("/{states_id}", response_model=StatesPublic)
def read_states(states_id: str, session: SessionDep) -> StateBuffer:
    row = session.get(StateBuffer, states_id) if valid_id(states_id) else None
    if row is None:
        raise not_found("state buffer", states_id)
    return row
