"""Checkpoints: upload, synthesise, list, read, rename and tag, download, export, lineage."""

from __future__ import annotations

import hashlib
import json
from typing import Annotated

from fastapi import APIRouter, File, Form, HTTPException, Query, Response, UploadFile, status
from pydantic import ValidationError
from sqlmodel import Session, select

from app.api.deps import (
    AdminDep,
    AuthDep,
    IdempotencyDep,
    LabelFiltersDep,
    PageDep,
    SessionDep,
    SettingsDep,
    StoreDep,
    SubmitterDep,
)
from app.api.errors import get_or_404, unprocessable
from app.api.idempotency import commit_once, replay
from app.api.schemas import (
    ArchSchema,
    CheckpointPublic,
    DeletedPublic,
    DescendantPublic,
    DescendantsPublic,
    ErrorDetail,
    LabelsPatch,
    LineageEdgePublic,
    LineagePublic,
    Page,
    SyntheticCheckpointCreate,
)
from app.api.uploads import UPLOAD_ERROR_RESPONSES, file_name, read_file
from app.contracts.labels import DEFAULT_EXPERIMENT, EXPERIMENT_DESCRIPTION, TAGS_DESCRIPTION, Experiment, FormTags
from app.service import audit, crud, deletion
from app.service.tables import Checkpoint, ResourceType
from app.settings import Settings
from core import checkpoint_file, export
from core.arch import QNetworkArch, check_param_cap
from core.imports import CheckpointError, UnsupportedFileError, UploadTooLargeError

router = APIRouter(prefix="/checkpoints", tags=["checkpoints"], dependencies=[AuthDep])


def get_checkpoint_row(session: SessionDep, checkpoint_id: str) -> Checkpoint:
    return get_or_404(session, Checkpoint, checkpoint_id, "checkpoint")


def checkpoint_views(session: Session, rows: list[Checkpoint]) -> list[CheckpointPublic]:
    """Public views with their tags, in one query for the whole page."""
    tags = crud.tags_of(session, ResourceType.checkpoint, [row.id for row in rows])
    return [CheckpointPublic.model_validate(row).model_copy(update={"tags": tags.get(row.id, [])}) for row in rows]


@router.post(
    "",
    status_code=status.HTTP_201_CREATED,
    response_model=CheckpointPublic,
    responses=UPLOAD_ERROR_RESPONSES
    | {415: {"model": ErrorDetail, "description": "neither safetensors, a .pt file nor a Stable-Baselines3 zip"}},
)
def upload_checkpoint(
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    caller: SubmitterDep,
    file: Annotated[
        UploadFile,
        File(
            description="safetensors, a .pt state dict (torch.save(model.state_dict())) or a Stable-Baselines3 DQN .zip"
        ),
    ],
    name: Annotated[str | None, Form(max_length=200)] = None,
    arch: Annotated[
        str | None,
        Form(
            description='optional JSON, e.g. {"hidden_sizes": [64, 64], "norm": "none", "activation": "tanh"}; '
            "shapes are checked against the tensors, activation and dropout are taken from it"
        ),
    ] = None,
    experiment: Annotated[Experiment, Form(description=EXPERIMENT_DESCRIPTION)] = DEFAULT_EXPERIMENT,
    tags: Annotated[FormTags, Form(description=f"repeat the field for several: {TAGS_DESCRIPTION}")] = None,
) -> CheckpointPublic:
    """Upload a network. Its architecture is inferred from the tensors; a pickled module is refused; ``source_format``
    records the layout.
    """
    data = read_file(file)
    labels = crud.Labels(experiment, tuple(tags or ()))
    request = idempotency.of(
        {
            "file_sha256": hashlib.sha256(data).hexdigest(),
            "name": name,
            "arch": arch,
            "experiment": experiment,
            "tags": labels.tags,
        }
    )
    if existing := replay(session, request, Checkpoint):
        return checkpoint_views(session, [existing])[0]
    session.rollback()  # parse outside any transaction: on SQLite an open one holds the write lock
    declared = _parse_arch(arch, settings) if arch else None
    try:
        checkpoint = checkpoint_file.read_upload(data, declared, max_unpacked_bytes=settings.max_upload_bytes)
    except UnsupportedFileError as error:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE, str(error)) from error
    except UploadTooLargeError as error:
        raise unprocessable(f"{error}; RECOMB_MAX_UPLOAD_BYTES raises it") from error
    except CheckpointError as error:
        raise unprocessable(str(error)) from error
    enforce_param_cap(checkpoint.arch, settings)
    row = crud.create_checkpoint(
        session, store, checkpoint, name=file_name(name, file), labels=labels, created_by=caller
    )
    return checkpoint_views(session, [commit_once(session, request, row, Checkpoint)[0]])[0]


