"""Jobs: one ``POST /jobs/{kind}`` per kind (each with its documented body), list, read, cancel.

The API validates, writes the row, commits, then publishes the id: it never
runs model code in the request.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real
# params class of each generated route.
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, status
from sqlmodel import Session, select

from app import crud
from app.api.deps import AuthDep, CeleryDep, IdempotencyKey, PageDep, SessionDep
from app.api.errors import get_or_404, unprocessable
from app.core.queue import publish
from app.jobs import JOB_PARAMS, JobParams, StatesSpec, SyntheticStatesSpec
from app.models import TERMINAL_STATUSES, Checkpoint, Job, JobStatus, Report, StateBuffer, utcnow
from app.schemas import JobPublic, Page
from core.networks import QNetworkArch
from core.states import DEFAULT_EVAL_STATES, derive_seed

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[AuthDep])
log = logging.getLogger("recomb.api")


def check_references(session: Session, params: JobParams) -> None:
    """Resolve and check every id a job names, before it is queued.

    404 for an unknown checkpoint or state buffer; 422 for a checkpoint of the
    wrong format, networks whose shapes must match but do not, or states whose
    width fits none of the networks.
    """
    for field, (source_field, role) in params.lineage_defaults.items():
        if getattr(params, field) is None:
            parent = crud.lineage_parent(session, getattr(params, source_field), role)
            if parent is None:
                raise unprocessable(f"{field} is required: {getattr(params, source_field)} has no {role} in its lineage")
            setattr(params, field, parent)
    rows: dict[str, Checkpoint] = {}
    for field, required_format in params.checkpoint_refs.items():
        checkpoint_id = getattr(params, field)
        if checkpoint_id is None:
            continue
        row = get_or_404(session, Checkpoint, checkpoint_id, "checkpoint")
        if required_format and row.format != required_format:
            raise unprocessable(f"{field} must name a {required_format} checkpoint; {checkpoint_id} is {row.format}")
        rows[field] = row
    shaped = [(field, QNetworkArch(**rows[field].arch)) for field in params.same_shapes if field in rows]
    for field, arch in shaped[1:]:
        first_field, first_arch = shaped[0]
        if not arch.same_shapes(first_arch):
            raise unprocessable(f"architectures differ: {first_field} is {first_arch.describe()} but {field} is {arch.describe()}; " + shape_difference(first_arch, arch))
    for states_field, checkpoint_field in params.held_out_from.items():
        if getattr(params, states_field) is None:
            setattr(params, states_field, held_out_states(session, getattr(params, checkpoint_field)))
    for states_field in params.states_fields:
        states = getattr(params, states_field)
        if states is None or states.id is None:
            continue
        buffer = get_or_404(session, StateBuffer, states.id, "state buffer")
        for field, row in rows.items():
            if buffer.dim != row.arch["input_dim"]:
                raise unprocessable(f"{states_field} {states.id} have width {buffer.dim} but {field} expects input_dim {row.arch['input_dim']}")


def held_out_states(session: Session, checkpoint_id: str) -> StatesSpec:
    """Default evaluation states, drawn from a seed the checkpoint was not trained on."""
    seed = DEFAULT_EVAL_STATES.seed
    if crud.training_states_seed(session, checkpoint_id) == seed:
        seed = derive_seed(seed, "held_out")
    return StatesSpec(synthetic=SyntheticStatesSpec(n_states=DEFAULT_EVAL_STATES.n_states, seed=seed))


def shape_difference(first: QNetworkArch, second: QNetworkArch) -> str:
    """The mismatched tensors, e.g. ``network.0.weight [64, 8] vs [32, 8]``."""
    first_shapes, second_shapes = first.param_shapes(), second.param_shapes()
    return ", ".join(
        f"{key} {list(shape)} vs {list(second_shapes[key])}" for key, shape in first_shapes.items() if shape != second_shapes[key]
    )


def job_views(session: Session, jobs: list[Job]) -> list[JobPublic]:
    """Public views with report id, outputs and children, in three queries for the whole page."""
    ids = [job.id for job in jobs]
    reports = dict(session.exec(select(Report.job_id, Report.id).where(Report.job_id.in_(ids))).all()) if ids else {}
    outputs: dict[str, list[str]] = {}
    for job_id, checkpoint_id in session.exec(
        select(Checkpoint.created_by_job, Checkpoint.id).where(Checkpoint.created_by_job.in_(ids)).order_by(Checkpoint.output_index)
    ).all() if ids else []:
        outputs.setdefault(job_id, []).append(checkpoint_id)
    children: dict[str, list[str]] = {}
    for parent_id, child_id in session.exec(select(Job.parent_job_id, Job.id).where(Job.parent_job_id.in_(ids)).order_by(Job.created_at)).all() if ids else []:
        children.setdefault(parent_id, []).append(child_id)
    return [
        JobPublic.model_validate(job).model_copy(update={"report_id": reports.get(job.id), "output_checkpoint_ids": outputs.get(job.id, []), "children": children.get(job.id, [])})
        for job in jobs
    ]


def _create_job(session: Session, kind: str, params: JobParams, idempotency_key: str | None) -> tuple[Job, bool]:
    """Insert the job row (or find the one this idempotency key created); returns (job, created)."""
    if existing := crud.find_idempotent(session, Job, idempotency_key):
        return existing, False
    check_references(session, params)
    job = Job(kind=kind, params=params.model_dump(mode="json", exclude_none=True), idempotency_key=idempotency_key, published_at=utcnow())
    session.add(job)
    return crud.commit_idempotent(session, job, Job, idempotency_key)


def _route_for(kind: str, params_class: type[JobParams]):
    def create(params: Annotated[params_class, Body()], session: SessionDep, celery: CeleryDep, idempotency_key: IdempotencyKey = None) -> JobPublic:
        job, created = _create_job(session, kind, params, idempotency_key)
        if created:
            try:
                publish(job.id, kind, celery)
            except Exception:  # the row is committed: the reconciler publishes it once the broker is back
                log.warning("publishing job %s failed; the reconciler will retry", job.id, exc_info=True)
        return job_views(session, [job])[0]

    create.__name__ = f"create_{kind.replace('-', '_')}_job"
    create.__doc__ = params_class.__doc__
    return create


for _kind, _params_class in JOB_PARAMS.items():
    if _params_class.internal:
        continue
    router.add_api_route(
        f"/{_kind}",
        _route_for(_kind, _params_class),
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobPublic,
        summary=f"Queue a {_kind} job",
    )


@router.get("", response_model=Page[JobPublic])
def list_jobs(
    session: SessionDep,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    parent_job_id: Annotated[str | None, Query(max_length=40)] = None,
    page: PageDep = None,
) -> dict[str, Any]:
    query = select(Job)
    if kind:
        query = query.where(Job.kind == kind)
    if status_:
        query = query.where(Job.status == status_)
    if parent_job_id:
        query = query.where(Job.parent_job_id == parent_job_id)
    result = page.page(session, query, Job)
    return result | {"items": job_views(session, result["items"])}


def get_job_row(session: Session, job_id: str) -> Job:
    return get_or_404(session, Job, job_id, "job")


@router.get("/{job_id}", response_model=JobPublic)
def read_job(job_id: str, session: SessionDep) -> JobPublic:
    return job_views(session, [get_job_row(session, job_id)])[0]


@router.post("/{job_id}/cancel", response_model=JobPublic, status_code=status.HTTP_202_ACCEPTED, responses={409: {"description": "the job already finished"}})
def cancel_job(job_id: str, session: SessionDep) -> JobPublic:
    """Cancel a job and its children: queued ones at once, running ones at their next step."""
    job = get_job_row(session, job_id)
    if job.status in TERMINAL_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} already {job.status.value}")
    for target in [job, *session.exec(select(Job).where(Job.parent_job_id == job_id)).all()]:
        if target.status in (JobStatus.queued, JobStatus.waiting):
            target.status, target.finished_at, target.stage = JobStatus.cancelled, utcnow(), "cancelled"
        elif target.status == JobStatus.running:
            target.cancel_requested = True
        session.add(target)
    session.commit()
    session.refresh(job)
    return job_views(session, [job])[0]


@router.post("/{kind}", include_in_schema=False, status_code=status.HTTP_404_NOT_FOUND)
def unknown_kind(kind: str) -> None:
    public = [name for name, params_class in JOB_PARAMS.items() if not params_class.internal]
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown job kind {kind!r}; valid kinds: {', '.join(public)}")
