"""Bring your own Q-network, take it out to deploy: Stable-Baselines3 and CleanRL round trips through the real stack.

upload -> distill -> quantize -> export -> load in the original library,
with the actions of every copy compared on fresh states.
"""

from __future__ import annotations

import io

import numpy as np
import onnxruntime
import pytest
import torch
from torch import nn

from core.states import SyntheticStates, synthetic_states
from tests.integration.test_recombination_flow import run

pytestmark = pytest.mark.integration
sb3 = pytest.importorskip("stable_baselines3")


def fresh_states(input_dim: int) -> np.ndarray:
    return synthetic_states(SyntheticStates(2000, 31), input_dim)


def distil_and_quantize(stack, teacher_id: str) -> tuple[str, str, dict]:
    distilled, _ = run(
        stack, "distill", teacher_id=teacher_id, epochs=5, states={"synthetic": {"n_states": 3000, "seed": 3}}
    )
    (student_id,) = distilled["output_checkpoint_ids"]
    quantized, report = run(
        stack,
        "quantize",
        checkpoint_id=student_id,
        teacher_id=teacher_id,
        states={"synthetic": {"n_states": 3000, "seed": 3}},
    )
    return student_id, quantized["output_checkpoint_ids"][0], report["body"]


def export(stack, checkpoint_id: str, export_format: str) -> bytes:
    response = stack.client.get(f"/checkpoints/{checkpoint_id}/export", params={"format": export_format})
    assert response.status_code == 200, response.text
    return response.content


def onnx_actions(data: bytes, states: np.ndarray) -> np.ndarray:
    session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"states": states})[0].argmax(1)


def test_sb3_dqn_round_trip(stack, tmp_path):
    teacher_model = sb3.DQN(
        "MlpPolicy", "CartPole-v1", policy_kwargs={"net_arch": [64, 64], "activation_fn": nn.Tanh}, seed=0, device="cpu"
    )
    teacher_model.save(tmp_path / "dqn.zip")
    uploaded = stack.client.post("/checkpoints", files={"file": ("dqn.zip", (tmp_path / "dqn.zip").read_bytes())})
    assert uploaded.status_code == 201, uploaded.text
    teacher = uploaded.json()
    assert teacher["source_format"] == "sb3" and teacher["arch"]["activation"] == "tanh"

    student_id, int8_id, quantize_report = distil_and_quantize(stack, teacher["id"])
    student = stack.client.get(f"/checkpoints/{student_id}").json()
    assert student["arch"]["hidden_sizes"] == [32, 32] and student["source_format"] == "sb3"
    assert stack.client.get(f"/checkpoints/{int8_id}").json()["format"] == "int8"

    # Back into Stable-Baselines3: a DQN with the student's net_arch loads the exported q_net weights.
    state_dict = torch.load(io.BytesIO(export(stack, int8_id, "pt")), weights_only=True)
    student_model = sb3.DQN(
        "MlpPolicy",
        "CartPole-v1",
        policy_kwargs={"net_arch": student["arch"]["hidden_sizes"], "activation_fn": nn.Tanh},
        device="cpu",
    )
    student_model.q_net.load_state_dict(state_dict)
    states = fresh_states(4)
    library_actions, _ = student_model.predict(states, deterministic=True)
    runtime_actions = onnx_actions(export(stack, int8_id, "onnx"), states)
    teacher_actions, _ = teacher_model.predict(states, deterministic=True)
    assert float((library_actions == runtime_actions).mean()) >= 0.99
    # The int8 student keeps the teacher's greedy policy on most fresh states.
    assert float((library_actions == teacher_actions).mean()) >= 0.8
    assert quantize_report["chosen"]["held_out"]["agreement_vs_float"] >= 0.95


class CleanRLQNetwork(nn.Module):
    def __init__(self, observations: int, actions: int, widths: tuple[int, int] = (120, 84)) -> None:
        super().__init__()
        self.network = nn.Sequential(
            nn.Linear(observations, widths[0]),
            nn.ReLU(),
            nn.Linear(widths[0], widths[1]),
            nn.ReLU(),
            nn.Linear(widths[1], actions),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.network(x)


def test_cleanrl_round_trip(stack):
    torch.manual_seed(0)
    teacher_network = CleanRLQNetwork(4, 2).eval()
    buffer = io.BytesIO()
    torch.save(teacher_network.state_dict(), buffer)
    teacher = stack.client.post("/checkpoints", files={"file": ("dqn.cleanrl_model", buffer.getvalue())}).json()
    assert teacher["source_format"] == "cleanrl"

    student_id, int8_id, _ = distil_and_quantize(stack, teacher["id"])
    widths = tuple(stack.client.get(f"/checkpoints/{student_id}").json()["arch"]["hidden_sizes"])
    assert widths == (60, 42)
    student_network = CleanRLQNetwork(4, 2, widths).eval()
    student_network.load_state_dict(torch.load(io.BytesIO(export(stack, int8_id, "pt")), weights_only=True))
    states = fresh_states(4)
    with torch.no_grad():
        library_actions = student_network(torch.from_numpy(states)).argmax(1).numpy()
        teacher_actions = teacher_network(torch.from_numpy(states)).argmax(1).numpy()
    assert float((library_actions == onnx_actions(export(stack, int8_id, "onnx"), states)).mean()) >= 0.99
    assert float((library_actions == teacher_actions).mean()) >= 0.8
