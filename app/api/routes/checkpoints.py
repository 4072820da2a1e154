"""Checkpoints: upload, synthesise, list, read, download, lineage."""

from __future__ import annotations

import json
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from pydantic import ValidationError
from sqlmodel import select

from app import crud
from app.api.deps import AuthDep, IdempotencyKey, PageDep, SessionDep, StoreDep
from app.api.errors import get_or_404, unprocessable
from app.api.uploads import UPLOAD_ERROR_RESPONSES, read_limited
from app.models import Checkpoint
from app.schemas import ArchSchema, CheckpointPublic, ErrorDetail, LineageEdgePublic, LineagePublic, Page, SyntheticCheckpointCreate
from core import artifacts
from core.networks import QNetworkArch, init_network

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"], dependencies=[AuthDep])


def get_checkpoint_row(session: SessionDep, checkpoint_id: str) -> Checkpoint:
    return get_or_404(session, Checkpoint, checkpoint_id, "checkpoint")


@router.post("", status_code=status.HTTP_201_CREATED, response_model=CheckpointPublic, responses=UPLOAD_ERROR_RESPONSES | {415: {"model": ErrorDetail, "description": "neither safetensors nor a .pt file"}})
async def upload_checkpoint(
    session: SessionDep,
    store: StoreDep,
    file: Annotated[UploadFile, File(description="safetensors, or a .pt state dict (torch.save(model.state_dict()))")],
    name: Annotated[str | None, Form(max_length=200)] = None,
    idempotency_key: IdempotencyKey = None,
    arch: Annotated[str | None, Form(description='optional JSON, e.g. {"input_dim": 8, "hidden_size": 64, "output_dim": 4}; checked against the tensors')] = None,
) -> Checkpoint:
    """Upload a network. Its architecture is inferred from the tensor shapes; a pickled module is refused."""
    if existing := crud.find_idempotent(session, Checkpoint, idempotency_key):
        return existing
    data = await read_limited(file)
    declared = _parse_arch(arch) if arch else None
    try:
        checkpoint = artifacts.read_upload(data)
    except artifacts.UnsupportedFileError as error:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error)) from error
    except artifacts.CheckpointError as error:
        raise unprocessable(str(error)) from error
    if declared is not None:
        if not declared.same_shapes(checkpoint.arch):
            raise unprocessable(f"declared arch {declared.describe()} does not match the tensors ({checkpoint.arch.describe()})")
        checkpoint = artifacts.Checkpoint(declared, checkpoint.tensors, checkpoint.format, checkpoint.quantization, checkpoint.metadata)
    row = crud.create_checkpoint(session, store, checkpoint, name=name or file.filename and file.filename[:200], idempotency_key=idempotency_key)
    return crud.commit_idempotent(session, row, Checkpoint, idempotency_key)[0]


def _parse_arch(text: str) -> QNetworkArch:
    try:
        return QNetworkArch(**ArchSchema.model_validate(json.loads(text)).model_dump())
    except (ValueError, ValidationError) as error:
        raise unprocessable(f"arch: {error}") from error


@router.post("/synthetic", status_code=status.HTTP_201_CREATED, response_model=CheckpointPublic)
def create_synthetic(body: SyntheticCheckpointCreate, session: SessionDep, store: StoreDep, idempotency_key: IdempotencyKey = None) -> Checkpoint:
    """A freshly initialised parent, bit-identical for equal ``{arch, seed}``."""
    if existing := crud.find_idempotent(session, Checkpoint, idempotency_key):
        return existing
    arch = QNetworkArch(**body.arch.model_dump())
    network = init_network(arch, body.seed)
    checkpoint = artifacts.float_checkpoint(network.state_dict(), arch, metadata={"origin": "synthetic", "seed": body.seed})
    row = crud.create_checkpoint(session, store, checkpoint, name=body.name or f"synthetic-{arch.describe()}-seed{body.seed}", idempotency_key=idempotency_key)
    return crud.commit_idempotent(session, row, Checkpoint, idempotency_key)[0]


@router.get("", response_model=Page[CheckpointPublic])
def list_checkpoints(
    session: SessionDep,
    format: Annotated[str | None, Query(pattern="^(float32|int8)$")] = None,
    created_by_job: Annotated[str | None, Query(max_length=40)] = None,
    page: PageDep = None,
) -> dict:
    query = select(Checkpoint)
    if format:
        query = query.where(Checkpoint.format == format)
    if created_by_job:
        query = query.where(Checkpoint.created_by_job == created_by_job)
    return page.page(session, query, Checkpoint)


@router.get("/{checkpoint_id}", response_model=CheckpointPublic)
def read_checkpoint(checkpoint_id: str, session: SessionDep) -> Checkpoint:
    return get_checkpoint_row(session, checkpoint_id)


@router.get("/{checkpoint_id}/file", response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}})
def download_checkpoint(checkpoint_id: str, session: SessionDep, store: StoreDep) -> Response:
    """The safetensors artifact (``safetensors.torch.load_file`` reads it)."""
    row = get_checkpoint_row(session, checkpoint_id)
    return Response(
        store.get(session, row.sha256),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{row.id}.safetensors"', "ETag": f'"{row.sha256}"'},
    )


@router.get("/{checkpoint_id}/lineage", response_model=LineagePublic)
def read_lineage(checkpoint_id: str, session: SessionDep) -> dict:
    """The checkpoint's ancestor graph: every node and the edges between them."""
    get_checkpoint_row(session, checkpoint_id)
    nodes, edges = crud.lineage(session, checkpoint_id)
    return {
        "root": checkpoint_id,
        "nodes": nodes,
        "edges": [LineageEdgePublic(parent=edge.parent_id, child=edge.child_id, role=edge.role, job_id=edge.job_id) for edge in edges],
    }
