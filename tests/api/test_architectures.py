"""Any MLP in, deployable files out: the architecture family at the door, library imports, and exports judged by their runtimes."""

from __future__ import annotations

import io
import json
import zipfile

import numpy as np
import onnxruntime
import pytest
import torch
from safetensors.torch import load as safetensors_load
from torch import nn

from core import artifacts, metrics
from core.networks import QNetworkArch, init_params
from core.quantize import inference_forward, quantize_dynamic
from core.states import SyntheticStates, synthetic_states
from tests.api.conftest import client_for, make_settings
from tests.archs import ARCH_IDS, ARCH_MATRIX

sb3 = pytest.importorskip("stable_baselines3")


def synthetic(client, arch: dict, seed: int = 0) -> dict:
    response = client.post("/checkpoints/synthetic", json={"arch": arch, "seed": seed})
    assert response.status_code == 201, response.text
    return response.json()


def upload(client, data: bytes, name: str = "net.pt", **form) -> object:
    return client.post("/checkpoints", files={"file": (name, data)}, data=form)


def fresh_states(input_dim: int, n: int = 2000) -> np.ndarray:
    return synthetic_states(SyntheticStates(n, 2024), input_dim)


def onnx_q_values(data: bytes, states: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"states": states})[0]


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_synthetic_takes_the_full_form_and_records_it(client, arch_id):
    arch = ARCH_MATRIX[arch_id]
    record = synthetic(client, arch.to_dict())
    assert record["arch"] == arch.to_dict()
    assert record["param_bytes"] == 4 * arch.param_count
    assert record["source_format"] == "recomb"


def test_hidden_size_stays_shorthand_for_two_equal_layers(client):
    assert synthetic(client, {"hidden_size": 32})["arch"]["hidden_sizes"] == [32, 32]
    both = client.post("/checkpoints/synthetic", json={"arch": {"hidden_size": 32, "hidden_sizes": [32]}, "seed": 0})
    assert both.status_code == 422 and "not both" in json.dumps(both.json())


@pytest.mark.parametrize(
    ("arch", "unsupported"),
    [
        ({"activation": "swish"}, "activation"),
        ({"norm": "batchnorm"}, "norm"),
        ({"hidden_sizes": [16] * 9}, "hidden_sizes"),
        ({"hidden_sizes": [16, 5000]}, "hidden_sizes"),
        ({"residual": True}, "residual"),
    ],
)
def test_outside_the_family_is_422_naming_what(client, arch, unsupported):
    response = client.post("/checkpoints/synthetic", json={"arch": arch, "seed": 0})
    assert response.status_code == 422
    assert unsupported in json.dumps(response.json()["detail"])


def test_parameter_cap_is_a_setting_enforced_at_the_door(tmp_path):
    with client_for(make_settings(tmp_path, max_params=6000)) as client:
        assert client.post("/checkpoints/synthetic", json={"arch": {}, "seed": 0}).status_code == 201
        big = client.post("/checkpoints/synthetic", json={"arch": {"hidden_sizes": [64, 64, 64]}, "seed": 0})
        assert big.status_code == 422 and "over the limit of 6,000" in big.json()["detail"]
        teacher = client.get("/checkpoints").json()["items"][0]["id"]
        wide_student = client.post(
            "/jobs/distill", json={"teacher_id": teacher, "hidden_sizes": [4096, None], "init": "random"}
        )
        assert wide_student.status_code == 422 and "over the limit of 6,000" in wide_student.json()["detail"]
        wrong_depth = client.post("/jobs/distill", json={"teacher_id": teacher, "hidden_sizes": [16]})
        assert wrong_depth.status_code == 422 and "needs 2 entries" in wrong_depth.json()["detail"]
        buffer = io.BytesIO()
        torch.save(init_params(QNetworkArch(hidden_sizes=(64, 64, 64)), 0), buffer)
        response = upload(client, buffer.getvalue())
        assert response.status_code == 422 and "RECOMB_MAX_PARAMS" in response.json()["detail"]


def test_declared_arch_supplies_the_activation_a_state_dict_cannot_show(client):
    arch = QNetworkArch(8, (32, 16), 4, "none", "tanh", 0.0)
    buffer = io.BytesIO()
    torch.save(init_params(arch, 0), buffer)
    plain = upload(client, buffer.getvalue())
    assert plain.status_code == 201 and plain.json()["arch"]["activation"] == "relu"
    declared = upload(
        client,
        buffer.getvalue(),
        arch=json.dumps({"hidden_sizes": [32, 16], "norm": "none", "activation": "tanh", "dropout_rate": 0.0}),
    )
    assert declared.status_code == 201 and declared.json()["arch"] == arch.to_dict()
    wrong = upload(
        client, buffer.getvalue(), arch=json.dumps({"hidden_sizes": [32, 32], "norm": "none", "dropout_rate": 0.0})
    )
    assert wrong.status_code == 422 and "hidden_sizes [32, 32] vs [32, 16]" in wrong.json()["detail"]


