"""The client commands (``recomb submit/watch/report/lineage/ls``) against a scripted server."""

import json

import httpx
import pytest

from app.cli import client as recomb_client
from app.cli.client import ClientError, RecombClient, parse_params, progress_line, render_lineage, render_report
from app.cli.commands import main
from app.contracts.job_kinds import JOB_KINDS, PUBLIC_KINDS
from tests.integration.stack import free_port

REAL_INIT = RecombClient.__init__
JOB_ID = "job_0123456789abcdef0123"
REPORT = {
    "id": "rep_0123456789abcdef0123",
    "job_id": JOB_ID,
    "kind": "validate-recombination",
    "schema_version": "2.0",
    "passed": False,
    "created_at": "2026-01-01T00:00:00",
    "body": {
        "kind": "validate-recombination",
        "passed": False,
        "checks": {
            "child_vs_parent_a.action_agreement": {"value": 0.53, "threshold": 0.7, "passed": False, "gates": True}
        },
        "held_out": {"child_vs_parent_a_agreement": 0.53, "child_vs_parent_b_agreement": 0.26, "primary_metric": 0.26},
        "figures": [
            {"name": "held_out.child_vs_parent_a_agreement", "value": 0.53},
            {"name": "held_out.child_vs_parent_b_agreement", "value": 0.26},
            {"name": "held_out.primary_metric", "value": 0.26},
        ],
    },
}


def sse(*snapshots: dict) -> str:
    return "".join(
        f"event: job\nid: {index}\ndata: {json.dumps(snapshot)}\n\n: heartbeat\n\n"
        for index, snapshot in enumerate(snapshots, 1)
    )


def snapshot(status: str, progress: float, stage: str, report_id=None, children=(0, 0), kind="distill") -> dict:
    return {
        "id": JOB_ID,
        "kind": kind,
        "status": status,
        "progress": progress,
        "stage": stage,
        "error": None,
        "report_id": report_id,
        "children_total": children[0],
        "children_finished": children[1],
    }


def scripted_server(monkeypatch, routes: dict, keys: tuple[str, ...] = ()) -> list[httpx.Request]:
    """Point the client commands at an in-memory server answering ``routes[(method, path)]``."""
    seen: list[httpx.Request] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        if keys and request.headers.get("authorization") not in {f"Bearer {key}" for key in keys}:
            return httpx.Response(401, json={"detail": "missing or invalid API key"})
        answer = routes.get((request.method, request.url.path))
        if answer is None:
            return httpx.Response(404, json={"detail": f"job {request.url.path.split('/')[2]!r} not found"})
        if isinstance(answer, str):
            return httpx.Response(200, text=answer, headers={"content-type": "text/event-stream"})
        return httpx.Response(answer[0], json=answer[1])

    monkeypatch.setattr(
        RecombClient,
        "__init__",
        lambda self, base_url, api_key=None, transport=None: REAL_INIT(
            self, base_url, api_key, httpx.MockTransport(handle)
        ),
    )
    return seen


def test_params_are_json_when_they_parse_and_dotted_keys_nest():
    params = parse_params(
        [
            "teacher_id=ckpt_abc",
            "epochs=3",
            "alpha=0.5",
            "export_int8=true",
            "states.synthetic.seed=7",
            "states.synthetic.n_states=100",
            "tags=[1, 2]",
            "note=hello world",
        ]
    )
    assert params == {
        "teacher_id": "ckpt_abc",
        "epochs": 3,
        "alpha": 0.5,
        "export_int8": True,
        "states": {"synthetic": {"seed": 7, "n_states": 100}},
        "tags": [1, 2],
        "note": "hello world",
    }
    with pytest.raises(ClientError, match="expected KEY=VALUE"):
        parse_params(["epochs"])
    with pytest.raises(ClientError, match="states is already set"):
        parse_params(["states=1", "states.synthetic.seed=2"])


