"""Jobs: one ``POST /jobs/{kind}`` per kind (each with its documented body), list, read, cancel, rerun, logs.

The API validates, writes the row, commits, then publishes the id: it never
runs model code in the request.
"""

# No ``from __future__ import annotations`` here: FastAPI must see the real
# params class of each generated route.
import logging
import time
from collections.abc import Callable
from typing import Annotated, Any, cast

from celery import Celery
from fastapi import APIRouter, Body, HTTPException, Query, Request, Response, status
from pydantic import ValidationError
from sqlmodel import Session, col, exists, select

from app.api import admission
from app.api.deps import (
    AdminDep,
    AuthDep,
    CeleryDep,
    Idempotency,
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
    MAX_OFFSET,
    DeletedPublic,
    ErrorDetail,
    JobLogLine,
    JobLogPage,
    JobPublic,
    LabelsPatch,
    Page,
)
from app.contracts.job_kinds import (
    JOB_KINDS,
    PUBLIC_KINDS,
    JobInputs,
    JobKind,
    JobParams,
    StatesSpec,
    SyntheticStatesSpec,
)
from app.service import audit, crud, deletion, job_status, registry
from app.service.queue import publish
from app.service.tables import (
    TERMINAL_STATUSES,
    Checkpoint,
    Job,
    JobStatus,
    Report,
    ResourceType,
    StateBuffer,
    utcnow,
)
from app.settings import Settings
from core.arch import QNetworkArch, check_param_cap
from core.states import DEFAULT_EVAL_STATES, derive_seed

router = APIRouter(prefix="/jobs", tags=["jobs"], dependencies=[AuthDep])
log = logging.getLogger("recomb.api")


def resolve_model_refs(session: Session, params: JobParams) -> JobParams:
    """The params with every ``model@alias`` / ``model@3`` replaced by that version's checkpoint id, so the job records
    what it ran on, whatever the alias points at later.

    404 naming an unknown model, alias or version; 422 for a malformed reference.
    """

    def resolve(field: str, ref: str) -> str:
        try:
            return registry.resolve_checkpoint_ref(session, ref)
        except LookupError as error:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"{field}: {error}") from error
        except ValueError as error:
            raise unprocessable(f"{field}: {error}") from error

    resolved: dict[str, Any] = {}
    for field in params.checkpoint_refs:
        ref = getattr(params, field)
        if ref is not None and "@" in ref:
            resolved[field] = resolve(field, ref)
    for field in params.checkpoint_list_refs:
        refs = getattr(params, field) or []
        if any("@" in ref for ref in refs):
            resolved[field] = [resolve(f"{field}[{index}]", ref) for index, ref in enumerate(refs)]
    return params.with_resolved(**resolved) if resolved else params


def resolve_defaults(session: Session, params: JobParams) -> JobParams:
    """The params with the ids and states left out filled in: a teacher from the lineage, held-out states.

    422 when the lineage has no such parent.
    """
    resolved: dict[str, Any] = {}
    for field, (source_field, role) in params.lineage_defaults.items():
        if getattr(params, field) is None:
            parent = crud.lineage_parent(session, getattr(params, source_field), role)
            if parent is None:
                raise unprocessable(
                    f"{field} is required: {getattr(params, source_field)} has no {role} in its lineage"
                )
            resolved[field] = parent
    for states_field, checkpoint_field in params.held_out_from.items():
        if getattr(params, states_field) is None:
            resolved[states_field] = held_out_states(session, getattr(params, checkpoint_field))
    return params.with_resolved(**resolved) if resolved else params


