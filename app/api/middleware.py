"""The API's door: what is refused before any body is read or parsed.

Three ASGI middlewares, outermost first:

- ``ApiKeyGate``: with keys configured, a request without a valid bearer
  token is refused (401) before a byte of its body is read; an accepted one
  carries its caller's key fingerprint in ``scope["state"]["caller"]``.
- ``Slots``: at most ``upload_concurrency`` uploads per process are
  received and parsed at once, and at most ``submit_concurrency`` job
  submissions handled; the next ones wait briefly for a slot (2 s for an
  upload, 0.1 s for a submission) and then get 429 with Retry-After. Uploads
  can never take every thread or database connection, and under a burst of
  submissions the API sheds what it cannot start promptly instead of
  growing a backlog of requests (which the queue bound does for jobs).
  Every request that may hold a database session also takes one of
  ``app.service.db.concurrent_sessions`` slots (a pooled connection each; one
  on SQLite, whose transactions hold its write lock): a session keeps its
  connection, or the lock, until its response is serialised on a thread, so
  with more such requests than slots, threads waiting for a connection (or
  the lock) could starve the requests that would free one. Beyond it a
  request waits up to 10 s, then gets 503.
- ``BodySizeLimit``: a body over its limit (uploads ``max_upload_bytes``,
  everything else ``max_body_bytes``) gets 413, at once when its
  Content-Length says so and otherwise as soon as the count passes the
  limit, without being buffered, parsed or echoed.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable

import anyio
from fastapi import HTTPException, status
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.settings import ROLES, Role

UPLOAD_PATHS = ("/checkpoints", "/states")
BODY_METHODS = ("POST", "PUT", "PATCH")
UPLOAD_SLOT_WAIT_S = 2.0
SUBMIT_SLOT_WAIT_S = 0.1
DATABASE_SLOT_WAIT_S = 10.0
SLOT_RETRY_AFTER_S = 1
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/", "/ui"})
OPEN_PREFIXES = ("/ui/", "/docs/assets/")
DOCS_PATHS = frozenset({"/docs", "/openapi.json"})
# Requests that never hold a request session: answered on the event loop, static files,
# or streams polling in short sessions.
SESSIONLESS_PATHS = frozenset({"/healthz", "/", "/ui"}) | DOCS_PATHS


def key_fingerprint(key: str) -> str:
    """Who a caller is, without the key itself: what jobs and idempotency keys are scoped by."""
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def caller_of(scope: Scope) -> str:
    """The fingerprint ``ApiKeyGate`` recorded for this request ("" when the API is open)."""
    return scope.get("state", {}).get("caller", "")


def role_of(scope: Scope) -> Role:
    """The role of the key ``ApiKeyGate`` let in; an open API (no keys configured) trusts every caller as admin."""
    return scope.get("state", {}).get("role", ROLES[-1])


def is_upload(scope: Scope) -> bool:
    return scope["method"] == "POST" and scope["path"] in UPLOAD_PATHS


def is_submission(scope: Scope) -> bool:
    """``POST /jobs/{kind}``: a new job (a cancel is not one)."""
    return scope["method"] == "POST" and scope["path"].startswith("/jobs/") and not scope["path"].endswith("/cancel")


def uses_database(scope: Scope) -> bool:
    path = scope["path"]
    return not (path in SESSIONLESS_PATHS or path.startswith(OPEN_PREFIXES) or path.endswith("/events"))


async def send_error(send: Send, status_code: int, detail: str, headers: dict[str, str] | None = None) -> None:
    """A complete ``{"detail": ...}`` response, sent without touching the request body."""
    body = json.dumps({"detail": detail}).encode()
    raw_headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw_headers += [(name.lower().encode(), value.encode()) for name, value in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status_code, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class ApiKeyGate:
    """Refuse requests without a valid bearer token (keys compared in constant time) before their body is read."""

    def __init__(self, app: ASGIApp, keys: list[tuple[str, Role]], public_docs: bool) -> None:
        self.app = app
        self.fingerprints = [(key.encode(), key_fingerprint(key), role) for key, role in keys]
        self.open_paths = OPEN_PATHS | DOCS_PATHS if public_docs else OPEN_PATHS

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.fingerprints or self._is_open(scope["path"]):
            await self.app(scope, receive, send)
            return
        offered = _bearer_token(scope)
        caller, caller_role = "", ROLES[0]
        # Compare with every key, without an early exit, so timing reveals nothing.
        for key, fingerprint, role in self.fingerprints:
            if hmac.compare_digest(offered, key):
                caller, caller_role = fingerprint, role
        if not caller:
            await send_error(
                send, status.HTTP_401_UNAUTHORIZED, "missing or invalid API key", {"WWW-Authenticate": "Bearer"}
            )
            return
        scope.setdefault("state", {}).update(caller=caller, role=caller_role)
        await self.app(scope, receive, send)

    def _is_open(self, path: str) -> bool:
        return path in self.open_paths or path.startswith(OPEN_PREFIXES)


def _bearer_token(scope: Scope) -> bytes:
    for name, value in scope["headers"]:
        if name == b"authorization":
            scheme, _, token = value.partition(b" ")
            return token.strip() if scheme.lower() == b"bearer" else b""
    return b""


class Slots:
    """At most ``slots`` matching requests in progress.

    Another waits up to ``wait_s`` for a free slot, then gets ``busy_status`` (429).
    """

    def __init__(
        self,
        app: ASGIApp,
        matches: Callable[[Scope], bool],
        slots: int,
        wait_s: float,
        what: str,
        setting: str,
        busy_status: int = status.HTTP_429_TOO_MANY_REQUESTS,
    ) -> None:
        self.app = app
        self.matches, self.slots, self.wait_s, self.busy_status = matches, slots, wait_s, busy_status
        self.busy_detail = f"{slots} {what} are already in progress ({setting}); retry after the Retry-After seconds"
        self.semaphore: anyio.Semaphore | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not self.matches(scope):
            await self.app(scope, receive, send)
            return
        if self.semaphore is None:  # made in the server's event loop, on first use
            self.semaphore = anyio.Semaphore(self.slots)
        acquired = False
        with anyio.move_on_after(self.wait_s):
            await self.semaphore.acquire()
            acquired = True
        if not acquired:
            await send_error(send, self.busy_status, self.busy_detail, {"Retry-After": str(SLOT_RETRY_AFTER_S)})
            return
        try:
            await self.app(scope, receive, send)
        finally:
            self.semaphore.release()


class BodySizeLimit:
    """413 for a body over its limit, before anything parses it, and never buffered here."""

    def __init__(self, app: ASGIApp, max_upload_bytes: int, max_body_bytes: int) -> None:
        self.app = app
        self.limits = {
            True: (max_upload_bytes, "upload", "RECOMB_MAX_UPLOAD_BYTES"),
            False: (max_body_bytes, "request body", "RECOMB_MAX_BODY_BYTES"),
        }

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in BODY_METHODS:
            await self.app(scope, receive, send)
            return
        limit, what, setting = self.limits[is_upload(scope)]
        detail = f"{what} larger than {setting} ({limit} bytes)"
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await send_error(send, status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail)
            return
        received = 0

        async def counted() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # Raised into whatever reads the body; FastAPI passes an HTTPException through as the response.
                    raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, detail)
            return message

        await self.app(scope, counted, send)
