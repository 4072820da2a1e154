"""Persistence operations shared by the API and the workers. None of them commits."""

from __future__ import annotations

from collections import deque
from typing import TypeVar

import numpy as np
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, SQLModel, select

from app.models import Checkpoint, Job, LineageEdge, StateBuffer, new_id
from app.store import ArtifactStore
from core import artifacts
from core.states import dump_npy, load_npy, synthetic_states, validate_states

LINEAGE_MAX_NODES = 500
RowT = TypeVar("RowT", bound=SQLModel)


def find_idempotent(session: Session, model: type[RowT], idempotency_key: str | None) -> RowT | None:
    """The row an earlier request with this ``Idempotency-Key`` created, if any."""
    if not idempotency_key:
        return None
    return session.exec(select(model).where(model.idempotency_key == idempotency_key)).first()


def commit_idempotent(session: Session, row: RowT, model: type[RowT], idempotency_key: str | None) -> tuple[RowT, bool]:
    """Commit ``row``; returns ``(row, True)``, or the row of a concurrent request with the same key and False."""
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        if not idempotency_key:
            raise
        return session.exec(select(model).where(model.idempotency_key == idempotency_key)).one(), False
    session.refresh(row)
    return row, True


def create_checkpoint(
    session: Session,
    store: ArtifactStore,
    checkpoint: artifacts.Checkpoint,
    *,
    checkpoint_id: str | None = None,
    name: str | None = None,
    job_id: str | None = None,
    output_index: int = 0,
    idempotency_key: str | None = None,
) -> Checkpoint:
    """Encode ``checkpoint``, store its bytes by hash and add its row."""
    data = artifacts.encode(checkpoint)
    sha256 = artifacts.sha256_hex(data)
    store.put(session, sha256, data)
    row = Checkpoint(
        id=checkpoint_id or new_id("ckpt"),
        name=name,
        arch=checkpoint.arch.to_dict(),
        format=checkpoint.format,
        dtype="int8" if checkpoint.format == "int8" else "float32",
        quantization=checkpoint.quantization,
        sha256=sha256,
        size_bytes=len(data),
        param_bytes=checkpoint.param_bytes,
        created_by_job=job_id,
        output_index=output_index,
        idempotency_key=idempotency_key,
    )
    session.add(row)
    return row


def add_lineage(session: Session, parent_id: str, child_id: str, role: str, job_id: str | None) -> None:
    session.add(LineageEdge(parent_id=parent_id, child_id=child_id, role=role, job_id=job_id))


def read_checkpoint(session: Session, store: ArtifactStore, row: Checkpoint) -> artifacts.Checkpoint:
    return artifacts.decode(store.get(session, row.sha256))


def create_state_buffer(
    session: Session, store: ArtifactStore, states: np.ndarray, *, name: str | None = None, idempotency_key: str | None = None
) -> StateBuffer:
    data = dump_npy(states)
    sha256 = artifacts.sha256_hex(data)
    store.put(session, sha256, data)
    row = StateBuffer(name=name, n=int(states.shape[0]), dim=int(states.shape[1]), sha256=sha256, size_bytes=len(data), idempotency_key=idempotency_key)
    session.add(row)
    return row


def read_states(session: Session, store: ArtifactStore, states_id: str | None, synthetic, input_dim: int) -> np.ndarray:
    """The ``(n, input_dim)`` float32 states a job asked for, by id or as a synthetic spec."""
    if synthetic is not None:
        return synthetic_states(synthetic, input_dim)
    row = session.get(StateBuffer, states_id)
    if row is None:
        raise LookupError(f"state buffer {states_id} not found")
    return validate_states(load_npy(store.get(session, row.sha256)), input_dim)


def lineage_parent(session: Session, child_id: str, role: str) -> str | None:
    """The parent recorded for ``child_id`` under ``role`` (e.g. ``parent_a``), if any."""
    return session.exec(select(LineageEdge.parent_id).where(LineageEdge.child_id == child_id, LineageEdge.role == role)).first()


def training_states_seed(session: Session, checkpoint_id: str) -> int | None:
    """The synthetic-states seed of the job that made ``checkpoint_id``, if it trained on synthetic states."""
    row = session.get(Checkpoint, checkpoint_id)
    job = session.get(Job, row.created_by_job) if row is not None and row.created_by_job else None
    synthetic = ((job.params if job else {}).get("states") or {}).get("synthetic") or {}
    return synthetic.get("seed")


def lineage(session: Session, checkpoint_id: str) -> tuple[list[Checkpoint], list[LineageEdge]]:
    """The checkpoint and all its ancestors, with the edges between them (breadth first, bounded)."""
    start = session.get(Checkpoint, checkpoint_id)
    if start is None:
        raise LookupError(checkpoint_id)
    nodes = {start.id: start}
    edges: list[LineageEdge] = []
    frontier = deque([start.id])
    while frontier and len(nodes) < LINEAGE_MAX_NODES:
        child_id = frontier.popleft()
        for edge in session.exec(select(LineageEdge).where(LineageEdge.child_id == child_id).order_by(LineageEdge.id)):
            edges.append(edge)
            if edge.parent_id not in nodes:
                nodes[edge.parent_id] = session.get(Checkpoint, edge.parent_id)
                frontier.append(edge.parent_id)
    return list(nodes.values()), edges
