"""State buffers: ``.npy`` upload (validated, never unpickled), list, read."""

from __future__ import annotations

import hashlib
from typing import Annotated

from fastapi import APIRouter, File, Form, UploadFile, status
from sqlmodel import select

from app.api.deps import AuthDep, IdempotencyDep, PageDep, SessionDep, SettingsDep, StoreDep, require_role
from app.api.errors import get_or_404, unprocessable
from app.api.idempotency import commit_once, replay
from app.api.schemas import Page, StatesPublic
from app.api.uploads import UPLOAD_ERROR_RESPONSES, file_name, read_file
from app.service import crud
from app.service.tables import StateBuffer
from core.states import StatesTooLargeError, load_states_upload

router = APIRouter(prefix="/states", tags=["states"], dependencies=[AuthDep])


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=StatesPublic,
    responses=UPLOAD_ERROR_RESPONSES,
    dependencies=[require_role("submit")],
)
def upload_states(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    file: Annotated[
        UploadFile,
        File(
            description=".npy array of shape (n_states, input_dim), numeric and finite; or an .npz with `states` and "
            "`actions`"
        ),
    ],
    actions: Annotated[
        UploadFile | None, File(description="optional .npy of the actions the agent took, one integer per state")
    ] = None,
    name: Annotated[str | None, Form(max_length=200)] = None,
) -> StateBuffer:
    """Upload a state buffer (stored as float32), optionally with the actions the agent actually took."""
    data = read_file(file)
    actions_data = read_file(actions) if actions is not None else None
    content = {
        "file_sha256": hashlib.sha256(data).hexdigest(),
        "actions_sha256": actions_data and hashlib.sha256(actions_data).hexdigest(),
        "name": name,
    }
    request = idempotency.of(content)
    if existing := replay(session, request, StateBuffer):
        return existing
    session.rollback()  # parse outside any transaction: on SQLite an open one holds the write lock
    try:
        states, recorded = load_states_upload(data, actions_data, max_values=settings.max_state_values)
    except StatesTooLargeError as error:
        raise unprocessable(f"{error}; RECOMB_MAX_STATE_VALUES raises it") from error
    except ValueError as error:
        raise unprocessable(str(error)) from error
    row = crud.create_state_buffer(session, store, states, actions=recorded, name=file_name(name, file))
    return commit_once(session, request, row, StateBuffer)[0]


@router.get("", response_model=Page[StatesPublic])
def list_states(session: SessionDep, page: PageDep) -> dict:
    return page.page(session, select(StateBuffer), StateBuffer)


@router.get("/{states_id}", response_model=StatesPublic)
def get_states(states_id: str, session: SessionDep) -> StateBuffer:
    return get_or_404(session, StateBuffer, states_id, "state buffer")