# Stable-Baselines3 and CleanRL, written by the libraries themselves.


@pytest.fixture(scope="module")
def sb3_model(tmp_path_factory):
    model = sb3.DQN(
        "MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [32, 16], "activation_fn": nn.Tanh}, seed=0, device="cpu"
    )
    path = tmp_path_factory.mktemp("sb3") / "dqn_cartpole.zip"
    model.save(path)
    return model, path.read_bytes()


def test_sb3_dqn_zip_imports_q_net_with_arch_and_activation_from_its_data(client, sb3_model):
    model, data = sb3_model
    response = upload(client, data, name="dqn_cartpole.zip")
    assert response.status_code == 201, response.text
    record = response.json()
    assert record["source_format"] == "sb3"
    assert record["arch"] == {
        "input_dim": 4,
        "hidden_sizes": [32, 16],
        "output_dim": 2,
        "norm": "none",
        "activation": "tanh",
        "dropout_rate": 0.0,
    }
    stored = artifacts.decode(client.get(f"/checkpoints/{record['id']}/file").content)
    states = torch.from_numpy(fresh_states(4))
    with torch.no_grad():
        library_q = model.q_net(states)
    torch.testing.assert_close(inference_forward(stored)(states), library_q, rtol=1e-5, atol=1e-6)


def test_a_zip_holding_anything_else_is_422_naming_it(client, sb3_model):
    _, data = sb3_model
    buffer = io.BytesIO()
    with zipfile.ZipFile(io.BytesIO(data)) as source, zipfile.ZipFile(buffer, "w") as target:
        for item in source.infolist():
            target.writestr(item, source.read(item))
        target.writestr("payload.py", "print('hello')")
    response = upload(client, buffer.getvalue(), name="dqn.zip")
    assert response.status_code == 422
    assert "payload.py" in response.json()["detail"]


def test_a_policy_with_modules_outside_the_family_is_422_naming_them(client):
    state = {
        f"q_net.q_net.{key.split('.', 1)[1]}": value
        for key, value in init_params(QNetworkArch(4, (8,), 2, "none", "relu", 0.0), 0).items()
    }
    state["q_net.features_extractor.cnn.0.weight"] = torch.zeros(4, 1, 3, 3)
    policy = io.BytesIO()
    torch.save(state, policy)
    archive = io.BytesIO()
    with zipfile.ZipFile(archive, "w") as target:
        target.writestr("data", json.dumps({"policy_kwargs": {}}))
        target.writestr("policy.pth", policy.getvalue())
    response = upload(client, archive.getvalue(), name="cnn.zip")
    assert response.status_code == 422
    assert "q_net.features_extractor.cnn.0.weight" in response.json()["detail"]


class CleanRLQNetwork(nn.Module):
    """CleanRL's dqn.py network, as its users save it."""

    def __init__(self, observations: int, actions: int) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(observations, 120), nn.ReLU(), nn.Linear(120, 84), nn.ReLU(), nn.Linear(84, actions)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


@pytest.fixture(scope="module")
def cleanrl_network() -> CleanRLQNetwork:
    torch.manual_seed(0)
    return CleanRLQNetwork(4, 2).eval()


def test_cleanrl_state_dict_imports_with_its_layer_indices(client, cleanrl_network):
    buffer = io.BytesIO()
    torch.save(cleanrl_network.state_dict(), buffer)
    record = upload(client, buffer.getvalue(), name="dqn.cleanrl_model").json()
    assert record["source_format"] == "cleanrl"
    assert record["arch"] == {
        "input_dim": 4,
        "hidden_sizes": [120, 84],
        "output_dim": 2,
        "norm": "none",
        "activation": "relu",
        "dropout_rate": 0.0,
    }
    exported = torch.load(
        io.BytesIO(client.get(f"/checkpoints/{record['id']}/export", params={"format": "pt"}).content),
        weights_only=True,
    )
    assert list(exported) == list(cleanrl_network.state_dict())
    back = CleanRLQNetwork(4, 2)
    back.load_state_dict(exported)
    states = torch.from_numpy(fresh_states(4))
    with torch.no_grad():
        torch.testing.assert_close(back(states), cleanrl_network(states), rtol=0, atol=0)


