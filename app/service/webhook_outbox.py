"""Webhooks: the outbox of job events, their signed bodies, and which addresses a webhook may reach.

A job's ending adds one delivery row per subscribed webhook in the
transaction that writes the terminal status (``app.service.job_status``), so
an event is recorded exactly when the ending is, and survives any restart
until a worker sends it (``worker.webhook_sender``).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import socket
from collections.abc import Sequence
from datetime import UTC, datetime
from urllib.parse import urlsplit

from sqlmodel import Session, col, select

from app.service.tables import Job, JobStatus, Report, Webhook, WebhookDelivery, new_id, utcnow

JOB_EVENTS = {
    JobStatus.succeeded: "job.succeeded",
    JobStatus.failed: "job.failed",
    JobStatus.cancelled: "job.cancelled",
}
EVENTS = tuple(JOB_EVENTS.values())
SIGNATURE_HEADER = "X-Recomb-Signature"
EVENT_ID_HEADER = "X-Recomb-Event-Id"
EVENT_HEADER = "X-Recomb-Event"
DEFAULT_PORTS = {"http": 80, "https": 443}

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def add_job_events(session: Session, job_ids: Sequence[str], status: JobStatus) -> int:
    """The first delivery attempt of the event of ``status`` for each job, to each webhook subscribed to it.

    Added to the caller's transaction (the one that ends the jobs); returns how many rows.
    """
    event = JOB_EVENTS.get(status)
    if event is None or not job_ids:
        return 0
    subscribed = [
        webhook_id for webhook_id, events in session.exec(select(Webhook.id, Webhook.events)) if event in events
    ]
    now = utcnow()
    for webhook_id in subscribed:
        for job_id in job_ids:
            session.add(
                WebhookDelivery(
                    webhook_id=webhook_id, event_id=new_id("evt"), event=event, job_id=job_id, attempt=1, due_at=now
                )
            )
    return len(subscribed) * len(job_ids)


def event_body(session: Session, delivery: WebhookDelivery) -> bytes | None:
    """The JSON body of a delivery, or None if its job is gone.

    Built from the finished job and its report, which no longer change, so every attempt at one event sends
    the same bytes.
    """
    job = session.get(Job, delivery.job_id)
    if job is None:
        return None
    report = session.exec(select(Report.id, Report.passed).where(col(Report.job_id) == job.id)).first()
    report_id, passed = report if report is not None else (None, None)
    payload = {
        "event": delivery.event,
        "event_id": delivery.event_id,
        "job_id": job.id,
        "kind": job.kind,
        "status": job.status.value,
        "error": job.error,
        "parent_job_id": job.parent_job_id,
        "report_id": report_id,
        "passed": passed,
        "created_at": _iso(job.created_at),
        "started_at": _iso(job.started_at),
        "finished_at": _iso(job.finished_at),
    }
    return json.dumps(payload, separators=(",", ":"), sort_keys=True).encode()


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    # SQLite returns naive datetimes; every stored time is UTC.
    return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).isoformat()


def signature(secret: str, body: bytes) -> str:
    """The ``X-Recomb-Signature`` value: ``sha256=`` and the hex HMAC-SHA256 of the raw body keyed by the secret."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def refused_kind(address: IPAddress) -> str | None:
    """Why a webhook may not reach ``address`` ("loopback", "private", ...), or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped  # ::ffff:127.0.0.1 is 127.0.0.1
    for kind, applies in (
        ("unspecified", address.is_unspecified),
        ("loopback", address.is_loopback),
        ("link-local", address.is_link_local),
        ("private", address.is_private),
        ("multicast", address.is_multicast),
        ("reserved", not address.is_global),
    ):
        if applies:
            return kind
    return None


def resolve_destination(url: str, allow_private: bool) -> list[IPAddress]:
    """The addresses ``url``'s host resolves to, every one allowed; ValueError naming the problem otherwise.

    Unless ``allow_private`` (``RECOMB_WEBHOOK_ALLOW_PRIVATE``), a host with any loopback, private,
    link-local, unspecified or otherwise non-public address is refused. Checked at registration and again
    before each delivery, whose connection then goes to one of these addresses (a host cannot resolve
    to a public address when checked and to a private one when connected to).
    """
    try:
        parts = urlsplit(url)
        port = parts.port or DEFAULT_PORTS.get(parts.scheme)
    except ValueError as error:
        raise ValueError(f"url is not a valid URL: {error}") from error
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname:
        raise ValueError("url must be an http:// or https:// URL with a host")
    host = parts.hostname
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as error:
        raise ValueError(f"url host {host!r} does not resolve ({error})") from error
    addresses = list(dict.fromkeys(ipaddress.ip_address(str(info[4][0]).split("%", 1)[0]) for info in infos))
    if not allow_private:
        for address in addresses:
            if kind := refused_kind(address):
                raise ValueError(
                    f"url host {host!r} resolves to {address}, a {kind} address; webhooks reach public addresses "
                    "only (RECOMB_WEBHOOK_ALLOW_PRIVATE=true allows others)"
                )
    return addresses
