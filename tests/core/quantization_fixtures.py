"""Networks and states shared by the quantization tests."""

from __future__ import annotations

import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.networks import QNetworkArch, init_network, student_arch
from core.quantize import inference_forward
from core.states import SyntheticStates, synthetic_states
from core.training import TeacherTarget, TrainConfig, train

PARENT_ARCH = QNetworkArch()
STUDENT_ARCH = student_arch(PARENT_ARCH)


def states(n_states: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n_states, seed), PARENT_ARCH.input_dim))


def random_student(seed: int = 0) -> Checkpoint:
    return float_checkpoint(init_network(STUDENT_ARCH, seed).state_dict(), STUDENT_ARCH)


def baseline_teacher() -> Checkpoint:
    """The 8-64-4 teacher of the baseline run (seed 0)."""
    return float_checkpoint(init_network(PARENT_ARCH, 0).state_dict(), PARENT_ARCH)


def baseline_student(teacher: Checkpoint, training_states: torch.Tensor) -> Checkpoint:
    """A student distilled with the baseline settings: T 3, alpha 1, 25 epochs, lr 1e-3, batch 64."""
    with torch.no_grad():
        teacher_logits = inference_forward(teacher)(training_states)
    model = init_network(STUDENT_ARCH, 0)
    config = TrainConfig(epochs=25, lr=1e-3, batch_size=64, temperature=3.0, alpha=1.0, seed=42)
    result = train(model, training_states, [TeacherTarget(teacher_logits)], config)
    return float_checkpoint(result.state_dict, STUDENT_ARCH)