def test_sb3_round_trip_distil_quantize_export_and_load_back(client, sb3_model, tmp_path):
    """upload -> int8 -> export pt -> the DQN policy loads the dequantized weights and acts as the service does."""
    model, data = sb3_model
    record = upload(client, data, name="dqn.zip").json()
    stored = artifacts.decode(client.get(f"/checkpoints/{record['id']}/file").content)
    int8 = quantize_dynamic(stored).checkpoint
    int8_record = upload(client, artifacts.encode(int8), name="int8.safetensors").json()
    assert int8_record["source_format"] == "sb3" and int8_record["format"] == "int8"
    exported = client.get(f"/checkpoints/{int8_record['id']}/export", params={"format": "pt"})
    state_dict = torch.load(io.BytesIO(exported.content), weights_only=True)
    assert set(state_dict) == set(model.q_net.state_dict())
    model.q_net.load_state_dict(state_dict)
    model.q_net_target.load_state_dict(state_dict)
    states = fresh_states(4, 500)
    actions, _ = model.predict(states, deterministic=True)
    ours = inference_forward(int8)(torch.from_numpy(states)).argmax(1).numpy()
    assert float((actions == ours).mean()) == 1.0


# Exports, judged by onnxruntime on fresh states.


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_onnx_exports_agree_with_the_service_float_and_int8(client, arch_id):
    arch = ARCH_MATRIX[arch_id]
    float_record = synthetic(client, arch.to_dict(), seed=3)
    float_ckpt = artifacts.decode(client.get(f"/checkpoints/{float_record['id']}/file").content)
    int8_ckpt = quantize_dynamic(float_ckpt).checkpoint
    int8_record = upload(client, artifacts.encode(int8_ckpt), name="int8.safetensors").json()
    states = fresh_states(arch.input_dim)
    sizes = {}
    for record, checkpoint, bar in ((float_record, float_ckpt, 0.999), (int8_record, int8_ckpt, 0.99)):
        response = client.get(f"/checkpoints/{record['id']}/export", params={"format": "onnx"})
        assert response.status_code == 200
        sizes[checkpoint.format] = len(response.content)
        runtime_q = torch.from_numpy(onnx_q_values(response.content, states))
        service_q = inference_forward(checkpoint)(torch.from_numpy(states))
        assert runtime_q.shape == (len(states), arch.output_dim)
        assert metrics.action_agreement(service_q, runtime_q) >= bar
    if arch.param_count >= QNetworkArch.reference(hidden_size=32).param_count:
        assert sizes["int8"] <= 0.6 * sizes["float32"]


def test_onnx_int8_file_keeps_int8_weights_and_meets_the_size_bars(client):
    import onnx

    for hidden_size, bar in ((32, 0.6), (64, 0.5)):
        arch = QNetworkArch.reference(hidden_size=hidden_size)
        float_ckpt = artifacts.float_checkpoint(init_params(arch, 0), arch)
        int8_record = upload(
            client, artifacts.encode(quantize_dynamic(float_ckpt).checkpoint), name="int8.safetensors"
        ).json()
        float_record = upload(client, artifacts.encode(float_ckpt), name="float.safetensors").json()
        int8_bytes = client.get(f"/checkpoints/{int8_record['id']}/export", params={"format": "onnx"}).content
        float_bytes = client.get(f"/checkpoints/{float_record['id']}/export", params={"format": "onnx"}).content
        assert len(int8_bytes) <= bar * len(float_bytes), (hidden_size, len(int8_bytes), len(float_bytes))
        graph = onnx.load_from_string(int8_bytes).graph
        int8_initializers = [tensor for tensor in graph.initializer if tensor.data_type == onnx.TensorProto.INT8]
        assert len(int8_initializers) == len(arch.blocks)
        assert {node.op_type for node in graph.node} >= {"DequantizeLinear", "Gemm"}


def test_safetensors_export_is_the_source_layout_state_dict(client):
    record = synthetic(client, QNetworkArch().to_dict())
    exported = safetensors_load(
        client.get(f"/checkpoints/{record['id']}/export", params={"format": "safetensors"}).content
    )
    assert set(exported) == set(QNetworkArch().state_dict_keys())


def test_unknown_export_format_is_422(client, parent_id):
    response = client.get(f"/checkpoints/{parent_id}/export", params={"format": "tflite"})
    assert response.status_code == 422
    assert client.get("/checkpoints/ckpt_00000000000000000000/export", params={"format": "onnx"}).status_code == 404