def check_references(session: Session, params: JobParams, settings: Settings) -> JobInputs:
    """Check every id a job names, before it is queued; returns what its work estimate needs.

    404 for an unknown checkpoint or state buffer; 422 for a checkpoint of the
    wrong format, networks whose architectures must match but do not (naming
    both), a network the job would create over ``RECOMB_MAX_PARAMS``
    parameters, states whose width fits none of the networks, or states
    larger than ``RECOMB_MAX_STATE_VALUES``.
    """
    named = [(field, getattr(params, field), required) for field, required in params.checkpoint_refs.items()]
    for field, required_format in params.checkpoint_list_refs.items():
        named += [(f"{field}[{index}]", ref, required_format) for index, ref in enumerate(getattr(params, field) or [])]
    rows: dict[str, Checkpoint] = {}
    for field, checkpoint_id, required_format in named:
        if checkpoint_id is None:
            continue
        row = get_or_404(session, Checkpoint, checkpoint_id, "checkpoint")
        if required_format and row.format != required_format:
            raise unprocessable(f"{field} must name a {required_format} checkpoint; {checkpoint_id} is {row.format}")
        rows[field] = row
    archs = {field: QNetworkArch.from_dict(row.arch) for field, row in rows.items()}
    same_shapes = list(params.same_shapes)
    if params.checkpoint_list_refs:  # e.g. an evolution's founders
        first_list = next(iter(params.checkpoint_list_refs))
        same_shapes += [field for field in archs if field.startswith(f"{first_list}[")]
    shaped = [(field, archs[field]) for field in same_shapes if field in archs]
    for field, arch in shaped[1:]:
        first_field, first_arch = shaped[0]
        if not arch.same_function_family(first_arch):
            raise unprocessable(
                f"architectures differ: {first_field} is {first_arch.describe()} but {field} is {arch.describe()} "
                f"({first_arch.difference(arch)})"
            )
    try:
        created = params.new_archs(archs)
        for arch in created:
            check_param_cap(arch, settings.max_params)
    except ValueError as error:
        raise unprocessable(str(error)) from error
    input_dim = next(iter([*archs.values(), *created])).input_dim
    buffers: dict[str, StateBuffer] = {}
    for states_field in params.states_fields:
        states = getattr(params, states_field)
        if states is None:
            continue
        if states.id is None:
            admission.check_state_values(states_field, states.synthetic.n_states, input_dim, settings)
            continue
        buffer = buffers[states.id] = get_or_404(session, StateBuffer, states.id, "state buffer")
        for field, row in rows.items():
            if buffer.dim != row.arch["input_dim"]:
                raise unprocessable(
                    f"{states_field} {states.id} have width {buffer.dim} but {field} expects input_dim "
                    f"{row.arch['input_dim']}"
                )
            if buffer.actions_max is not None and buffer.actions_max >= row.arch["output_dim"]:
                raise unprocessable(
                    f"{states_field} {states.id} record action {buffer.actions_max} but {field} has "
                    f"{row.arch['output_dim']} actions"
                )
    if (
        n_states := getattr(params, "n_states", None)
    ) is not None:  # a search draws fine-tune and evaluation states of this size
        admission.check_state_values("n_states", n_states, input_dim, settings)

    def rows_of(spec: StatesSpec) -> int:
        if spec.synthetic is not None:
            return spec.synthetic.n_states
        buffer_id = cast(str, spec.id)  # a spec names a buffer when it is not synthetic
        if buffer_id not in buffers:  # named by a stage override of a pipeline
            buffers[buffer_id] = get_or_404(session, StateBuffer, buffer_id, "state buffer")
        return buffers[buffer_id].n

    return JobInputs(archs, rows_of)


def held_out_states(session: Session, checkpoint_id: str) -> StatesSpec:
    """Default evaluation states, drawn from a seed the checkpoint was not trained on."""
    seed = DEFAULT_EVAL_STATES.seed
    if crud.training_states_seed(session, checkpoint_id) == seed:
        seed = derive_seed(seed, "held_out")
    return StatesSpec(synthetic=SyntheticStatesSpec(n_states=DEFAULT_EVAL_STATES.n_states, seed=seed))


