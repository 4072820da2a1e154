"""``sort=`` and ``where=`` of the reports list: parsed, checked against the kind's figures, applied as indexed joins.

Syntax: ``sort=FIGURE`` (ascending) or ``sort=-FIGURE`` (descending), ``FIGURE`` one of the kind's
``figure_names`` or ``created_at``; ``where=NAME OP NUMBER`` (repeatable, all must hold), ``OP`` one of
``>= <= > < == !=``. A report without the figure is left out of a list sorted or filtered by it.
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement
from sqlalchemy.orm import aliased
from sqlmodel import col, exists
from sqlmodel.sql.expression import Select, SelectOfScalar

from app.api.errors import unprocessable
from app.contracts.job_kinds import JOB_KINDS
from app.contracts.report_models import figure_names
from app.service.tables import Report, ReportFigure

CREATED_AT = "created_at"
OPERATORS: dict[str, Callable[[Any, Any], Any]] = {
    ">=": operator.ge,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
    ">": operator.gt,
    "<": operator.lt,
}
WHERE_PATTERN = re.compile(r"^\s*([A-Za-z0-9_.]+)\s*(>=|<=|==|!=|>|<)\s*(\S+)\s*$")
SORT_DESCRIPTION = (
    "`FIGURE` ascending or `-FIGURE` descending: `created_at` or one of the figures of `kind` (required then), "
    "e.g. `-held_out.action_agreement`; default `-created_at`"
)
WHERE_DESCRIPTION = (
    "`FIGURE OP NUMBER` with OP one of >= <= > < == != and FIGURE one of the figures of `kind` (required), "
    "e.g. `held_out.action_agreement>=0.9`; repeat for several conditions, all must hold"
)


@dataclass(frozen=True)
class FigureCondition:
    name: str
    op: str
    value: float


def _checked_figure(kind: str | None, name: str, parameter: str) -> str:
    """``name`` if it is a figure of ``kind``; else a 422 naming the valid ones."""
    if kind is None or kind not in JOB_KINDS:
        sortable = sorted(name for name, job_kind in JOB_KINDS.items() if figure_names(job_kind.report_model))
        raise unprocessable(f"{parameter}: a figure needs a kind=; kinds with figures: {', '.join(sortable)}")
    valid = figure_names(JOB_KINDS[kind].report_model)
    if name not in valid:
        listed = ", ".join(valid) if valid else "none"
        raise unprocessable(f"{parameter}: {name!r} is not a figure of {kind} reports; valid figures: {listed}")
    return name


def parse_where(kind: str | None, conditions: Sequence[str]) -> list[FigureCondition]:
    parsed = []
    for text in conditions:
        match = WHERE_PATTERN.match(text)
        if match is None:
            raise unprocessable(f"where: {text!r} is not `FIGURE OP NUMBER` (OP one of {' '.join(OPERATORS)})")
        name, op, number = match.groups()
        try:
            value = float(number)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            raise unprocessable(f"where: {number!r} in {text!r} is not a finite number")
        parsed.append(FigureCondition(_checked_figure(kind, name, "where"), op, value))
    return parsed


def filter_by_figures(
    query: Select | SelectOfScalar, kind: str | None, conditions: Sequence[FigureCondition]
) -> Select | SelectOfScalar:
    """Reports of ``kind`` whose figures meet every condition: a probe per report, or a range of the figure index."""
    for condition in conditions:
        figure = aliased(ReportFigure)
        query = query.where(
            exists().where(
                col(figure.report_id) == Report.id,
                col(figure.kind) == kind,
                col(figure.name) == condition.name,
                OPERATORS[condition.op](col(figure.value), condition.value),
            )
        )
    return query


def sort_by(
    query: Select | SelectOfScalar, kind: str | None, sort: str
) -> tuple[Select | SelectOfScalar, list[ColumnElement]]:
    """``query`` joined to the figure it is sorted by (if any), and the ORDER BY that sort means."""
    descending = sort.startswith("-")
    name = sort.removeprefix("-")
    if name == CREATED_AT:
        return query, [col(Report.created_at).desc() if descending else col(Report.created_at).asc()]
    _checked_figure(kind, name, "sort")
    figure = aliased(ReportFigure)
    # kind and name lead the (kind, name, value) index, which then yields the rows already in order.
    query = query.join(
        figure, (col(figure.report_id) == Report.id) & (col(figure.kind) == kind) & (col(figure.name) == name)
    )
    return query, [col(figure.value).desc() if descending else col(figure.value).asc()]
