"""The baseline run shared by core's tests.

Seeded 8-64-4 teachers, the 5000-state training buffer of seed 42, and their
students distilled with the service's defaults at the baseline's 25 epochs
and batch 64. Students are cached: many modules compare the same ones.
"""

from __future__ import annotations

import functools

import torch

from core.artifacts import Checkpoint, float_checkpoint
from core.distill import DistillConfig, StudentInit, distill
from core.networks import QNetworkArch, init_network, student_arch
from core.states import SyntheticStates, synthetic_states

PARENT_ARCH = QNetworkArch()
STUDENT_ARCH = student_arch(PARENT_ARCH)
PAIRS = ((0, 1), (2, 3), (4, 5))


def states(n_states: int, seed: int) -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(n_states, seed), PARENT_ARCH.input_dim))


@functools.cache
def training_states() -> torch.Tensor:
    """The baseline buffer: 5000 standard-normal states, seed 42."""
    return states(5000, 42)


def teacher(seed: int = 0) -> Checkpoint:
    """The seeded 8-64-4 parent (seed 0 is the baseline's teacher A, 1 its teacher B)."""
    return float_checkpoint(init_network(PARENT_ARCH, seed).state_dict(), PARENT_ARCH)


def random_student(seed: int = 0) -> Checkpoint:
    return float_checkpoint(init_network(STUDENT_ARCH, seed).state_dict(), STUDENT_ARCH)


@functools.cache
def student(teacher_seed: int, seed: int = 0, init: StudentInit = "shared") -> Checkpoint:
    """The student of ``teacher(teacher_seed)`` distilled with the defaults, 25 epochs, batch 64."""
    return distill(
        teacher(teacher_seed), training_states(), DistillConfig(epochs=25, batch_size=64, seed=seed, init=init)
    ).student