def job_views(session: Session, jobs: list[Job]) -> list[JobPublic]:
    """Public views with tags, report id, outputs and children, in at most four queries for the whole page.

    Only a succeeded job has a report and outputs, and only a composite job
    children (and outputs before it succeeds), so a page of unfinished simple
    jobs, what a polling client reads, costs one query (its tags) beyond its own.
    """
    succeeded = [job.id for job in jobs if job.status == JobStatus.succeeded]
    composite = [job.id for job in jobs if JOB_KINDS[job.kind].composite]
    with_outputs = list({*succeeded, *composite})
    reports = (
        dict(session.exec(select(Report.job_id, Report.id).where(col(Report.job_id).in_(succeeded))).all())
        if succeeded
        else {}
    )
    outputs: dict[str, list[str]] = {}
    for job_id, checkpoint_id in (
        session.exec(
            select(Checkpoint.created_by_job, Checkpoint.id)
            .where(col(Checkpoint.created_by_job).in_(with_outputs))
            .order_by(col(Checkpoint.output_index))
        ).all()
        if with_outputs
        else []
    ):
        outputs.setdefault(cast(str, job_id), []).append(checkpoint_id)  # one of with_outputs
    children: dict[str, list[str]] = {}
    for parent_id, child_id in (
        session.exec(
            select(Job.parent_job_id, Job.id).where(col(Job.parent_job_id).in_(composite)).order_by(col(Job.created_at))
        ).all()
        if composite
        else []
    ):
        children.setdefault(cast(str, parent_id), []).append(child_id)  # one of composite
    tags = crud.tags_of(session, ResourceType.job, [job.id for job in jobs])
    return [
        JobPublic.model_validate(job).model_copy(
            update={
                "tags": tags.get(job.id, []),
                "report_id": reports.get(job.id),
                "output_checkpoint_ids": outputs.get(job.id, []),
                "children": children.get(job.id, []),
            }
        )
        for job in jobs
    ]


class ServerTiming:
    """Milliseconds per phase of a request, sent as a ``Server-Timing`` header so clients and benchmarks see where time
    went.
    """

    def __init__(self) -> None:
        self.phases: list[tuple[str, float]] = []
        self._since = time.perf_counter()

    def mark(self, phase: str) -> None:
        now = time.perf_counter()
        self.phases.append((phase, (now - self._since) * 1000.0))
        self._since = now

    def header(self) -> str:
        return ", ".join(f"{phase};dur={ms:.2f}" for phase, ms in self.phases)


def queue_job(
    job_kind: JobKind,
    params: JobParams,
    session: Session,
    celery: Celery,
    settings: Settings,
    caller: str,
    idempotency: Idempotency,
    response: Response,
    http_request: Request,
) -> JobPublic:
    """Check, admit, commit and publish one job: what every way of queueing a job goes through."""
    kind = job_kind.name
    timing = ServerTiming()
    # Every field, defaults included: a retry that spells out a default is the same request.
    request = idempotency.of({"kind": kind, "params": params.model_dump(mode="json")})
    if existing := replay(session, request, Job):
        return job_views(session, [existing])[0]
    queue_counts = http_request.app.state.queue_counts
    admission.check_queue(
        session, settings, queue_counts, caller
    )  # first: the cheapest refusal, and the one a busy service gives most
    params = resolve_defaults(session, resolve_model_refs(session, params))
    inputs = check_references(session, params, settings)
    admission.check_work(kind, job_kind.estimate_work(params, inputs), settings)
    timing.mark("admit")
    job = Job(
        kind=kind,
        name=params.name,
        experiment=params.experiment,
        params=params.stored_params(),
        owner=caller,
        published_at=utcnow(),
    )
    session.add(job)
    crud.add_tags(session, ResourceType.job, job.id, params.tags)
    job, created = commit_once(session, request, job, Job)
    timing.mark("commit")
    if created:
        queue_counts.admitted(caller)
        try:
            publish(job.id, kind, celery)
        except Exception:  # the row is committed: the reconciler publishes it once the broker is back
            log.warning("publishing job %s failed; the reconciler will retry", job.id, exc_info=True)
        timing.mark("publish")
    # A job just created has no report, outputs or children to look up, and the tags it was sent.
    view = (
        JobPublic.model_validate(job).model_copy(update={"tags": sorted(params.tags)})
        if created
        else job_views(session, [job])[0]
    )
    timing.mark("view")
    response.headers["Server-Timing"] = timing.header()
    return view


