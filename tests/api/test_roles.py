"""API keys with roles: read < submit < admin, a bare key is admin, and every change of note is in the audit log."""

from __future__ import annotations

import io

import numpy as np
import pytest
from pydantic import ValidationError
from sqlmodel import Session

from app.api.middleware import key_fingerprint
from app.service import crud
from app.service.db import get_engine
from app.service.store import get_store
from app.settings import Settings
from core import checkpoint_file
from core.networks import QNetworkArch
from tests.api.conftest import client_for, make_settings

KEYS = {"reader": "read-key-0001", "submitter": "submit-key-0002", "admin": "admin-key-0003", "bare": "bare-key-0004"}
API_KEYS = f"{KEYS['reader']}:read,{KEYS['submitter']}:submit,{KEYS['admin']}:admin,{KEYS['bare']}"
SECRET = "a-secret-of-enough-length"


def auth(who: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {KEYS[who]}"}


@pytest.fixture
def keyed_settings(tmp_path):
    return make_settings(tmp_path, api_keys=API_KEYS, webhook_allow_private=True)


@pytest.fixture
def keyed(keyed_settings):
    with client_for(keyed_settings) as client:
        yield client


@pytest.fixture
def parent(keyed) -> dict:
    response = keyed.post("/checkpoints/synthetic", json={"seed": 0}, headers=auth("submitter"))
    assert response.status_code == 201, response.text
    return response.json()


def test_a_bare_key_is_admin_and_roles_parse():
    settings = Settings(api_keys=API_KEYS)
    assert settings.api_key_roles == [
        (KEYS["reader"], "read"),
        (KEYS["submitter"], "submit"),
        (KEYS["admin"], "admin"),
        (KEYS["bare"], "admin"),
    ]
    assert settings.api_key_list == list(KEYS.values())
    assert Settings(api_keys="with:colon:read").api_key_roles == [("with:colon", "read")]


def test_an_unknown_role_stops_startup_without_echoing_the_key():
    with pytest.raises(ValidationError) as refused:
        Settings(api_keys="fine-key,very-secret-token:owner")
    message = str(refused.value)
    assert "RECOMB_API_KEYS entry 2: expected key or key:role with role one of read, submit, admin" in message
    assert "very-secret-token" not in message and "owner" not in message


@pytest.mark.parametrize(
    "who, expected",
    [("reader", 403), ("submitter", 201), ("admin", 201), ("bare", 201)],
)
def test_creating_checkpoints_and_states_needs_submit(keyed, who, expected):
    synthetic = keyed.post("/checkpoints/synthetic", json={"seed": 3}, headers=auth(who))
    assert synthetic.status_code == expected, synthetic.text
    states = keyed.post("/states", files={"file": ("s.npy", _npy())}, headers=auth(who))
    assert states.status_code == expected, states.text
    if expected == 403:
        assert synthetic.json()["detail"] == (
            "this API key has the read role; POST /checkpoints/synthetic needs submit "
            "(RECOMB_API_KEYS grants it as key:submit)"
        )
        assert keyed.get("/checkpoints", headers=auth(who)).json()["total"] == 0
    else:
        assert synthetic.json()["created_by"] == key_fingerprint(KEYS[who])


@pytest.mark.parametrize("who, expected", [("reader", 403), ("submitter", 202), ("admin", 202)])
def test_queueing_and_cancelling_jobs_needs_submit(keyed, parent, who, expected):
    queued = keyed.post("/jobs/ptq", json={"checkpoint_id": parent["id"]}, headers=auth(who))
    assert queued.status_code == expected, queued.text
    if expected == 403:
        queued = keyed.post("/jobs/ptq", json={"checkpoint_id": parent["id"]}, headers=auth("submitter"))
    job = queued.json()
    owner = KEYS[who] if expected != 403 else KEYS["submitter"]
    assert job["owner"] == key_fingerprint(owner)
    assert keyed.post(f"/jobs/{job['id']}/cancel", headers=auth(who)).status_code == expected
    assert keyed.get(f"/jobs/{job['id']}", headers=auth(who)).json()["status"] == (
        "queued" if expected == 403 else "cancelled"
    )


@pytest.mark.parametrize("who", ["reader", "submitter", "admin", "bare"])
def test_every_key_reads(keyed, parent, who):
    for path in ("/jobs", "/checkpoints", f"/checkpoints/{parent['id']}", "/reports", "/states", "/metrics"):
        assert keyed.get(path, headers=auth(who)).status_code == 200, path
    assert keyed.get(f"/checkpoints/{parent['id']}", headers=auth(who)).json()["created_by"] == key_fingerprint(
        KEYS["submitter"]
    )


def test_without_a_valid_key_everything_is_401(keyed):
    for method, path in (("GET", "/jobs"), ("GET", "/audit"), ("POST", "/webhooks"), ("DELETE", "/webhooks/x")):
        assert keyed.request(method, path).status_code == 401
        assert keyed.request(method, path, headers={"Authorization": "Bearer read-key-000"}).status_code == 401


@pytest.mark.parametrize("who, expected", [("reader", 403), ("submitter", 403), ("admin", 201), ("bare", 201)])
def test_webhook_changes_and_the_audit_log_need_admin(keyed, who, expected):
    body = {"url": "http://127.0.0.1:9/hook", "secret": SECRET}
    created = keyed.post("/webhooks", json=body, headers=auth(who))
    assert created.status_code == expected, created.text
    webhook_id = (
        created.json()["id"]
        if expected == 201
        else keyed.post("/webhooks", json=body, headers=auth("admin")).json()["id"]
    )
    read_expected = 200 if expected == 201 else 403
    for path in ("/webhooks", f"/webhooks/{webhook_id}", f"/webhooks/{webhook_id}/deliveries", "/audit"):
        assert keyed.get(path, headers=auth(who)).status_code == read_expected, path
    deleted = keyed.delete(f"/webhooks/{webhook_id}", headers=auth(who))
    assert deleted.status_code == (204 if expected == 201 else 403)
    if expected == 403:
        assert deleted.json()["detail"].startswith(f"this API key has the {'read' if who == 'reader' else 'submit'}")
        assert f"DELETE /webhooks/{webhook_id} needs admin" in deleted.json()["detail"]
        assert keyed.get(f"/webhooks/{webhook_id}", headers=auth("admin")).status_code == 200


def test_the_audit_log_records_actor_and_target_and_filters(keyed):
    body = {"url": "http://127.0.0.1:9/hook", "secret": SECRET, "events": ["job.failed"]}
    first = keyed.post("/webhooks", json=body, headers=auth("admin")).json()
    second = keyed.post("/webhooks", json=body, headers=auth("bare")).json()
    assert keyed.delete(f"/webhooks/{first['id']}", headers=auth("bare")).status_code == 204
    assert keyed.post("/webhooks", json=body, headers=auth("submitter")).status_code == 403  # refused: not audited

    log = keyed.get("/audit", headers=auth("admin")).json()
    assert log["total"] == 3
    assert [(event["action"], event["target_id"], event["actor"]) for event in log["items"]] == [
        ("webhook.delete", first["id"], key_fingerprint(KEYS["bare"])),
        ("webhook.create", second["id"], key_fingerprint(KEYS["bare"])),
        ("webhook.create", first["id"], key_fingerprint(KEYS["admin"])),
    ]
    assert log["items"][2]["detail"] == {"url": "http://127.0.0.1:9/hook", "events": ["job.failed"]}
    assert all(event["target_type"] == "webhook" and SECRET not in str(event) for event in log["items"])
    deletes = keyed.get("/audit", params={"action": "webhook.delete"}, headers=auth("admin")).json()
    assert [event["target_id"] for event in deletes["items"]] == [first["id"]]
    about_first = keyed.get("/audit", params={"target_id": first["id"]}, headers=auth("admin")).json()
    assert [event["action"] for event in about_first["items"]] == ["webhook.delete", "webhook.create"]
    by_admin = keyed.get("/audit", params={"actor": key_fingerprint(KEYS["admin"])}, headers=auth("admin")).json()
    assert by_admin["total"] == 1
    paged = keyed.get("/audit", params={"limit": 1, "offset": 1}, headers=auth("admin")).json()
    assert (paged["total"], [event["target_id"] for event in paged["items"]]) == (3, [second["id"]])
    assert keyed.get("/webhooks", headers=auth("admin")).json()["items"][0]["created_by"] == key_fingerprint(
        KEYS["bare"]
    )


def test_registry_changes_need_submit_and_moves_and_deletes_need_admin_and_are_audited(keyed, parent):
    submitter, admin = auth("submitter"), auth("admin")
    assert keyed.post("/models", json={"name": "lander"}, headers=auth("reader")).status_code == 403
    assert keyed.post("/models", json={"name": "lander"}, headers=submitter).status_code == 201
    version = keyed.post("/models/lander/versions", json={"checkpoint_id": parent["id"]}, headers=submitter)
    assert version.status_code == 201 and version.json()["version"] == 1
    other = keyed.post("/checkpoints/synthetic", json={"seed": 9}, headers=submitter).json()
    assert (
        keyed.post("/models/lander/versions", json={"checkpoint_id": other["id"]}, headers=submitter).status_code == 201
    )

    moves = [
        ("PUT", "/models/lander/aliases/prod", {"version": 1}),
        ("PUT", "/models/lander/aliases/prod", {"version": 2}),
    ]
    refused = keyed.put("/models/lander/aliases/prod", json={"version": 1}, headers=submitter)
    assert refused.status_code == 403 and "needs admin" in refused.json()["detail"]
    for method, path, body in moves:
        assert keyed.request(method, path, json=body, headers=admin).status_code == 200
    assert keyed.delete("/models/lander/aliases/prod", headers=submitter).status_code == 403
    assert keyed.delete("/models/lander/aliases/prod", headers=admin).status_code == 204
    assert keyed.delete(f"/checkpoints/{other['id']}?cascade=true", headers=submitter).status_code == 403
    deleted = keyed.delete(f"/checkpoints/{other['id']}?cascade=true", headers=admin)
    assert deleted.status_code == 200 and deleted.json()["model_versions"] == ["lander@2"]
    assert keyed.post("/admin/retention?older_than_days=1", headers=submitter).status_code == 403
    assert keyed.post("/admin/retention?older_than_days=1", headers=admin).status_code == 200

    log = keyed.get("/audit", headers=admin).json()["items"]
    actor = key_fingerprint(KEYS["admin"])
    assert [(event["action"], event["target_id"], event["actor"]) for event in log[:4]] == [
        ("checkpoint.delete", other["id"], actor),
        ("model.alias.delete", "lander@prod", actor),
        ("model.alias.set", "lander@prod", actor),
        ("model.alias.set", "lander@prod", actor),
    ]
    assert log[2]["detail"] == {"version": 2, "previous_version": 1}
    assert log[3]["detail"] == {"version": 1, "previous_version": None}
    assert log[0]["detail"]["cascade"] is True and log[0]["detail"]["checkpoints"] == [other["id"]]


def test_a_jobs_outputs_belong_to_whoever_queued_it(keyed, keyed_settings, parent):
    job = keyed.post("/jobs/ptq", json={"checkpoint_id": parent["id"]}, headers=auth("admin")).json()
    arch = QNetworkArch()
    output = checkpoint_file.float_file(checkpoint_file.init_arrays(arch, 5), arch)
    with Session(get_engine(keyed_settings)) as session:
        row = crud.create_checkpoint(session, get_store(keyed_settings), output, job_id=job["id"])
        session.commit()
        output_id = row.id
    shown = keyed.get(f"/checkpoints/{output_id}", headers=auth("reader")).json()
    assert (shown["created_by"], shown["created_by_job"]) == (key_fingerprint(KEYS["admin"]), job["id"])


def test_an_open_api_lets_everyone_do_everything_and_records_no_key(tmp_path):
    with client_for(make_settings(tmp_path)) as client:
        created = client.post("/webhooks", json={"url": "http://93.184.215.14/hook", "secret": SECRET})
        assert created.status_code == 201, created.text
        assert client.get("/audit").json()["items"][0]["actor"] == ""
        assert client.post("/checkpoints/synthetic", json={"seed": 1}).json()["created_by"] == ""


def _npy() -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, np.zeros((4, 8), dtype=np.float32))
    return buffer.getvalue()
