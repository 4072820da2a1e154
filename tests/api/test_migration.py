"""Data written before the architecture family stays readable after ``recomb migrate``.

The database is built by the migrations up to 0001 and filled the way the
code before the family wrote it (rows with ``hidden_size``, artifacts whose
safetensors header says ``hidden_size``, a distill report), then upgraded and
read back through the API, on SQLite and on PostgreSQL.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import sqlalchemy as sa
import torch
from fastapi.testclient import TestClient
from safetensors.torch import save as safetensors_save

from app.main import create_app
from core import artifacts
from core.networks import QNetworkArch, init_params
from core.quantize import inference_forward, quantize_dynamic
from migrations import upgrade
from tests.api.conftest import make_settings
from tests.test_migrations import empty_database  # noqa: F401  (the fixture: SQLite and PostgreSQL)

OLD_ARCH = {"input_dim": 8, "hidden_size": 32, "output_dim": 4, "dropout_rate": 0.0}
JOB_ID = "job_00000000000000000001"
# A distill report as the code of that time wrote it, student architecture aside.
V1_DISTILL_REPORT = next(
    row["body"]
    for row in json.loads((Path(__file__).parents[1] / "data" / "reports_v1.json").read_text())
    if row["kind"] == "distill"
)


def old_artifact(tensors: dict[str, torch.Tensor], checkpoint_format: str, quantization: dict | None) -> bytes:
    """Bytes exactly as the code before the family encoded them (header arch with ``hidden_size``)."""
    header = {
        "format_version": 1,
        "arch": OLD_ARCH,
        "format": checkpoint_format,
        "quantization": quantization,
        "metadata": {"stage": "distill"},
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    return safetensors_save({key: tensors[key].contiguous() for key in sorted(tensors)}, metadata={"recomb": text})


def test_rows_and_artifacts_from_before_the_family_read_through_the_api(tmp_path, empty_database):  # noqa: F811
    settings = make_settings(tmp_path, database_url=empty_database)
    settings.data_dir.mkdir(parents=True)
    url = settings.resolved_database_url
    upgrade(url, "0001")
    arch = QNetworkArch.reference(hidden_size=32, dropout_rate=0.0)
    float_tensors = init_params(arch, 0)
    int8 = quantize_dynamic(artifacts.float_checkpoint(float_tensors, arch)).checkpoint
    blobs = {
        "float": old_artifact(float_tensors, "float32", None),
        "int8": old_artifact(int8.tensors, "int8", int8.quantization),
    }
    now = datetime.now(UTC)
    engine = sa.create_engine(url)
    tables = sa.MetaData()
    tables.reflect(engine)
    with engine.begin() as connection:
        connection.execute(
            tables.tables["jobs"].insert().values(
                id=JOB_ID, kind="distill", params={"teacher_id": "ckpt_00000000000000000000"}, status="succeeded",
                progress=1.0, stage="done", attempts=1, cancel_requested=False, created_at=now,
            )
        )  # fmt: skip
        for index, (name, data) in enumerate(blobs.items()):
            sha = artifacts.sha256_hex(data)
            connection.execute(tables.tables["blobs"].insert().values(sha256=sha, size_bytes=len(data), data=data))
            connection.execute(
                tables.tables["checkpoints"].insert().values(
                    id=f"ckpt_0000000000000000000{index + 1}", name=name, arch=OLD_ARCH, format="int8" if name == "int8" else "float32",
                    dtype="int8" if name == "int8" else "float32", quantization=int8.quantization if name == "int8" else None,
                    sha256=sha, size_bytes=len(data), param_bytes=0, created_by_job=JOB_ID, output_index=index, created_at=now,
                )
            )  # fmt: skip
        connection.execute(
            tables.tables["reports"].insert().values(
                id="rep_00000000000000000001", job_id=JOB_ID, kind="distill", schema_version="1.0", passed=True,
                body=V1_DISTILL_REPORT | {"job_id": JOB_ID, "student_arch": OLD_ARCH}, created_at=now,
            )
        )  # fmt: skip
    engine.dispose()

    upgrade(url)
    with TestClient(create_app(settings)) as client:
        record = client.get("/checkpoints/ckpt_00000000000000000001").json()
        assert record["arch"] == arch.to_dict()
        assert record["source_format"] == "recomb"
        download = client.get("/checkpoints/ckpt_00000000000000000001/file").content
        assert download == blobs["float"]  # the artifact and its sha256 are untouched
        assert artifacts.decode(download).arch == arch
        stored_int8 = artifacts.decode(client.get("/checkpoints/ckpt_00000000000000000002/file").content)
        states = torch.randn(100, 8, generator=torch.Generator().manual_seed(0))
        torch.testing.assert_close(inference_forward(stored_int8)(states), inference_forward(int8)(states))
        report = client.get("/reports/rep_00000000000000000001").json()
        assert report["body"]["student_arch"] == OLD_ARCH and report["passed"]
        exported = client.get("/checkpoints/ckpt_00000000000000000002/export", params={"format": "onnx"})
        assert exported.status_code == 200
        # Old checkpoints take part in new jobs like any other.
        job = client.post("/jobs/ptq", json={"checkpoint_id": "ckpt_00000000000000000001"})
        assert job.status_code == 202, job.text
        crossed = client.post(
            "/jobs/crossover",
            json={"parent_a_id": "ckpt_00000000000000000001", "parent_b_id": "ckpt_00000000000000000002"},
        )
        assert crossed.status_code == 202, crossed.text