def _parse_arch(text: str, settings: Settings) -> QNetworkArch:
    try:
        declared = ArchSchema.model_validate(json.loads(text)).to_arch()
    except (ValueError, ValidationError) as error:
        raise unprocessable(f"arch: {error}") from error
    enforce_param_cap(declared, settings)
    return declared


def enforce_param_cap(arch: QNetworkArch, settings: Settings) -> None:
    """422 for a network over ``RECOMB_MAX_PARAMS`` parameters."""
    try:
        check_param_cap(arch, settings.max_params)
    except ValueError as error:
        raise unprocessable(f"{error} (RECOMB_MAX_PARAMS)") from error


@router.post("/synthetic", status_code=status.HTTP_201_CREATED, response_model=CheckpointPublic)
def create_synthetic_checkpoint(
    body: SyntheticCheckpointCreate,
    session: SessionDep,
    store: StoreDep,
    settings: SettingsDep,
    idempotency: IdempotencyDep,
    caller: SubmitterDep,
) -> CheckpointPublic:
    """A freshly initialised parent of any architecture of the family, bit-identical for equal ``{arch, seed}``."""
    request = idempotency.of(body.model_dump(mode="json"))
    if existing := replay(session, request, Checkpoint):
        return checkpoint_views(session, [existing])[0]
    arch = body.arch.to_arch()
    enforce_param_cap(arch, settings)
    checkpoint = checkpoint_file.float_file(
        checkpoint_file.init_arrays(arch, body.seed), arch, metadata={"origin": "synthetic", "seed": body.seed}
    )
    name = body.name or f"synthetic-{arch.describe().replace(' ', '-')}-seed{body.seed}"
    labels = crud.Labels(body.experiment, tuple(body.tags))
    row = crud.create_checkpoint(session, store, checkpoint, name=name, labels=labels, created_by=caller)
    return checkpoint_views(session, [commit_once(session, request, row, Checkpoint)[0]])[0]


@router.get("", response_model=Page[CheckpointPublic])
def list_checkpoints(
    session: SessionDep,
    page: PageDep,
    labels: LabelFiltersDep,
    format: Annotated[str | None, Query(pattern="^(float32|int8)$")] = None,
    created_by_job: Annotated[str | None, Query(max_length=40)] = None,
) -> dict:
    """Checkpoints, newest first, filtered by format, the job that made them, experiment, tags and creation time."""
    query = labels.apply(select(Checkpoint), Checkpoint, ResourceType.checkpoint, Checkpoint.id)
    if format:
        query = query.where(Checkpoint.format == format)
    if created_by_job:
        query = query.where(Checkpoint.created_by_job == created_by_job)
    result = page.page(session, query, Checkpoint)
    return result | {"items": checkpoint_views(session, result["items"])}


@router.get("/{checkpoint_id}", response_model=CheckpointPublic)
def get_checkpoint(checkpoint_id: str, session: SessionDep) -> CheckpointPublic:
    return checkpoint_views(session, [get_checkpoint_row(session, checkpoint_id)])[0]


@router.patch("/{checkpoint_id}", response_model=CheckpointPublic)
def update_checkpoint(
    checkpoint_id: str, body: LabelsPatch, session: SessionDep, _caller: SubmitterDep
) -> CheckpointPublic:
    """Rename a checkpoint or replace its tags (fields left out keep their value)."""
    row = get_checkpoint_row(session, checkpoint_id)
    crud.update_labels(session, ResourceType.checkpoint, row, body.model_dump(exclude_unset=True))
    session.commit()
    return checkpoint_views(session, [row])[0]


@router.get(
    "/{checkpoint_id}/file", response_class=Response, responses={200: {"content": {"application/octet-stream": {}}}}
)
def download_checkpoint(checkpoint_id: str, session: SessionDep, store: StoreDep) -> Response:
    """The safetensors artifact (``safetensors.torch.load_file`` reads it)."""
    row = get_checkpoint_row(session, checkpoint_id)
    return Response(
        store.get(session, row.sha256),
        media_type="application/octet-stream",
        headers={"Content-Disposition": f'attachment; filename="{row.id}.safetensors"', "ETag": f'"{row.sha256}"'},
    )


