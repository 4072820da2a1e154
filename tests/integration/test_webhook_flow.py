"""Webhooks end to end on each stack: a real job succeeds and a real receiver gets exactly one signed POST."""

from __future__ import annotations

import hashlib
import hmac
import json
import time

import pytest

from tests.webhook_receiver import running_receiver

pytestmark = pytest.mark.integration
SECRET = "integration-shared-secret"
# Two workers poll the outbox; a second POST of the event, were there one, would come within a few polls.
DUPLICATE_WINDOW_POLLS = 3


def test_a_succeeded_job_is_posted_once_signed_and_recorded(stack):
    with running_receiver() as receiver:
        created = stack.client.post(
            "/webhooks", json={"url": receiver.url, "events": ["job.succeeded", "job.failed"], "secret": SECRET}
        )
        assert created.status_code == 201, created.text
        webhook_id = created.json()["id"]
        parent = stack.client.post("/checkpoints/synthetic", json={"seed": 11}).json()
        job = stack.wait_job(stack.client.post("/jobs/ptq", json={"checkpoint_id": parent["id"]}).json()["id"])
        assert job["status"] == "succeeded", job["error"]
        # The stack is shared: other tests' jobs may end meanwhile, and the webhook hears of those too.
        assert receiver.wait_for_job(job["id"], timeout_s=60), stack.logs()
        time.sleep(DUPLICATE_WINDOW_POLLS * stack.settings.webhook_poll_interval_s)
        posts = receiver.posts_about(job["id"])
    assert len(posts) == 1, posts
    (post,) = posts
    expected = "sha256=" + hmac.new(SECRET.encode(), post.body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(post.headers["x-recomb-signature"], expected)
    body = json.loads(post.body)
    assert (body["event"], body["job_id"], body["kind"], body["status"]) == (
        "job.succeeded",
        job["id"],
        "ptq",
        "succeeded",
    )
    assert (body["report_id"], body["passed"]) == (job["report_id"], True)
    assert body["event_id"] == post.headers["x-recomb-event-id"]

    deliveries = stack.client.get(f"/webhooks/{webhook_id}/deliveries").json()
    (attempt,) = [item for item in deliveries["items"] if item["job_id"] == job["id"]]
    assert (attempt["attempt"], attempt["status_code"], attempt["job_id"]) == (1, 200, job["id"])
    assert stack.client.get("/audit", params={"target_id": webhook_id}).json()["items"][0]["action"] == "webhook.create"
