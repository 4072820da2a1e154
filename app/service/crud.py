"""Persistence operations shared by the API and the workers. None of them commits."""

from __future__ import annotations

import io
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from sqlalchemy import delete
from sqlmodel import Session, col, select

from app.contracts.report_models import numeric_figures, parse_report
from app.service.store import ArtifactStore
from app.service.tables import (
    DEFAULT_EXPERIMENT,
    Checkpoint,
    Job,
    JobLog,
    LineageEdge,
    Report,
    ReportFigure,
    ResourceType,
    StateBuffer,
    Tag,
    new_id,
)
from core import checkpoint_file
from core.checkpoint_file import CheckpointFile
from core.states import dump_actions, dump_npy, load_npy, synthetic_states, validate_states

if TYPE_CHECKING:
    from core import artifacts

LINEAGE_MAX_NODES = 500


@dataclass(frozen=True)
class Labels:
    """The experiment and tags a row is filed under; a job's outputs, report and children inherit its own."""

    experiment: str = DEFAULT_EXPERIMENT
    tags: tuple[str, ...] = ()


UNLABELLED = Labels()


def add_tags(session: Session, resource_type: ResourceType, resource_id: str, tags: Iterable[str]) -> None:
    """Tag a job or checkpoint that has no tags yet (a new row)."""
    session.add_all([Tag(resource_type=resource_type, resource_id=resource_id, tag=tag) for tag in dict.fromkeys(tags)])


def replace_tags(session: Session, resource_type: ResourceType, resource_id: str, tags: Iterable[str]) -> None:
    """Replace the tags of one job or checkpoint."""
    session.exec(delete(Tag).where(col(Tag.resource_type) == resource_type, col(Tag.resource_id) == resource_id))
    add_tags(session, resource_type, resource_id, tags)


def update_labels(
    session: Session, resource_type: ResourceType, row: Job | Checkpoint, changes: dict[str, Any]
) -> None:
    """Apply a change of name and/or tags to a job or checkpoint (``changes`` holds only the fields given)."""
    if "name" in changes:
        row.name = changes["name"]
        session.add(row)
    if changes.get("tags") is not None:
        replace_tags(session, resource_type, row.id, changes["tags"])


def tags_of(session: Session, resource_type: ResourceType, resource_ids: Iterable[str]) -> dict[str, list[str]]:
    """The tags of each of these jobs or checkpoints (sorted), in one query; an id without tags is absent."""
    ids = list(resource_ids)
    found: dict[str, list[str]] = {}
    if not ids:
        return found
    rows = session.exec(
        select(Tag.resource_id, Tag.tag)
        .where(col(Tag.resource_type) == resource_type, col(Tag.resource_id).in_(ids))
        .order_by(col(Tag.tag))
    ).all()
    for resource_id, tag in rows:
        found.setdefault(resource_id, []).append(tag)
    return found


def job_labels(session: Session, job_id: str) -> Labels:
    """The experiment and tags of a job (what its outputs, report and children are filed under)."""
    experiment = session.exec(select(Job.experiment).where(col(Job.id) == job_id)).one()
    return Labels(experiment, tuple(tags_of(session, ResourceType.job, [job_id]).get(job_id, [])))


def create_report(session: Session, job_id: str, body: dict[str, Any], experiment: str) -> Report:
    """Add a report row and its numeric figures (the rows lists sort and filter by), in the caller's transaction."""
    report = parse_report({key: value for key, value in body.items() if key != "figures"})
    row = Report(
        job_id=job_id,
        kind=report.kind,
        experiment=experiment,
        schema_version=str(body["schema_version"]),
        passed=bool(body["passed"]),
        body=body,
    )
    session.add(row)
    session.flush()  # the figures name the report
    session.add_all(
        [
            ReportFigure(report_id=row.id, name=name, kind=report.kind, value=value)
            for name, value in numeric_figures(report).items()
        ]
    )
    return row


def create_checkpoint(
    session: Session,
    store: ArtifactStore,
    checkpoint: CheckpointFile | artifacts.Checkpoint,
    *,
    checkpoint_id: str | None = None,
    name: str | None = None,
    job_id: str | None = None,
    output_index: int = 0,
    labels: Labels = UNLABELLED,
    created_by: str = "",
) -> Checkpoint:
    """Encode ``checkpoint`` (numpy or torch), store its bytes by hash and add its row, filed under ``labels``.

    ``created_by`` is the fingerprint of the uploader's API key; a job's output belongs to whoever queued the
    job (its ``owner``, which children inherit).
    """
    if job_id is not None:
        created_by = session.exec(select(Job.owner).where(col(Job.id) == job_id)).one()
    stored = checkpoint if isinstance(checkpoint, CheckpointFile) else checkpoint.to_file()
    data = checkpoint_file.encode(stored)
    sha256 = checkpoint_file.sha256_hex(data)
    store.put(session, sha256, data)
    row = Checkpoint(
        id=checkpoint_id or new_id("ckpt"),
        name=name,
        arch=stored.arch.to_dict(),
        format=stored.format,
        dtype="int8" if stored.format == "int8" else "float32",
        source_format=stored.source_format,
        quantization=stored.quantization,
        sha256=sha256,
        size_bytes=len(data),
        param_bytes=stored.param_bytes,
        created_by_job=job_id,
        created_by=created_by,
        output_index=output_index,
        experiment=labels.experiment,
    )
    session.add(row)
    add_tags(session, ResourceType.checkpoint, row.id, labels.tags)
    return row


def add_lineage(session: Session, parent_id: str, child_id: str, role: str, job_id: str | None) -> None:
    session.add(LineageEdge(parent_id=parent_id, child_id=child_id, role=role, job_id=job_id))


