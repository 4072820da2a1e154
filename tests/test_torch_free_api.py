"""The web process never loads torch: importing it, and serving uploads, synthesis and exports with torch blocked."""

import hashlib
import io
import json
import subprocess
import sys
import textwrap

import numpy as np
import onnxruntime
import safetensors.torch
import torch
from torch import nn

from core.arch import QNetworkArch
from core.networks import QNetwork, functional_forward

# Runs in a fresh interpreter: any import of torch raises, so a request that needs it fails with a 500.
SERVE_WITHOUT_TORCH = textwrap.dedent(
    """
    import importlib.abc, json, pathlib, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith("torch."):
                raise ImportError(f"{name} must not be imported by the web process")
            return None

    sys.meta_path.insert(0, BlockTorch())
    from fastapi.testclient import TestClient
    from app.settings import Settings
    from app.main import create_app
    from migrations import upgrade

    work = pathlib.Path(sys.argv[1])
    settings = Settings(data_dir=work / "var", database_url=None, broker_url=None, api_keys="", artifact_store="db")
    settings.data_dir.mkdir(parents=True)
    upgrade(settings.resolved_database_url)
    results = {}
    with TestClient(create_app(settings)) as client:
        with open(work / "input.pt", "rb") as upload:
            uploaded = client.post("/checkpoints", files={"file": ("input.pt", upload)})
        results["upload"] = [uploaded.status_code, uploaded.json()]
        arch = {"input_dim": 6, "hidden_sizes": [40, 24], "output_dim": 3}
        synthetic = client.post("/checkpoints/synthetic", json={"arch": arch, "seed": 11})
        results["synthetic"] = [synthetic.status_code, synthetic.json()]
        for name in ("upload", "synthetic"):
            for export_format in ("onnx", "pt", "safetensors"):
                checkpoint_id = results[name][1]["id"]
                exported = client.get(f"/checkpoints/{checkpoint_id}/export", params={"format": export_format})
                assert exported.status_code == 200, exported.text
                (work / f"{name}.{export_format}").write_bytes(exported.content)
            stored = client.get(f"/checkpoints/{results[name][1]['id']}/file")
            (work / f"{name}.stored").write_bytes(stored.content)
    results["torch_loaded"] = "torch" in sys.modules
    print(json.dumps(results))
    """
)


def test_importing_the_web_app_loads_no_torch():
    check = "import app.main, sys; assert 'torch' not in sys.modules, 'app.main imported torch'"
    completed = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def test_core_configs_and_schemas_import_without_torch():
    check = (
        "import sys, core.configs, core.arch, core.checkpoint_file, core.export, core.states, core.work, app.api.schemas;"
        "assert 'torch' not in sys.modules"
    )
    completed = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr


def reference_synthetic_bytes(arch: QNetworkArch, seed: int) -> bytes:
    """What the service stored for a synthetic parent when torch drew it: torch's generator, torch's safetensors."""
    generator = torch.Generator().manual_seed(seed)
    tensors = {}
    for block in arch.blocks:
        weight = torch.empty(block.out_features, block.in_features)
        nn.init.xavier_uniform_(weight, generator=generator)
        tensors[block.weight] = weight
        tensors[block.bias] = torch.zeros(block.out_features)
        if block.norm:
            tensors[block.norm_weight] = torch.ones(block.out_features)
            tensors[block.norm_bias] = torch.zeros(block.out_features)
    header = {
        "arch": arch.to_dict(),
        "format": "float32",
        "format_version": 1,
        "metadata": {"origin": "synthetic", "seed": seed},
        "quantization": None,
        "source_format": "recomb",
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":"))
    return safetensors.torch.save({key: tensors[key] for key in sorted(tensors)}, metadata={"recomb": text})


def test_the_api_serves_upload_synthesis_and_exports_with_torch_blocked(tmp_path):
    uploaded_model = QNetwork(QNetworkArch(hidden_sizes=(48, 32)))
    buffer = io.BytesIO()
    torch.save(uploaded_model.state_dict(), buffer)
    (tmp_path / "input.pt").write_bytes(buffer.getvalue())

    completed = subprocess.run(
        [sys.executable, "-c", SERVE_WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True, timeout=300
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    results = json.loads(completed.stdout.strip().splitlines()[-1])
    assert results["torch_loaded"] is False
    assert results["upload"][0] == 201 and results["synthetic"][0] == 201

    # The synthetic parent is byte for byte the one torch's generator and writer made.
    synthetic_arch = QNetworkArch(6, (40, 24), 3)
    expected = reference_synthetic_bytes(synthetic_arch, 11)
    assert results["synthetic"][1]["sha256"] == hashlib.sha256(expected).hexdigest()
    assert (tmp_path / "synthetic.stored").read_bytes() == expected

    # The upload kept its tensors and source layout.
    stored = safetensors.torch.load((tmp_path / "upload.stored").read_bytes())
    for key, tensor in uploaded_model.state_dict().items():
        assert torch.equal(stored[key], tensor), key
    assert results["upload"][1]["source_format"] == "reference"

    states = torch.from_numpy(np.random.default_rng(5).standard_normal((300, 8)).astype(np.float32))
    with torch.no_grad():
        expected_q = functional_forward(uploaded_model_arch(results), uploaded_model.state_dict(), states).numpy()
    session = onnxruntime.InferenceSession((tmp_path / "upload.onnx").read_bytes(), providers=["CPUExecutionProvider"])
    onnx_q = session.run(None, {"states": states.numpy()})[0]
    assert np.abs(onnx_q - expected_q).max() < 1e-4
    assert (onnx_q.argmax(1) == expected_q.argmax(1)).all()

    pt_state = torch.load(io.BytesIO((tmp_path / "upload.pt").read_bytes()), weights_only=True)
    for key, tensor in uploaded_model.state_dict().items():
        assert torch.equal(pt_state[key], tensor), key
    exported_state = safetensors.torch.load((tmp_path / "upload.safetensors").read_bytes())
    assert all(torch.equal(exported_state[key], tensor) for key, tensor in uploaded_model.state_dict().items())


def uploaded_model_arch(results: dict) -> QNetworkArch:
    return QNetworkArch.from_dict(results["upload"][1]["arch"])