BUSY_RESPONSE: dict[int | str, dict[str, Any]] = {
    429: {
        "model": ErrorDetail,
        "description": "the queue is past RECOMB_MAX_QUEUED_JOBS and this caller holds its fair share; retry "
        "after Retry-After seconds",
    }
}


def _route_for(job_kind: JobKind) -> Callable[..., JobPublic]:
    def create(
        params: Annotated[JobParams, Body()],
        session: SessionDep,
        celery: CeleryDep,
        settings: SettingsDep,
        caller: SubmitterDep,
        idempotency: IdempotencyDep,
        response: Response,
        http_request: Request,
    ) -> JobPublic:
        return queue_job(job_kind, params, session, celery, settings, caller, idempotency, response, http_request)

    create.__name__ = f"create_{job_kind.name.replace('-', '_')}_job"
    create.__doc__ = job_kind.params.__doc__
    # FastAPI reads the body's model from the annotation: this kind's params, not their base.
    create.__annotations__["params"] = Annotated[job_kind.params, Body()]
    return create


for _kind in PUBLIC_KINDS:
    router.add_api_route(
        f"/{_kind}",
        _route_for(JOB_KINDS[_kind]),
        methods=["POST"],
        status_code=status.HTTP_202_ACCEPTED,
        response_model=JobPublic,
        summary=f"Queue {_kind}: {JOB_KINDS[_kind].description}",
        responses=BUSY_RESPONSE,
    )


@router.get("", response_model=Page[JobPublic])
def list_jobs(
    session: SessionDep,
    page: PageDep,
    labels: LabelFiltersDep,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    status_: Annotated[JobStatus | None, Query(alias="status")] = None,
    parent_job_id: Annotated[str | None, Query(max_length=40)] = None,
    passed: Annotated[bool | None, Query(description="only jobs whose report passed (true) or failed (false)")] = None,
) -> dict[str, Any]:
    """Jobs, newest first, filtered by kind, status, parent, experiment, tags, verdict and creation time."""
    query = labels.apply(select(Job), Job, ResourceType.job, Job.id)
    if kind:
        query = query.where(Job.kind == kind)
    if status_:
        query = query.where(Job.status == status_)
    if parent_job_id:
        query = query.where(Job.parent_job_id == parent_job_id)
    if passed is not None:
        query = query.where(exists().where(col(Report.job_id) == Job.id, col(Report.passed) == passed))
    result = page.page(session, query, Job)
    return result | {"items": job_views(session, result["items"])}


def get_job_row(session: Session, job_id: str) -> Job:
    return get_or_404(session, Job, job_id, "job")


@router.get("/{job_id}", response_model=JobPublic)
def get_job(job_id: str, session: SessionDep) -> JobPublic:
    return job_views(session, [get_job_row(session, job_id)])[0]


@router.patch("/{job_id}", response_model=JobPublic)
def update_job(job_id: str, body: LabelsPatch, session: SessionDep, _caller: SubmitterDep) -> JobPublic:
    """Rename a job or replace its tags (fields left out keep their value). Its report shows the new tags."""
    job = get_job_row(session, job_id)
    crud.update_labels(session, ResourceType.job, job, body.model_dump(exclude_unset=True))
    session.commit()
    return job_views(session, [job])[0]


@router.post(
    "/{job_id}/cancel",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={409: {"description": "the job already finished"}},
)
def cancel_job(job_id: str, session: SessionDep, _caller: SubmitterDep) -> JobPublic:
    """Cancel a job and its children: queued ones at once, running ones at their next step."""
    job = get_job_row(session, job_id)
    if job.status in TERMINAL_STATUSES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"job {job_id} already {job.status.value}")
    job_status.cancel(session, job_id)
    session.commit()
    session.refresh(job)
    return job_views(session, [job])[0]


