"""State buffers: ``.npy`` upload (validated, never unpickled), list, read."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status
from sqlmodel import select

from app import crud
from app.api.deps import AuthDep, IdempotencyKey, PageDep, SessionDep, StoreDep
from app.api.errors import get_or_404, unprocessable
from app.api.uploads import UPLOAD_ERROR_RESPONSES, read_limited
from app.models import StateBuffer
from app.schemas import Page, StatesPublic
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
def list_states(session: SessionDep, page: PageDep) -> dict:
    return page.page(session, select(StateBuffer), StateBuffer)


@router.get("/{states_id}", response_model=StatesPublic)
def read_states(states_id: str, session: SessionDep) -> StateBuffer:
    return get_or_404(session, StateBuffer, states_id, "state buffer")