def test_progress_line_shows_stage_and_trials():
    line = progress_line(snapshot("running", 0.5, "trial 3: fine-tune epoch 2/5", children=(8, 3), kind="search"))
    assert (
        f"{JOB_ID}  search  [############------------]   50%  running  trial 3: fine-tune epoch 2/5  trials 3/8" == line
    )


def test_submit_watch_prints_progress_and_the_report_and_exits_1_when_the_report_failed(monkeypatch, capsys):
    seen = scripted_server(
        monkeypatch,
        {
            ("POST", "/jobs/distill"): (202, {"id": JOB_ID}),
            ("GET", f"/jobs/{JOB_ID}/events"): sse(
                snapshot("queued", 0, "queued"),
                snapshot("running", 0.5, "distilling: epoch 5/10"),
                snapshot("succeeded", 1.0, "done", REPORT["id"]),
            ),
            ("GET", f"/reports/{REPORT['id']}"): (200, REPORT),
        },
        keys=("k1",),
    )
    monkeypatch.setenv("RECOMB_API_KEY", "k1")
    code = main(["submit", "distill", "--param", "teacher_id=ckpt_x", "-p", "epochs=10", "--watch"])
    out, err = capsys.readouterr()
    assert code == 1  # succeeded, but the report did not pass
    assert json.loads(seen[0].content) == {"teacher_id": "ckpt_x", "epochs": 10}
    assert out.splitlines()[0] == JOB_ID
    assert "distilling: epoch 5/10" in err and "100%  succeeded" in err
    assert f"report {REPORT['id']}  validate-recombination  job {JOB_ID}  FAILED" in out
    assert "child_vs_parent_a.action_agreement  0.53   0.7        FAIL    gates" in out
    assert "held_out.primary_metric" in out


def test_watch_exits_0_only_when_the_job_succeeded_and_passed(monkeypatch, capsys):
    passed = REPORT | {"passed": True}
    routes = {
        ("GET", f"/jobs/{JOB_ID}/events"): sse(snapshot("succeeded", 1.0, "done", REPORT["id"])),
        ("GET", f"/reports/{REPORT['id']}"): (200, passed),
    }
    scripted_server(monkeypatch, routes)
    assert main(["watch", JOB_ID]) == 0
    failed = snapshot("failed", 0.3, "distilling: epoch 3/10") | {"error": "RuntimeError: loss is NaN"}
    scripted_server(monkeypatch, {("GET", f"/jobs/{JOB_ID}/events"): sse(failed)})
    assert main(["watch", JOB_ID]) == 1
    assert f"job {JOB_ID} failed: RuntimeError: loss is NaN" in capsys.readouterr().err


def test_errors_are_one_line_with_exit_code_2(monkeypatch, capsys):
    scripted_server(monkeypatch, {}, keys=("k1",))
    monkeypatch.delenv("RECOMB_URL", raising=False)
    monkeypatch.delenv("RECOMB_API_KEY", raising=False)
    assert main(["watch", JOB_ID]) == 2
    assert capsys.readouterr().err == "recomb: http://127.0.0.1:8000 needs an API key: set RECOMB_API_KEY (401)\n"
    monkeypatch.setenv("RECOMB_API_KEY", "wrong")
    assert main(["ls", "jobs"]) == 2
    assert capsys.readouterr().err == "recomb: http://127.0.0.1:8000 refused the API key in RECOMB_API_KEY (401)\n"
    monkeypatch.setenv("RECOMB_API_KEY", "k1")
    assert main(["report", JOB_ID]) == 2
    assert capsys.readouterr().err == f"recomb: job '{JOB_ID}' not found (404)\n"


def test_a_server_that_is_down_is_one_line(monkeypatch, capsys):
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    monkeypatch.setenv("RECOMB_URL", url)
    for command in (["ls", "jobs"], ["watch", JOB_ID], ["submit", "ptq", "-p", "checkpoint_id=ckpt_x"]):
        assert main(command) == 2
        err = capsys.readouterr().err
        assert err.startswith(f"recomb: cannot reach the recomb server at {url}") and err.count("\n") == 1


