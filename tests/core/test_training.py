"""The shared training loop: loss maths, gradients, optimiser, split, early stopping, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from core import training
from core.networks import STATE_DICT_KEYS, QNetworkArch, init_network
from core.states import SyntheticStates, synthetic_states
from core.training import TeacherTarget, TrainConfig, train

STUDENT_ARCH = QNetworkArch(input_dim=8, hidden_size=16, output_dim=4, dropout_rate=0.0)


@pytest.fixture(scope="module")
def states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(400, 3), 8))


@pytest.fixture(scope="module")
def teacher_logits(states: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return [init_network(QNetworkArch(), seed).eval()(states) for seed in (0, 1)]


def small_config(**overrides) -> TrainConfig:
    return dataclasses.replace(TrainConfig(epochs=3, batch_size=32, seed=5), **overrides)


def reference_loss(student_logits, teacher_logits, temperature, alpha, loss_fn="kl"):
    """The reference §3 loss written the plain way, per teacher."""
    if loss_fn == "mse":
        return F.mse_loss(student_logits, teacher_logits)
    soft = F.kl_div(F.log_softmax(student_logits / temperature, 1), F.softmax(teacher_logits / temperature, 1), reduction="batchmean") * temperature**2
    hard = F.cross_entropy(student_logits, teacher_logits.argmax(1))
    return alpha * soft + (1 - alpha) * hard


@pytest.mark.parametrize(("alpha", "loss_fn", "dropout"), [(1.0, "kl", 0.0), (0.3, "kl", 0.0), (1.0, "mse", 0.0), (1.0, "kl", 0.2)])
def test_hand_written_gradients_equal_autograd(teacher_logits, states, alpha, loss_fn, dropout):
    arch = dataclasses.replace(STUDENT_ARCH, dropout_rate=dropout)
    student = init_network(arch, 2)
    weights = [0.75, 0.25]
    config = small_config(alpha=alpha, loss_fn=loss_fn)
    rows = torch.arange(32)
    objective = training._Objective.build([TeacherTarget(t) for t in teacher_logits], weights, 2.0, config, rows, rows[:0])
    params = training._FlatParams(student.state_dict())
    batch = states[:32]
    soft, hard = objective.train.soft, objective.train.hard
    training._train_step(params, batch, soft, hard, objective, None, training._Dropout(dropout, torch.Generator().manual_seed(9)))

    # Autograd on the module, with the same dropout masks (same generator, same draw order).
    generator = torch.Generator().manual_seed(9)
    module = student.train()
    for index in (3, 7):
        module.network[index] = _SeededDropout(dropout, generator)
    logits = module(batch)
    loss = sum(w * reference_loss(logits, t[:32], 2.0, alpha, loss_fn) for w, t in zip(weights, teacher_logits, strict=True))
    loss.backward()
    for key, parameter in module.named_parameters():
        torch.testing.assert_close(params.grads[key], parameter.grad, rtol=1e-4, atol=1e-6)


class _SeededDropout(torch.nn.Module):
    def __init__(self, rate: float, generator: torch.Generator) -> None:
        super().__init__()
        self.keep, self.generator = 1 - rate, generator

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        if self.keep == 1:
            return hidden
        mask = torch.empty_like(hidden).bernoulli_(self.keep, generator=self.generator)
        return hidden * mask / self.keep


def test_adam_and_clipping_equal_torch():
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(50, generator=generator)
    grad = torch.zeros(50)
    ours = training._Adam(param, grad, lr=1e-2)
    clip = training._GradClipper(grad, max_norm=1.0)
    reference = param.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([reference], lr=1e-2)
    for step in range(20):
        update = torch.randn(50, generator=generator) * (3.0 if step % 2 else 0.1)
        grad.copy_(update)
        clip()
        ours.step()
        reference.grad = update.clone()
        torch.nn.utils.clip_grad_norm_([reference], 1.0)
        optimizer.step()
    torch.testing.assert_close(param, reference.detach(), rtol=1e-5, atol=1e-6)


def test_initial_losses_equal_hand_computation(states, teacher_logits):
    """Before any step, every reported loss is the reference loss of the initial weights on the val rows."""
    student = init_network(STUDENT_ARCH, 4)
    with torch.no_grad():
        student_logits = student.eval()(states)
    config = small_config(epochs=1, alpha=0.4, temperature=2.5)
    result = train(init_network(STUDENT_ARCH, 4), states, [TeacherTarget(teacher_logits[0], 3.0), TeacherTarget(teacher_logits[1], 1.0)], config)
    split = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split"))
    val = split.val
    expected = 0.75 * reference_loss(student_logits[val], teacher_logits[0][val], 2.5, 0.4) + 0.25 * reference_loss(student_logits[val], teacher_logits[1][val], 2.5, 0.4)
    assert result.initial.val_loss == pytest.approx(float(expected), rel=1e-5)
    train_rows = split.train
    expected_soft = 0.75 * reference_loss(student_logits[train_rows], teacher_logits[0][train_rows], 2.5, 1.0) + 0.25 * reference_loss(
        student_logits[train_rows], teacher_logits[1][train_rows], 2.5, 1.0
    )
    assert result.initial.train_soft_loss == pytest.approx(float(expected_soft), rel=1e-5)


def test_dual_teacher_weights_pull_towards_the_heavier_teacher(states, teacher_logits):
    def agreement_with(weight_a: float, which: int) -> float:
        targets = [TeacherTarget(teacher_logits[0], weight_a), TeacherTarget(teacher_logits[1], 1 - weight_a)]
        result = train(init_network(STUDENT_ARCH, 1), states, targets, small_config(epochs=15, lr=3e-3))
        with torch.no_grad():
            logits = training.functional_forward(result.state_dict, states)
        return float((logits.argmax(1) == teacher_logits[which].argmax(1)).float().mean())

    assert agreement_with(0.9, 0) > agreement_with(0.1, 0)
    assert agreement_with(0.1, 1) > agreement_with(0.9, 1)


def test_validation_rows_are_never_trained_on(states, teacher_logits):
    config = small_config()
    split = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split"))
    assert not set(split.train.tolist()) & set(split.val.tolist())
    poisoned = teacher_logits[0].clone()
    poisoned[split.val] = -100 * poisoned[split.val]
    clean = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], config)
    dirty = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(poisoned)], config)
    # Identical training trajectories: the val targets never reached a gradient.
    assert [m.train_loss for m in clean.history] == [m.train_loss for m in dirty.history]
    assert clean.history[-1].val_loss != dirty.history[-1].val_loss


def test_training_lowers_the_loss_and_returns_the_best_epoch(states, teacher_logits):
    result = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config(epochs=8, lr=3e-3))
    val_losses = [m.val_loss for m in result.history]
    assert result.best_val_loss == min(val_losses) < result.initial.val_loss
    assert result.best_epoch == val_losses.index(min(val_losses)) + 1
    with torch.no_grad():
        logits = training.functional_forward(result.state_dict, states)
    assert result.history[result.best_epoch - 1].action_agreement == pytest.approx(
        float((logits.argmax(1) == teacher_logits[0].argmax(1))[training.train_val_split(400, 0.1, training._generator(5, "split")).val].float().mean())
    )


def test_training_is_bit_identical_per_seed(states, teacher_logits):
    config = small_config(alpha=0.5)
    student = dataclasses.replace(STUDENT_ARCH, dropout_rate=0.1)
    first = train(init_network(student, 0), states, [TeacherTarget(teacher_logits[0])], config)
    second = train(init_network(student, 0), states, [TeacherTarget(teacher_logits[0])], config)
    other = train(init_network(student, 0), states, [TeacherTarget(teacher_logits[0])], dataclasses.replace(config, seed=6))
    assert all(torch.equal(first.state_dict[key], second.state_dict[key]) for key in STATE_DICT_KEYS)
    assert first.history == second.history
    assert not torch.equal(first.state_dict["network.0.weight"], other.state_dict["network.0.weight"])


def test_student_module_holds_the_best_weights(states, teacher_logits):
    student = init_network(STUDENT_ARCH, 0)
    result = train(student, states, [TeacherTarget(teacher_logits[0])], small_config())
    assert all(torch.equal(student.state_dict()[key], result.state_dict[key]) for key in STATE_DICT_KEYS)


def test_weight_transform_is_applied_to_the_linear_weights(states, teacher_logits):
    seen: list[str] = []

    def zero_last_layer(key: str, weight: torch.Tensor) -> torch.Tensor:
        seen.append(key)
        return torch.zeros_like(weight) if key == "network.8.weight" else weight

    config = small_config(epochs=2)
    result = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], config, weight_transform=zero_last_layer)
    assert set(seen) == {"network.0.weight", "network.4.weight", "network.8.weight"}
    steps = 2 * -(-360 // 32)
    assert seen.count("network.8.weight") >= steps
    # With the last layer zeroed in the forward, every state gets the same greedy action (argmax of the bias).
    val = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split")).val
    teacher_actions = teacher_logits[0][val].argmax(1)
    constant_policy_agreements = {float((teacher_actions == action).float().mean()) for action in range(4)}
    assert result.history[-1].action_agreement in constant_policy_agreements
    # Straight-through: the raw last-layer weights still learned.
    assert not torch.equal(result.state_dict["network.8.weight"], init_network(STUDENT_ARCH, 0).state_dict()["network.8.weight"])


def test_early_stopping_stops_after_patience(states, teacher_logits):
    config = small_config(epochs=30, early_stopping_patience=2, lr=1e-2)
    split = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split"))
    contradicting = teacher_logits[0].clone()
    contradicting[split.val] = -contradicting[split.val]  # learning the train rows worsens val
    result = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(contradicting)], config)
    assert result.early_stopped
    assert len(result.history) == result.best_epoch + 2 < 30


def test_temperature_decays_per_epoch(states, teacher_logits):
    result = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config(temperature=4.0, temp_decay=0.5))
    assert [m.temperature for m in result.history] == [4.0, 2.0, 1.0]


def test_on_epoch_sees_every_epoch_and_can_abort(states, teacher_logits):
    seen = []
    train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config(), on_epoch=lambda m: seen.append(m.epoch))
    assert seen == [1, 2, 3]

    def cancel(metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config(), on_epoch=cancel)


def test_no_validation_split_selects_by_train_loss(states, teacher_logits):
    result = train(init_network(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config(val_fraction=0.0))
    assert result.history[-1].val_loss is None and result.history[-1].action_agreement is None
    assert result.best_val_loss == min(m.train_loss for m in [result.initial, *result.history])


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("epochs", 0),
        ("lr", 0.0),
        ("batch_size", 0),
        ("temperature", -1.0),
        ("temp_decay", 1.5),
        ("alpha", 1.2),
        ("loss_fn", "l1"),
        ("max_grad_norm", 0.0),
        ("val_fraction", 1.0),
        ("early_stopping_patience", -1),
        ("seed", -3),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_bad_inputs_raise(states, teacher_logits):
    student = init_network(STUDENT_ARCH, 0)
    with pytest.raises(ValueError, match="width"):
        train(student, states[:, :4], [TeacherTarget(teacher_logits[0])], small_config())
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        train(student, states, [TeacherTarget(teacher_logits[0][:10])], small_config())
    with pytest.raises(ValueError, match="weight"):
        TeacherTarget(teacher_logits[0], weight=0.0)
