"""The Celery application and the one way jobs are published.

Messages carry only the job id; the database row is the source of truth.
The API uses this module to publish by task name (``recomb.<kind>``); the
worker registers its tasks on the same application.
"""

from __future__ import annotations

import os
import uuid
from functools import lru_cache
from time import monotonic

from celery import Celery
from kombu.transport import filesystem
from kombu.utils.json import dumps

from app.settings import Settings, get_settings

EMBEDDED_POLL_INTERVAL_S = 0.05
BROKER_CHECK_TIMEOUT_S = 2.0
URGENT_PRIORITY, NORMAL_PRIORITY = 0, 3


class _AtomicFilesystemChannel(filesystem.Channel):
    """The filesystem broker, with messages that appear whole.

    kombu writes a message into its final ``*.msg`` name; a consumer polling
    at that moment moves the empty or half-written file away and fails to
    decode it, which killed embedded workers under load. Writing to a name
    consumers ignore and renaming it into place (atomic on one filesystem)
    means a consumer sees a message only once all of it is there.
    """

    def _put(self, queue, payload, **kwargs):
        name = f"{int(round(monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        # No ".<queue>.msg" in the temporary name: kombu 5.3 matches names by substring.
        partial = os.path.join(self.data_folder_out, f".{uuid.uuid4()}.partial")
        try:
            with open(partial, "wb") as handle:
                handle.write(dumps(payload).encode())
            os.replace(partial, final)
        except BaseException:
            if os.path.exists(partial):
                os.remove(partial)
            raise


class AtomicFilesystemTransport(filesystem.Transport):
    Channel = _AtomicFilesystemChannel


def task_name(kind: str) -> str:
    return f"recomb.{kind}"


def make_celery(settings: Settings) -> Celery:
    app = Celery("recomb", broker=settings.resolved_broker_url, set_as_current=False)
    transport_options: dict = {}
    if settings.is_embedded:
        app.conf.broker_transport = f"{__name__}:AtomicFilesystemTransport"
        folder = settings.broker_dir
        folder.mkdir(parents=True, exist_ok=True)
        transport_options = {
            "data_folder_in": str(folder),
            "data_folder_out": str(folder),
            "control_folder": str(folder / "control"),
            "store_processed": False,
            "polling_interval": EMBEDDED_POLL_INTERVAL_S,
        }
    elif settings.broker_key_prefix:
        transport_options = {"global_keyprefix": settings.broker_key_prefix}
    app.conf.update(
        broker_transport_options=transport_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=settings.queue,
        task_serializer="json",
        accept_content=["json"],
        task_ignore_result=True,
        # Redis serves lower numbers first: jobs go out at NORMAL, wake-ups of
        # waiting composite jobs at URGENT so a search's leaderboard and next
        # rung do not queue behind its own trials (the filesystem broker is FIFO).
        task_default_priority=NORMAL_PRIORITY,
        # A job is acknowledged only once it has finished, and a worker that
        # dies mid-job returns it to the queue; one job at a time per process.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        # Workers report received/started/succeeded for Flower and `celery events`; a "sent" event per
        # publish would cost the API about 1 ms of CPU per job for one more state, so there is none.
        worker_send_task_events=True,
    )
    return app


@lru_cache
def get_celery() -> Celery:
    return make_celery(get_settings())


def publish(job_id: str, kind: str, celery: Celery | None = None, urgent: bool = False) -> None:
    (celery or get_celery()).send_task(
        task_name(kind), args=[job_id], priority=URGENT_PRIORITY if urgent else NORMAL_PRIORITY
    )


def queue_depth(celery: Celery | None = None) -> int:
    """Messages waiting in the job queue (0 when the broker lost them)."""
    app = celery or get_celery()
    with app.connection_for_write() as connection:
        connection.ensure_connection(
            max_retries=0, timeout=BROKER_CHECK_TIMEOUT_S
        )  # fail fast: callers treat errors as "unknown"
        # Not passive: a Redis queue with no messages has no key, and a passive declare calls that "not found".
        return int(connection.default_channel.queue_declare(queue=app.conf.task_default_queue).message_count)