def test_a_busy_server_is_waited_for_as_it_asks_and_a_retried_submission_keeps_its_key(monkeypatch, capsys):
    answers = iter(
        [
            httpx.Response(429, json={"detail": "busy"}, headers={"Retry-After": "1"}),
            httpx.Response(202, json={"id": JOB_ID, "status": "queued"}),
        ]
    )
    seen: list[httpx.Request] = []
    waits: list[float] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        return next(answers)

    monkeypatch.setattr(recomb_client.time, "sleep", waits.append)
    client = RecombClient("http://recomb.test", transport=httpx.MockTransport(handle))
    assert client.submit("ptq", {"checkpoint_id": "ckpt_x"})["id"] == JOB_ID
    assert waits == [1.0]
    assert len(seen) == 2 and seen[0].headers["Idempotency-Key"] == seen[1].headers["Idempotency-Key"]


def test_report_and_lineage_render_as_tables_and_trees():
    lineage = {
        "root": "ckpt_c",
        "nodes": [
            {
                "id": node,
                "name": f"net-{node[-1]}",
                "format": "float32",
                "arch": {
                    "input_dim": 8,
                    "hidden_sizes": [32, 32],
                    "output_dim": 4,
                    "norm": "none",
                    "activation": "tanh",
                },
            }
            for node in ("ckpt_c", "ckpt_b", "ckpt_a")
        ],
        "edges": [
            {"parent": "ckpt_b", "child": "ckpt_c", "role": "source", "job_id": "job_2"},
            {"parent": "ckpt_a", "child": "ckpt_c", "role": "reference", "job_id": "job_2"},
            {"parent": "ckpt_a", "child": "ckpt_b", "role": "parent_a", "job_id": "job_1"},
        ],
    }
    assert render_lineage(lineage).splitlines() == [
        "ckpt_c  net-c  float32  8-32-32-4 none tanh",
        "├── source: ckpt_b  net-b  float32  8-32-32-4 none tanh  by job_2",
        "│   └── parent_a: ckpt_a  net-a  float32  8-32-32-4 none tanh  by job_1",
        "└── reference: ckpt_a  net-a  float32  8-32-32-4 none tanh  by job_2  (see above)",
    ]
    search = REPORT | {
        "kind": "search",
        "body": {
            "leaderboard": [
                {
                    "rank": 1,
                    "trial_id": "t003",
                    "primary_metric": 0.81,
                    "child_vs_parent_a_agreement": 0.9,
                    "child_vs_parent_b_agreement": 0.81,
                    "is_parent_baseline": False,
                    "degenerate": False,
                }
            ],
            "figures": [],
        },
    }
    assert "1     t003   0.81     0.9      0.81" in render_report(search)


def test_the_client_module_does_not_import_torch():
    assert "torch" not in recomb_client.__dict__


@pytest.mark.parametrize("kind", PUBLIC_KINDS)
def test_submit_kind_help_lists_every_parameter_with_its_description_without_a_server(kind, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["submit", kind, "--help"])
    assert exit_code.value.code == 0
    text = capsys.readouterr().out
    model = JOB_KINDS[kind].params
    properties = model.model_json_schema()["properties"]
    for name, info in model.model_fields.items():
        assert f"\n  {info.alias or name} " in text, name
        assert properties[info.alias or name]["description"] in text, name


def test_submit_help_shows_defaults_and_bounds_from_the_params_model(capsys):
    with pytest.raises(SystemExit):
        main(["submit", "distill", "--help"])
    lines = capsys.readouterr().out.splitlines()
    epochs = lines.index(next(line for line in lines if line.strip().startswith("epochs ")))
    assert "passes over the training states" in lines[epochs]
    assert lines[epochs + 1].split() == ["default:", "10;", "values:", "integer", ">=", "1,", "<=", "100000"]
    teacher = lines.index(next(line for line in lines if line.strip().startswith("teacher_id ")))
    assert "default: required" in lines[teacher + 1]
    loss = lines.index(next(line for line in lines if line.strip().startswith("loss_fn ")))
    assert 'default: "kl"; values: one of kl, mse' in lines[loss + 1]
