"""The seeded linear MDP that greedy rollouts are played on (reference §8.1).

Per action ``a``: ``s' = W_a s + b_a`` and reward ``r_w . s + r_a[a]``, with
``W_a, b_a, r_w, r_a`` all ``0.12 * N(0, 1)`` drawn in that order from
``numpy.random.default_rng(base_seed)``. Episode ``i`` starts from
``default_rng(base_seed + i * 1_000_003).standard_normal(state_dim)`` and runs
a fixed number of steps (no terminal states); its return is the undiscounted
reward sum.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from core.interrupt import Interrupt, checker

if TYPE_CHECKING:
    import torch

DYNAMICS_SCALE = 0.12
EPISODE_SEED_STRIDE = 1_000_003
# Episodes advance in chunks whose gathered transition matrices hold at most this many float64 values (32 MiB).
ROLLOUT_CHUNK_VALUES = 1 << 22


@dataclass(frozen=True)
class LinearMDP:
    """Dynamics of ``n_actions`` affine maps of a ``state_dim`` state (float64 arrays)."""

    transition: np.ndarray  # (n_actions, state_dim, state_dim)
    offset: np.ndarray  # (n_actions, state_dim)
    state_reward: np.ndarray  # (state_dim,)
    action_reward: np.ndarray  # (n_actions,)

    @classmethod
    def from_seed(cls, base_seed: int, state_dim: int, n_actions: int) -> LinearMDP:
        rng = np.random.default_rng(base_seed)
        transition = DYNAMICS_SCALE * rng.standard_normal((n_actions, state_dim, state_dim))
        offset = DYNAMICS_SCALE * rng.standard_normal((n_actions, state_dim))
        state_reward = DYNAMICS_SCALE * rng.standard_normal(state_dim)
        action_reward = DYNAMICS_SCALE * rng.standard_normal(n_actions)
        return cls(transition, offset, state_reward, action_reward)


def initial_states(base_seed: int, n_episodes: int, state_dim: int, interrupt: Interrupt | None = None) -> np.ndarray:
    """``(n_episodes, state_dim)`` float64 start states, one seeded draw per episode (``interrupt`` before each)."""
    check = checker(interrupt)
    starts = np.empty((n_episodes, state_dim))
    for episode in range(n_episodes):
        check()
        starts[episode] = np.random.default_rng(base_seed + episode * EPISODE_SEED_STRIDE).standard_normal(state_dim)
    return starts


def greedy_returns(
    q_function: Callable[[torch.Tensor], torch.Tensor],
    mdp: LinearMDP,
    starts: np.ndarray,
    max_steps: int = 50,
    interrupt: Interrupt | None = None,
) -> np.ndarray:
    """Play every episode greedily on ``argmax q_function(s)`` and return the ``(n_episodes,)`` float64 returns.

    ``q_function`` maps ``(batch, state_dim)`` float32 to ``(batch, n_actions)``;
    episodes advance together, one batched forward per step, in chunks that
    bound the memory of the gathered dynamics (episodes are independent, so
    chunking changes returns by float rounding at most; for 8-wide states a
    chunk holds 65,536 episodes). ``interrupt`` (``core.interrupt``) runs before every step.
    """
    # Imported here so the MDP's description (and the work estimates that read it) load without torch.
    import torch

    check = checker(interrupt)
    state_dim = starts.shape[1]
    chunk = max(1, ROLLOUT_CHUNK_VALUES // (state_dim * state_dim))
    returns = np.zeros(starts.shape[0])
    with torch.inference_mode():
        for first in range(0, starts.shape[0], chunk):
            states = starts[first : first + chunk].astype(np.float64, copy=True)
            for _ in range(max_steps):
                check()
                actions = q_function(torch.from_numpy(states.astype(np.float32))).argmax(dim=1).numpy()
                returns[first : first + chunk] += states @ mdp.state_reward + mdp.action_reward[actions]
                states = np.einsum("bij,bj->bi", mdp.transition[actions], states) + mdp.offset[actions]
    return returns
