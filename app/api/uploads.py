"""Upload plumbing: a body-size limit applied before parsing, and idempotent commits."""

from __future__ import annotations

from fastapi import UploadFile
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.api.errors import unprocessable
from app.schemas import ErrorDetail

UPLOAD_PATHS = ("/checkpoints", "/states")
UPLOAD_ERROR_RESPONSES = {413: {"model": ErrorDetail, "description": "the body is larger than RECOMB_MAX_UPLOAD_BYTES"}}


class UploadSizeLimit:
    """Answer 413 for an upload body over ``max_bytes`` before anything parses it.

    A declared Content-Length is checked at once; a chunked body is buffered
    up to the limit and refused as soon as it passes it.
    """

    def __init__(self, app: ASGIApp, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "POST" or scope["path"] not in UPLOAD_PATHS:
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send)
            return
        messages: list[Message] = []
        size = 0
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request":
                break
            size += len(message.get("body", b""))
            if size > self.max_bytes:
                await self._refuse(send)
                return
            if not message.get("more_body", False):
                break

        async def replay() -> Message:
            return messages.pop(0) if messages else await receive()

        await self.app(scope, replay, send)

    async def _refuse(self, send: Send) -> None:
        body = f'{{"detail":"upload larger than RECOMB_MAX_UPLOAD_BYTES ({self.max_bytes} bytes)"}}'.encode()
        await send({"type": "http.response.start", "status": 413, "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})


async def read_limited(file: UploadFile) -> bytes:
    data = await file.read()
    if not data:
        raise unprocessable("the uploaded file is empty")
    return data
