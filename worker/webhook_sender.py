"""Send the webhook outbox: every due delivery attempt, signed, from a thread in each worker process.

An attempt is taken with a conditional UPDATE (a lease), so of several
workers only one sends it; the result and, after a failure, the next
attempt (due after ``webhook_base_delay_s`` x 2^(attempt-1)) are written in
one transaction. The outbox is rows in the database, so a restart loses
nothing: an attempt whose worker died is sent again once its lease lapses.
Before each attempt the host is resolved and checked again, and the
connection goes to an address that passed the check, so a name that
resolves elsewhere after registration (DNS rebinding) reaches nothing it
should not.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass
from datetime import timedelta
from importlib.metadata import version

import httpx
from sqlalchemy import or_, update
from sqlmodel import Session, col, select

from app.service.db import get_engine
from app.service.tables import Webhook, WebhookDelivery, utcnow
from app.service.webhook_outbox import (
    EVENT_HEADER,
    EVENT_ID_HEADER,
    SIGNATURE_HEADER,
    event_body,
    resolve_destination,
    signature,
)
from app.settings import Settings
from worker.periodic import start_periodic

log = logging.getLogger("recomb.webhooks")
# A lease outlasts the attempt's timeout by this much (name resolution, recording the result).
LEASE_MARGIN_S = 30.0
DUE_BATCH = 50
ERROR_MAX_CHARS = 500


@dataclass(frozen=True)
class Outcome:
    """What one attempt got: the receiver's status (if it answered) or why it failed, and how long it took."""

    status_code: int | None
    error: str | None
    duration_ms: float

    @property
    def delivered(self) -> bool:
        return self.error is None


def deliver_due(settings: Settings) -> int:
    """Make every delivery attempt that is due and not taken by another worker; returns how many were made."""
    now = utcnow()
    with Session(get_engine(settings)) as session:
        due = session.exec(
            select(WebhookDelivery.id)
            .where(col(WebhookDelivery.sent_at).is_(None), col(WebhookDelivery.due_at) <= now, _not_leased(now))
            .order_by(col(WebhookDelivery.due_at))
            .limit(DUE_BATCH)
        ).all()
    made = 0
    for delivery_id in due:
        made += _deliver(settings, delivery_id)
    return made


def _not_leased(now):
    return or_(col(WebhookDelivery.leased_until).is_(None), col(WebhookDelivery.leased_until) < now)


def _deliver(settings: Settings, delivery_id: str) -> bool:
    """Lease, send and record one attempt; False if another worker has it or it was sent meanwhile."""
    now = utcnow()
    lease = timedelta(seconds=settings.webhook_timeout_s + LEASE_MARGIN_S)
    with Session(get_engine(settings), expire_on_commit=False) as session:
        leased = session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery_id, col(WebhookDelivery.sent_at).is_(None), _not_leased(now))
            .values(leased_until=now + lease)
        ).rowcount
        session.commit()
        if leased != 1:
            return False
        delivery = session.get(WebhookDelivery, delivery_id)
        webhook = session.get(Webhook, delivery.webhook_id) if delivery else None
        body = event_body(session, delivery) if delivery else None
        session.commit()  # no transaction held while the receiver answers (on SQLite one would hold the lock)
    if delivery is None or webhook is None:
        return False  # the webhook was deleted with its deliveries
    if body is None:
        outcome = Outcome(None, f"job {delivery.job_id} no longer exists", 0.0)
    else:
        outcome = send(webhook.url, webhook.secret, body, delivery, settings)
    _record(settings, delivery, outcome)
    log.info(
        "webhook %s: %s of job %s, attempt %d: %s",
        webhook.id,
        delivery.event,
        delivery.job_id,
        delivery.attempt,
        "delivered" if outcome.delivered else outcome.error,
        extra={"job_id": delivery.job_id},
    )
    return True


def send(url: str, secret: str, body: bytes, delivery: WebhookDelivery, settings: Settings) -> Outcome:
    """POST ``body`` signed with ``secret`` to ``url``, connecting to an address checked just now."""
    started = time.perf_counter()

    def failed(error: str, status_code: int | None = None) -> Outcome:
        return Outcome(status_code, error[:ERROR_MAX_CHARS], (time.perf_counter() - started) * 1000)

    try:
        address = resolve_destination(url, settings.webhook_allow_private)[0]
    except ValueError as error:
        return failed(f"refused: {error}")
    target = httpx.URL(url)
    headers = {
        "Host": target.netloc.decode("ascii"),
        "Content-Type": "application/json",
        "User-Agent": f"recomb/{version('recomb')}",
        SIGNATURE_HEADER: signature(secret, body),
        EVENT_ID_HEADER: delivery.event_id,
        EVENT_HEADER: delivery.event,
    }
    try:
        # Redirects are not followed: a redirect could lead anywhere, past the address check.
        with httpx.Client(timeout=settings.webhook_timeout_s, follow_redirects=False, trust_env=False) as client:
            response = client.post(
                target.copy_with(host=str(address)),
                content=body,
                headers=headers,
                extensions={"sni_hostname": target.host},  # TLS checks the certificate against the URL's host
            )
    except httpx.TimeoutException:
        return failed(f"timed out after {settings.webhook_timeout_s:g} s (RECOMB_WEBHOOK_TIMEOUT_S)")
    except httpx.HTTPError as error:
        return failed(f"{type(error).__name__}: {error}")
    if not response.is_success:
        return failed(f"HTTP {response.status_code}", response.status_code)
    return Outcome(response.status_code, None, (time.perf_counter() - started) * 1000)


def _record(settings: Settings, delivery: WebhookDelivery, outcome: Outcome) -> None:
    """The attempt's result and, after a failure with attempts left, the next attempt: one transaction."""
    now = utcnow()
    with Session(get_engine(settings)) as session:
        recorded = session.exec(
            update(WebhookDelivery)
            .where(col(WebhookDelivery.id) == delivery.id, col(WebhookDelivery.sent_at).is_(None))
            .values(
                sent_at=now,
                leased_until=None,
                status_code=outcome.status_code,
                error=outcome.error,
                duration_ms=round(outcome.duration_ms, 3),
            )
        ).rowcount
        if recorded == 1 and not outcome.delivered and delivery.attempt < settings.webhook_attempts:
            backoff_s = settings.webhook_base_delay_s * 2 ** (delivery.attempt - 1)
            session.add(
                WebhookDelivery(
                    webhook_id=delivery.webhook_id,
                    event_id=delivery.event_id,
                    event=delivery.event,
                    job_id=delivery.job_id,
                    attempt=delivery.attempt + 1,
                    due_at=now + timedelta(seconds=backoff_s),
                )
            )
        session.commit()


def start_webhook_sender(settings: Settings, stop: threading.Event) -> threading.Thread:
    """A daemon thread sending due deliveries every ``webhook_poll_interval_s`` until ``stop``."""
    return start_periodic("webhook sender", settings.webhook_poll_interval_s, lambda: deliver_due(settings), stop, log)