@router.get(
    "/{checkpoint_id}/export",
    response_class=Response,
    responses={
        200: {"content": {"application/octet-stream": {}}},
        422: {"model": ErrorDetail, "description": "unknown format"},
    },
)
def export_checkpoint(
    checkpoint_id: str,
    session: SessionDep,
    store: StoreDep,
    format: Annotated[
        export.ExportFormat,
        Query(
            description="onnx (float, or int8 weights kept int8), pt (weights-only state dict in the source layout) or "
            "safetensors"
        ),
    ],
) -> Response:
    """A deployable copy of the network: ONNX that onnxruntime runs, or a state dict the original library loads."""
    row = get_checkpoint_row(session, checkpoint_id)
    checkpoint = crud.read_checkpoint_file(session, store, row)
    data, media_type, suffix = export.export(checkpoint, format)
    return Response(
        data, media_type=media_type, headers={"Content-Disposition": f'attachment; filename="{row.id}.{suffix}"'}
    )


@router.get("/{checkpoint_id}/lineage", response_model=LineagePublic)
def get_lineage(checkpoint_id: str, session: SessionDep) -> dict:
    """The checkpoint's ancestor graph: every node and the edges between them."""
    get_checkpoint_row(session, checkpoint_id)
    nodes, edges = crud.lineage(session, checkpoint_id)
    return {
        "root": checkpoint_id,
        "nodes": checkpoint_views(session, nodes),
        "edges": [
            LineageEdgePublic(parent=edge.parent_id, child=edge.child_id, role=edge.role, job_id=edge.job_id)
            for edge in edges
        ],
    }


@router.get("/{checkpoint_id}/descendants", response_model=DescendantsPublic)
def get_descendants(checkpoint_id: str, session: SessionDep) -> DescendantsPublic:
    """What was made from the checkpoint: every descendant through lineage edges, nearest first, with its depth and
    the role its parent played (at most 500; ``truncated`` says when there are more).
    """
    get_checkpoint_row(session, checkpoint_id)
    found, edges, truncated = crud.descendants(session, checkpoint_id)
    return DescendantsPublic(
        root=checkpoint_id,
        descendants=[
            DescendantPublic(
                checkpoint=CheckpointPublic.model_validate(each.checkpoint),
                depth=each.depth,
                parent=each.parent,
                role=each.role,
            )
            for each in found
        ],
        edges=[
            LineageEdgePublic(parent=edge.parent_id, child=edge.child_id, role=edge.role, job_id=edge.job_id)
            for edge in edges
        ],
        truncated=truncated,
    )


@router.delete(
    "/{checkpoint_id}",
    response_model=DeletedPublic,
    responses={
        409: {
            "model": ErrorDetail,
            "description": "an unfinished job uses it, or (without cascade) it has descendants or registry versions",
        }
    },
)
def delete_checkpoint(
    checkpoint_id: str,
    session: SessionDep,
    store: StoreDep,
    caller: AdminDep,
    cascade: Annotated[
        bool, Query(description="also delete its descendants and the registry versions (and aliases) of all of them")
    ] = False,
) -> DeletedPublic:
    """Delete a checkpoint and its stored bytes (when nothing else references them).

    409 while a queued, running or waiting job takes it (or, with cascade, a descendant) as input; without cascade
    also while it has descendants or is a registered model version, naming them.
    """
    get_checkpoint_row(session, checkpoint_id)
    made_from = crud.descendant_ids(session, {checkpoint_id})
    doomed = {checkpoint_id} | (made_from if cascade else set())
    for used, job in sorted(deletion.checkpoints_in_use(session, doomed).items()):
        raise HTTPException(
            status.HTTP_409_CONFLICT, f"checkpoint {used} is used by {job.status.value} job {job.id}; wait or cancel it"
        )
    if not cascade:
        holders = [f"{len(made_from)} descendants ({', '.join(sorted(made_from)[:5])})"] if made_from else []
        holders += [
            f"version {version.version} of model {version.model_name!r}"
            for version in deletion.registered_versions(session, {checkpoint_id})
        ]
        if holders:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"checkpoint {checkpoint_id} is held by {'; '.join(holders)}; cascade=true deletes them too",
            )
    deleted = deletion.delete_checkpoints(session, store, doomed)
    audit.record(session, caller, "checkpoint.delete", "checkpoint", checkpoint_id, deleted.detail(cascade))
    session.commit()
    return DeletedPublic(
        jobs=[],
        checkpoints=deleted.checkpoints,
        model_versions=deleted.model_versions,
        artifacts_removed=deleted.artifacts,
    )
