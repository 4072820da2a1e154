"""Upload plumbing shared by ``POST /checkpoints`` and ``POST /states``.

Size limits and concurrency are enforced before a handler runs
(``app.api.middleware``); handlers are plain functions, run in the thread
pool, so parsing and database work never block the event loop.
"""

from __future__ import annotations

from typing import Any

from fastapi import UploadFile

from app.api.errors import unprocessable
from app.api.schemas import ErrorDetail

UPLOAD_ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    413: {"model": ErrorDetail, "description": "the body is larger than RECOMB_MAX_UPLOAD_BYTES"},
    429: {
        "model": ErrorDetail,
        "description": "RECOMB_UPLOAD_CONCURRENCY uploads are in progress; retry after Retry-After seconds",
    },
}


def read_file(file: UploadFile) -> bytes:
    """The whole uploaded file (its size is already bounded); 422 when empty."""
    data = file.file.read()
    if not data:
        raise unprocessable("the uploaded file is empty")
    return data


def file_name(name: str | None, file: UploadFile) -> str | None:
    return name or (file.filename[:200] if file.filename else None)
