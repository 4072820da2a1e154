"""Webhooks: register a URL for job endings, list, read, delete, and see every delivery attempt.

Every route needs the admin role: a webhook's URL can carry a credential of
the receiver, and registering or deleting one is recorded in the audit log.
"""

from __future__ import annotations

from fastapi import APIRouter, Response, status
from sqlalchemy import delete
from sqlmodel import col, select

from app.api.deps import AdminDep, IdempotencyDep, PageDep, SessionDep, SettingsDep, require_role
from app.api.errors import get_or_404, unprocessable
from app.api.idempotency import commit_once, replay
from app.api.schemas import Page, WebhookCreate, WebhookDeliveryPublic, WebhookPublic
from app.service import audit
from app.service.tables import Webhook, WebhookDelivery
from app.service.webhook_outbox import resolve_destination

router = APIRouter(prefix="/webhooks", tags=["webhooks"], dependencies=[require_role("admin")])


@router.post("", status_code=status.HTTP_201_CREATED, response_model=WebhookPublic)
def create_webhook(
    body: WebhookCreate, session: SessionDep, settings: SettingsDep, caller: AdminDep, idempotency: IdempotencyDep
) -> Webhook:
    """Register a URL that gets a signed POST when a job ends (``X-Recomb-Signature: sha256=<hex>``).

    422 when the URL is not http(s), its host does not resolve, or it resolves to a loopback, private,
    link-local or unspecified address (unless RECOMB_WEBHOOK_ALLOW_PRIVATE=true).
    """
    request = idempotency.of(body.model_dump(mode="json"))
    if existing := replay(session, request, Webhook):
        return existing
    try:
        resolve_destination(body.url, settings.webhook_allow_private)
    except ValueError as error:
        raise unprocessable(str(error)) from error
    events: list[str] = list(dict.fromkeys(body.events))
    webhook = Webhook(url=body.url, events=events, secret=body.secret, created_by=caller)
    session.add(webhook)
    audit.record(session, caller, "webhook.create", "webhook", webhook.id, {"url": body.url, "events": events})
    return commit_once(session, request, webhook, Webhook)[0]


@router.get("", response_model=Page[WebhookPublic])
def list_webhooks(session: SessionDep, page: PageDep) -> dict:
    return page.page(session, select(Webhook), Webhook)


@router.get("/{webhook_id}", response_model=WebhookPublic)
def get_webhook(webhook_id: str, session: SessionDep) -> Webhook:
    return get_or_404(session, Webhook, webhook_id, "webhook")


@router.delete("/{webhook_id}", status_code=status.HTTP_204_NO_CONTENT, response_class=Response)
def delete_webhook(webhook_id: str, session: SessionDep, caller: AdminDep) -> Response:
    """Stop notifying the URL: the webhook goes with its delivery history, and events not yet sent are dropped."""
    webhook = get_or_404(session, Webhook, webhook_id, "webhook")
    session.exec(delete(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook_id))
    session.delete(webhook)
    audit.record(session, caller, "webhook.delete", "webhook", webhook_id, {"url": webhook.url})
    session.commit()
    return Response(status_code=status.HTTP_204_NO_CONTENT)


@router.get("/{webhook_id}/deliveries", response_model=Page[WebhookDeliveryPublic])
def list_webhook_deliveries(webhook_id: str, session: SessionDep, page: PageDep) -> dict:
    """Every delivery attempt, newest first: event, job, attempt number, HTTP status or error, duration, time.

    Attempts still waiting in the outbox are listed too, with no ``sent_at``.
    """
    get_or_404(session, Webhook, webhook_id, "webhook")
    query = select(WebhookDelivery).where(col(WebhookDelivery.webhook_id) == webhook_id)
    return page.page(session, query, WebhookDelivery)
