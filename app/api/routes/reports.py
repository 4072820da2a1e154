"""Reports: versioned JSON bodies with a top-level ``passed``; listed by figure, compared side by side."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import Session, col, select

from app.api import figure_query
from app.api.deps import AuthDep, LabelFiltersDep, PageDep, SessionDep
from app.api.errors import get_or_404, not_found, unprocessable, valid_id
from app.api.schemas import (
    ComparedReport,
    FigureComparison,
    Page,
    ReportComparison,
    ReportPublic,
    ReportSummary,
)
from app.contracts.report_models import FigureValue, parse_report
from app.service import crud
from app.service.tables import Report, ResourceType

router = APIRouter(prefix="/reports", tags=["reports"], dependencies=[AuthDep])
MIN_COMPARED, MAX_COMPARED = 2, 20


def report_views(session: Session, rows: list[Report], view: type[ReportSummary] = ReportSummary) -> list[Any]:
    """Public views with their job's tags, in one query for the whole page."""
    tags = crud.tags_of(session, ResourceType.job, {row.job_id for row in rows})
    return [view.model_validate(row).model_copy(update={"tags": tags.get(row.job_id, [])}) for row in rows]


@router.get("", response_model=Page[ReportSummary])
def list_reports(
    session: SessionDep,
    page: PageDep,
    labels: LabelFiltersDep,
    kind: Annotated[str | None, Query(max_length=40)] = None,
    job_id: Annotated[str | None, Query(max_length=40)] = None,
    passed: bool | None = None,
    sort: Annotated[
        str, Query(max_length=130, pattern=r"^-?[A-Za-z0-9_.]+$", description=figure_query.SORT_DESCRIPTION)
    ] = "-created_at",
    where: Annotated[list[str] | None, Query(max_length=20, description=figure_query.WHERE_DESCRIPTION)] = None,
) -> dict:
    """Reports, filtered by kind, job, verdict, experiment, its job's tags, creation time and figures; sorted by
    creation time or a figure. A report lacking a figure it is sorted or filtered by is left out.
    """
    conditions = figure_query.parse_where(kind, where or [])
    query = labels.apply(select(Report), Report, ResourceType.job, Report.job_id)
    if kind:
        query = query.where(Report.kind == kind)
    if job_id:
        query = query.where(Report.job_id == job_id)
    if passed is not None:
        query = query.where(Report.passed == passed)
    query = figure_query.filter_by_figures(query, kind, conditions)
    query, order_by = figure_query.sort_by(query, kind, sort)
    result = page.page(session, query, Report, order_by)
    return result | {"items": report_views(session, result["items"])}


@router.get("/compare", response_model=ReportComparison)
def compare_reports(
    session: SessionDep,
    ids: Annotated[
        str,
        Query(
            max_length=20 * 41,
            description=f"{MIN_COMPARED} to {MAX_COMPARED} distinct report ids, comma-separated; differences are "
            "taken from the first",
        ),
    ],
) -> ReportComparison:
    """Reports side by side: each figure any of them shows, its values, and their differences from the first report's;
    with each report's per-epoch curves when its kind has them.
    """
    wanted = [identifier.strip() for identifier in ids.split(",") if identifier.strip()]
    if not MIN_COMPARED <= len(wanted) <= MAX_COMPARED or len(set(wanted)) != len(wanted):
        raise unprocessable(f"ids: give {MIN_COMPARED} to {MAX_COMPARED} distinct report ids, comma-separated")
    rows = {
        row.id: row
        for row in session.exec(select(Report).where(col(Report.id).in_([i for i in wanted if valid_id(i)]))).all()
    }
    unknown = [identifier for identifier in wanted if identifier not in rows]
    if unknown:
        raise not_found("reports", ", ".join(unknown))
    reports = [rows[identifier] for identifier in wanted]
    figures: dict[str, list[FigureValue]] = {}
    compared = []
    for index, row in enumerate(reports):
        body = parse_report(row.body)
        for figure in body.figures:
            figures.setdefault(figure.name, [None] * len(reports))[index] = figure.value
        curves = [epoch.model_dump() for epoch in getattr(body, "curves", [])]
        compared.append(ComparedReport(id=row.id, kind=row.kind, job_id=row.job_id, passed=row.passed, curves=curves))
    return ReportComparison(
        reports=compared,
        figures=[
            FigureComparison(name=name, values=values, differences=[_difference(value, values[0]) for value in values])
            for name, values in figures.items()
        ],
    )


def _difference(value: FigureValue, first: FigureValue) -> float | None:
    numbers = [item for item in (value, first) if isinstance(item, (int, float)) and not isinstance(item, bool)]
    return float(value) - float(first) if len(numbers) == 2 else None  # type: ignore[arg-type]


@router.get("/{report_id}", response_model=ReportPublic)
def get_report(report_id: str, session: SessionDep) -> ReportPublic:
    """One report; its body is the model of its job kind (a union on ``kind``), with the ``figures`` it shows."""
    return report_views(session, [get_or_404(session, Report, report_id, "report")], ReportPublic)[0]