@router.delete(
    "/{job_id}",
    response_model=DeletedPublic,
    responses={
        409: {
            "model": ErrorDetail,
            "description": "the job or a child of it has not finished, or (cascade) an "
            "unfinished job uses one of its outputs",
        }
    },
)
def delete_job(
    job_id: str,
    session: SessionDep,
    store: StoreDep,
    caller: AdminDep,
    cascade: Annotated[
        bool, Query(description="also delete its output checkpoints and everything made from them")
    ] = False,
) -> DeletedPublic:
    """Delete a finished job with its child jobs and reports; its output checkpoints stay unless ``cascade``."""
    get_job_row(session, job_id)
    family = deletion.job_family(session, job_id)
    for member in family:
        if member.status not in TERMINAL_STATUSES:
            raise HTTPException(
                status.HTTP_409_CONFLICT,
                f"job {member.id} is {member.status.value}; cancel it and let it finish before deleting",
            )
    job_ids = [member.id for member in family]
    if cascade:
        outputs = deletion.job_outputs(session, job_ids)
        in_use = deletion.checkpoints_in_use(session, outputs | crud.descendant_ids(session, outputs))
        for used, job in sorted(in_use.items()):
            raise HTTPException(
                status.HTTP_409_CONFLICT, f"checkpoint {used} is used by {job.status.value} job {job.id}"
            )
    deleted = deletion.delete_jobs(session, store, job_ids, cascade=cascade)
    audit.record(session, caller, "job.delete", "job", job_id, deleted.detail(cascade))
    session.commit()
    return DeletedPublic(
        jobs=deleted.jobs,
        checkpoints=deleted.checkpoints,
        model_versions=deleted.model_versions,
        artifacts_removed=deleted.artifacts,
    )


@router.post(
    "/{job_id}/rerun",
    response_model=JobPublic,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        **BUSY_RESPONSE,
        409: {"model": ErrorDetail, "description": "the job is part of a composite job: rerun that one"},
        422: {"model": ErrorDetail, "description": "the job's params or inputs no longer pass the checks"},
    },
)
def rerun_job(
    job_id: str,
    session: SessionDep,
    celery: CeleryDep,
    settings: SettingsDep,
    caller: SubmitterDep,
    idempotency: IdempotencyDep,
    response: Response,
    http_request: Request,
) -> JobPublic:
    """Queue a new job of the same kind with the same params, checked and admitted as ``POST /jobs/{kind}`` is."""
    job = get_job_row(session, job_id)
    if job.kind not in PUBLIC_KINDS:
        raise HTTPException(
            status.HTTP_409_CONFLICT,
            f"job {job_id} is a {job.kind} job made by job {job.parent_job_id}; rerun that job instead",
        )
    job_kind = JOB_KINDS[job.kind]
    labels = crud.job_labels(session, job_id)
    try:
        # The same params under the same name, experiment and tags: a rerun files beside its original.
        params = job_kind.params.model_validate(
            job.params | {"name": job.name, "experiment": labels.experiment, "tags": list(labels.tags)}
        )
    except ValidationError as error:
        raise unprocessable(f"the params of job {job_id} no longer validate: {error}") from error
    return queue_job(job_kind, params, session, celery, settings, caller, idempotency, response, http_request)


@router.get("/{job_id}/logs", response_model=JobLogPage)
def get_job_logs(
    job_id: str,
    session: SessionDep,
    after: Annotated[
        int, Query(ge=0, le=MAX_OFFSET, description="only lines after this one (a `next_after` read before)")
    ] = 0,
    limit: Annotated[int, Query(ge=1, le=500, description="at most this many lines")] = 500,
) -> JobLogPage:
    """The job's own log lines (what its worker logged while running it), oldest first, read on with ``after``."""
    job = get_job_row(session, job_id)
    lines = crud.job_log_lines(session, job_id, after, limit)
    return JobLogPage(
        items=[JobLogLine.model_validate(line) for line in lines],
        next_after=lines[-1].id if lines else after,
        job_status=job.status,
    )


@router.post("/{kind}", include_in_schema=False, status_code=status.HTTP_404_NOT_FOUND)
def unknown_kind(kind: str) -> None:
    raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown job kind {kind!r}; valid kinds: {', '.join(PUBLIC_KINDS)}")
