"""The embedded (filesystem) broker shows a message only once all of it is written."""

from __future__ import annotations

import json
import os

import pytest

from app.service.queue import make_celery, queue_depth
from app.settings import Settings


def test_a_message_is_invisible_until_it_is_whole(tmp_path, monkeypatch):
    celery = make_celery(Settings(data_dir=tmp_path))
    folder = tmp_path / "broker"
    renamed = []

    def interrupted_replace(source, target):
        # The moment before the rename: what a polling consumer would find then.
        renamed.append((sorted(os.listdir(folder)), queue_depth(celery)))
        raise OSError("interrupted")

    monkeypatch.setattr(os, "replace", interrupted_replace)
    with pytest.raises(Exception):
        celery.send_task("recomb.ptq", args=["job_1"])
    ((listing, depth),) = renamed
    assert depth == 0 and not any(name.endswith(".msg") for name in listing)
    # Nothing half-written is left behind. ("control" holds bindings; kombu records them once per process,
    # so it exists only if no earlier test in this process published.)
    assert [name for name in os.listdir(folder) if name != "control"] == []
    monkeypatch.undo()

    celery.send_task("recomb.ptq", args=["job_2"])
    assert queue_depth(celery) == 1
    (message,) = [name for name in os.listdir(folder) if name.endswith(".recomb.msg")]
    body = json.loads((folder / message).read_text())
    assert body["headers"]["task"] == "recomb.ptq"