def read_checkpoint_file(session: Session, store: ArtifactStore, row: Checkpoint) -> CheckpointFile:
    """The stored checkpoint as numpy arrays (what the web process reads)."""
    return checkpoint_file.decode(store.get(session, row.sha256))


def read_checkpoint(session: Session, store: ArtifactStore, row: Checkpoint) -> artifacts.Checkpoint:
    """The stored checkpoint as torch tensors (what the stages compute with)."""
    # Imported here: core.artifacts loads torch, which the web process never needs.
    from core import artifacts

    return artifacts.from_file(read_checkpoint_file(session, store, row))


def create_state_buffer(
    session: Session,
    store: ArtifactStore,
    states: np.ndarray,
    *,
    actions: np.ndarray | None = None,
    name: str | None = None,
) -> StateBuffer:
    data = dump_npy(states)
    sha256 = checkpoint_file.sha256_hex(data)
    store.put(session, sha256, data)
    actions_sha256 = actions_max = None
    if actions is not None:
        actions_data = dump_actions(actions)
        actions_sha256 = checkpoint_file.sha256_hex(actions_data)
        store.put(session, actions_sha256, actions_data)
        actions_max = int(actions.max()) if actions.size else None
    row = StateBuffer(
        name=name,
        n=int(states.shape[0]),
        dim=int(states.shape[1]),
        sha256=sha256,
        size_bytes=len(data),
        actions_sha256=actions_sha256,
        actions_max=actions_max,
    )
    session.add(row)
    return row


def read_actions(session: Session, store: ArtifactStore, states_id: str) -> np.ndarray | None:
    """The actions stored with a state buffer (int64), or None."""
    row = session.get(StateBuffer, states_id)
    if row is None or row.actions_sha256 is None:
        return None
    return np.load(io.BytesIO(store.get(session, row.actions_sha256)), allow_pickle=False)


def read_states(session: Session, store: ArtifactStore, states_id: str | None, synthetic, input_dim: int) -> np.ndarray:
    """The ``(n, input_dim)`` float32 states a job asked for, by id or as a synthetic spec."""
    if synthetic is not None:
        return synthetic_states(synthetic, input_dim)
    row = session.get(StateBuffer, states_id)
    if row is None:
        raise LookupError(f"state buffer {states_id} not found")
    return validate_states(load_npy(store.get(session, row.sha256)), input_dim)


def job_log_lines(session: Session, job_id: str, after: int, limit: int) -> list[JobLog]:
    """Up to ``limit`` of the job's log lines with an id above ``after``, oldest first."""
    query = (
        select(JobLog).where(col(JobLog.job_id) == job_id, col(JobLog.id) > after).order_by(col(JobLog.id)).limit(limit)
    )
    return list(session.exec(query).all())


def lineage_parent(session: Session, child_id: str, role: str) -> str | None:
    """The parent recorded for ``child_id`` under ``role`` (e.g. ``parent_a``), if any."""
    return session.exec(
        select(LineageEdge.parent_id).where(LineageEdge.child_id == child_id, LineageEdge.role == role)
    ).first()


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
        for edge in session.exec(
            select(LineageEdge).where(LineageEdge.child_id == child_id).order_by(col(LineageEdge.id))
        ):
            edges.append(edge)
            parent = session.get(Checkpoint, edge.parent_id) if edge.parent_id not in nodes else None
            if parent is not None:
                nodes[edge.parent_id] = parent
                frontier.append(edge.parent_id)
    return list(nodes.values()), edges


@dataclass(frozen=True)
class Descendant:
    checkpoint: Checkpoint
    depth: int
    parent: str
    role: str


def descendants(session: Session, checkpoint_id: str) -> tuple[list[Descendant], list[LineageEdge], bool]:
    """What was made from the checkpoint, directly or not: breadth first, one query per generation, at most
    ``LINEAGE_MAX_NODES``; returns the descendants, the edges among them and the root, and whether more exist.
    """
    found: dict[str, Descendant] = {}
    edges: list[LineageEdge] = []
    frontier, depth, truncated = [checkpoint_id], 0, False
    while frontier and not truncated:
        depth += 1
        generation = session.exec(
            select(LineageEdge).where(col(LineageEdge.parent_id).in_(frontier)).order_by(col(LineageEdge.id))
        ).all()
        new_ids = [
            edge.child_id for edge in generation if edge.child_id not in found and edge.child_id != checkpoint_id
        ]
        new_ids = list(dict.fromkeys(new_ids))
        if len(found) + len(new_ids) > LINEAGE_MAX_NODES:
            new_ids, truncated = new_ids[: LINEAGE_MAX_NODES - len(found)], True
        rows = {row.id: row for row in session.exec(select(Checkpoint).where(col(Checkpoint.id).in_(new_ids)))}
        for edge in generation:
            if edge.child_id in rows and edge.child_id not in found:
                found[edge.child_id] = Descendant(rows[edge.child_id], depth, edge.parent_id, edge.role)
        edges += [edge for edge in generation if edge.child_id in found]
        frontier = list(rows)
    return list(found.values()), edges, truncated


def descendant_ids(session: Session, checkpoint_ids: set[str]) -> set[str]:
    """Every checkpoint made, directly or not, from any of ``checkpoint_ids`` (not themselves), unbounded."""
    found: set[str] = set()
    frontier = set(checkpoint_ids)
    while frontier:
        children = set(session.exec(select(LineageEdge.child_id).where(col(LineageEdge.parent_id).in_(frontier))).all())
        frontier = children - found - checkpoint_ids
        found |= frontier
    return found
