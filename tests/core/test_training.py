"""The shared training loop: loss maths, gradients, optimiser, split, early stopping, determinism."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from torch.nn import functional as F

from core import training
from core.networks import QNetworkArch, activation_function, functional_forward, init_params
from core.states import SyntheticStates, synthetic_states
from core.training import TeacherTarget, TrainConfig, train
from tests.archs import ARCH_IDS, ARCH_MATRIX

STUDENT_ARCH = QNetworkArch(input_dim=8, hidden_size=16, output_dim=4, dropout_rate=0.0)
STATE_DICT_KEYS = STUDENT_ARCH.state_dict_keys()


@pytest.fixture(scope="module")
def states() -> torch.Tensor:
    return torch.from_numpy(synthetic_states(SyntheticStates(400, 3), 8))


@pytest.fixture(scope="module")
def teacher_logits(states: torch.Tensor) -> list[torch.Tensor]:
    with torch.no_grad():
        return [functional_forward(QNetworkArch(), init_params(QNetworkArch(), seed), states) for seed in (0, 1)]


def small_config(**overrides) -> TrainConfig:
    return dataclasses.replace(TrainConfig(epochs=3, batch_size=32, seed=5), **overrides)


def reference_loss(student_logits, teacher_logits, temperature, alpha, loss_fn="kl"):
    """The reference §3 loss written the plain way, per teacher."""
    if loss_fn == "mse":
        return F.mse_loss(student_logits, teacher_logits)
    soft = (
        F.kl_div(
            F.log_softmax(student_logits / temperature, 1),
            F.softmax(teacher_logits / temperature, 1),
            reduction="batchmean",
        )
        * temperature**2
    )
    hard = F.cross_entropy(student_logits, teacher_logits.argmax(1))
    return alpha * soft + (1 - alpha) * hard


def autograd_gradients(arch, params, batch, teacher_logits, weights, temperature, alpha, loss_fn, dropout, mask_seed):
    """Gradients of the reference loss by torch.autograd on nn.functional layers, with the same dropout masks."""
    leaves = {key: tensor.clone().requires_grad_(True) for key, tensor in params.items()}
    generator = torch.Generator().manual_seed(mask_seed)
    activation = activation_function(arch.activation)
    outputs = batch
    for block in arch.blocks:
        outputs = F.linear(outputs, leaves[block.weight], leaves[block.bias])
        if block.hidden:
            if block.norm:
                outputs = F.layer_norm(
                    outputs, (block.out_features,), leaves[block.norm_weight], leaves[block.norm_bias], 1e-5
                )
            outputs = activation(outputs.clone())
            if dropout:
                outputs = (
                    outputs * torch.empty_like(outputs).bernoulli_(1 - dropout, generator=generator) / (1 - dropout)
                )
    loss = sum(
        w * reference_loss(outputs, t[: len(batch)], temperature, alpha, loss_fn)
        for w, t in zip(weights, teacher_logits, strict=True)
    )
    loss.backward()
    return {key: leaf.grad for key, leaf in leaves.items()}


@pytest.mark.parametrize("private", [True, False], ids=["private-ops", "public-ops"])
@pytest.mark.parametrize(("alpha", "loss_fn", "dropout"), [(1.0, "kl", 0.0), (0.3, "kl", 0.2), (1.0, "mse", 0.0)])
@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_fused_gradients_equal_autograd_for_every_member(
    teacher_logits, states, arch_id, alpha, loss_fn, dropout, private
):
    """Per tensor, ||fused - autograd|| / ||autograd|| <= 1e-5, for every member of the matrix, with both kernel sets."""
    arch = dataclasses.replace(ARCH_MATRIX[arch_id], input_dim=8, output_dim=4)
    generator = torch.Generator().manual_seed(3)
    # Perturbed LayerNorm parameters and biases, so every gradient path carries signal.
    params = {
        key: tensor + 0.2 * torch.randn(tensor.shape, generator=generator)
        for key, tensor in init_params(arch, 2).items()
    }
    weights = [0.75, 0.25]
    config = small_config(alpha=alpha, loss_fn=loss_fn)
    rows = torch.arange(32)
    objective = training._Objective.build(
        [TeacherTarget(t) for t in teacher_logits], weights, 2.0, config, rows, rows[:0]
    )
    flat = training._FlatParams(arch, params)
    stepper = training._FusedStepper(
        flat, config, training._Dropout(dropout, torch.Generator().manual_seed(9)), None, training._Kernels(private)
    )
    with torch.no_grad():
        stepper.gradients(states[:32], objective.train.soft, objective.train.hard, objective)
    expected = autograd_gradients(
        arch, params, states[:32], teacher_logits, weights, 2.0, alpha, loss_fn, dropout, mask_seed=9
    )
    for key, gradient in expected.items():
        relative = float((flat.grads[key] - gradient).norm() / gradient.norm())
        assert relative <= 1e-5, f"{arch.describe()} {key}: relative gradient error {relative:.2e}"


@pytest.mark.parametrize("arch_id", ["reference-8-64-64-4", "depth3-layernorm-gelu"])
def test_autograd_engine_trains_like_the_fused_one(states, teacher_logits, arch_id):
    """Same batches, masks and updates: the reference engine (autograd + torch.optim.Adam(fused=True)) ends where the fused one does."""
    arch = dataclasses.replace(ARCH_MATRIX[arch_id], input_dim=8, output_dim=4, dropout_rate=0.1)
    fused = train(arch, init_params(arch, 0), states, [TeacherTarget(teacher_logits[0])], small_config(alpha=0.5))
    reference = train(
        arch,
        init_params(arch, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        small_config(alpha=0.5, engine="autograd"),
    )
    for key in arch.state_dict_keys():
        torch.testing.assert_close(fused.state_dict[key], reference.state_dict[key], rtol=1e-3, atol=1e-4)
    assert [m.action_agreement for m in fused.history] == pytest.approx(
        [m.action_agreement for m in reference.history], abs=0.01
    )


def test_private_ops_only_on_listed_torch_versions(monkeypatch, states, teacher_logits):
    assert training._Kernels.for_torch("2.13.0+cpu").private
    assert not training._Kernels.for_torch("2.99.0").private
    # Any other version trains through the public fallbacks to the same result.
    listed = train(
        STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config()
    )
    monkeypatch.setattr(training, "PRIVATE_OPS_TORCH_VERSIONS", ())
    fallback = train(
        STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], small_config()
    )
    for key in STATE_DICT_KEYS:
        torch.testing.assert_close(listed.state_dict[key], fallback.state_dict[key], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("private", [True, False], ids=["fused-adam", "public-adam"])
@pytest.mark.parametrize("betas", [(0.9, 0.999), (0.9, 0.95)])
def test_adam_and_clipping_equal_torch(betas, private):
    generator = torch.Generator().manual_seed(0)
    param = torch.randn(50, generator=generator)
    grad = torch.zeros(50)
    ours = training._Adam(param, grad, lr=1e-2, betas=betas, private=private)
    clip = training._GradClipper(grad, max_norm=1.0)
    reference = param.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([reference], lr=1e-2, betas=betas)
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
    with torch.no_grad():
        student_logits = functional_forward(STUDENT_ARCH, init_params(STUDENT_ARCH, 4), states)
    config = small_config(epochs=1, alpha=0.4, temperature=2.5)
    result = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 4),
        states,
        [TeacherTarget(teacher_logits[0], 3.0), TeacherTarget(teacher_logits[1], 1.0)],
        config,
    )
    split = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split"))
    val = split.val
    expected = 0.75 * reference_loss(student_logits[val], teacher_logits[0][val], 2.5, 0.4) + 0.25 * reference_loss(
        student_logits[val], teacher_logits[1][val], 2.5, 0.4
    )
    assert result.initial.val_loss == pytest.approx(float(expected), rel=1e-5)
    train_rows = split.train
    expected_soft = 0.75 * reference_loss(
        student_logits[train_rows], teacher_logits[0][train_rows], 2.5, 1.0
    ) + 0.25 * reference_loss(student_logits[train_rows], teacher_logits[1][train_rows], 2.5, 1.0)
    assert result.initial.train_soft_loss == pytest.approx(float(expected_soft), rel=1e-5)


def test_dual_teacher_weights_pull_towards_the_heavier_teacher(states, teacher_logits):
    def agreement_with(weight_a: float, which: int) -> float:
        targets = [TeacherTarget(teacher_logits[0], weight_a), TeacherTarget(teacher_logits[1], 1 - weight_a)]
        result = train(STUDENT_ARCH, init_params(STUDENT_ARCH, 1), states, targets, small_config(epochs=15, lr=3e-3))
        with torch.no_grad():
            logits = functional_forward(STUDENT_ARCH, result.state_dict, states)
        return float((logits.argmax(1) == teacher_logits[which].argmax(1)).float().mean())

    assert agreement_with(0.9, 0) > agreement_with(0.1, 0)
    assert agreement_with(0.1, 1) > agreement_with(0.9, 1)


def test_validation_rows_are_never_trained_on(states, teacher_logits):
    config = small_config()
    split = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split"))
    assert not set(split.train.tolist()) & set(split.val.tolist())
    poisoned = teacher_logits[0].clone()
    poisoned[split.val] = -100 * poisoned[split.val]
    clean = train(STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], config)
    dirty = train(STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(poisoned)], config)
    # Identical training trajectories: the val targets never reached a gradient.
    assert [m.train_loss for m in clean.history] == [m.train_loss for m in dirty.history]
    assert clean.history[-1].val_loss != dirty.history[-1].val_loss


def test_training_lowers_the_loss_and_returns_the_best_epoch(states, teacher_logits):
    result = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        small_config(epochs=8, lr=3e-3),
    )
    val_losses = [m.val_loss for m in result.history]
    assert result.best_val_loss == min(val_losses) < result.initial.val_loss
    assert result.best_epoch == val_losses.index(min(val_losses)) + 1
    with torch.no_grad():
        logits = functional_forward(STUDENT_ARCH, result.state_dict, states)
    assert result.history[result.best_epoch - 1].action_agreement == pytest.approx(
        float(
            (logits.argmax(1) == teacher_logits[0].argmax(1))[
                training.train_val_split(400, 0.1, training._generator(5, "split")).val
            ]
            .float()
            .mean()
        )
    )


def test_training_is_bit_identical_per_seed(states, teacher_logits):
    config = small_config(alpha=0.5)
    student = dataclasses.replace(STUDENT_ARCH, dropout_rate=0.1)
    first = train(student, init_params(student, 0), states, [TeacherTarget(teacher_logits[0])], config)
    second = train(student, init_params(student, 0), states, [TeacherTarget(teacher_logits[0])], config)
    other = train(
        student,
        init_params(student, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        dataclasses.replace(config, seed=6),
    )
    assert all(torch.equal(first.state_dict[key], second.state_dict[key]) for key in STATE_DICT_KEYS)
    assert first.history == second.history
    assert not torch.equal(first.state_dict["network.0.weight"], other.state_dict["network.0.weight"])


def test_weight_average_is_what_is_validated_selected_and_returned(states, teacher_logits):
    """With ema_decay the reported val figures are those of the returned (averaged) weights, not the raw ones."""
    config = small_config(epochs=4, lr=1e-2, ema_decay=0.9)
    averaged = train(STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], config)
    raw = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        dataclasses.replace(config, ema_decay=None),
    )
    val_rows = training.train_val_split(400, 0.1, training._generator(5, "split")).val
    with torch.no_grad():
        logits = functional_forward(STUDENT_ARCH, averaged.state_dict, states)
    expected = float((logits.argmax(1) == teacher_logits[0].argmax(1))[val_rows].float().mean())
    assert averaged.history[averaged.best_epoch - 1].action_agreement == pytest.approx(expected)
    assert not torch.equal(averaged.state_dict["network.4.weight"], raw.state_dict["network.4.weight"])
    # Bias-corrected: even after one short epoch the average is of the steps taken, not of the starting point.
    one_config = dataclasses.replace(config, epochs=1, ema_decay=0.999)
    one_epoch = train(
        STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(teacher_logits[0])], one_config
    )
    assert one_epoch.history[0].val_loss < one_epoch.initial.val_loss
    # The reference engine averages the same weights.
    reference = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        dataclasses.replace(config, engine="autograd"),
    )
    for key in STATE_DICT_KEYS:
        torch.testing.assert_close(reference.state_dict[key], averaged.state_dict[key], rtol=1e-3, atol=1e-4)


def test_weight_transform_is_applied_to_the_linear_weights(states, teacher_logits):
    seen: list[str] = []

    def zero_last_layer(key: str, weight: torch.Tensor) -> torch.Tensor:
        seen.append(key)
        return torch.zeros_like(weight) if key == "network.8.weight" else weight

    config = small_config(epochs=2)
    result = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        config,
        weight_transform=zero_last_layer,
    )
    assert set(seen) == {"network.0.weight", "network.4.weight", "network.8.weight"}
    steps = 2 * -(-360 // 32)
    assert seen.count("network.8.weight") >= steps
    # With the last layer zeroed in the forward, every state gets the same greedy action (argmax of the bias).
    val = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split")).val
    teacher_actions = teacher_logits[0][val].argmax(1)
    constant_policy_agreements = {float((teacher_actions == action).float().mean()) for action in range(4)}
    assert result.history[-1].action_agreement in constant_policy_agreements
    # Straight-through: the raw last-layer weights still learned.
    assert not torch.equal(result.state_dict["network.8.weight"], init_params(STUDENT_ARCH, 0)["network.8.weight"])


def test_early_stopping_stops_after_patience(states, teacher_logits):
    config = small_config(epochs=30, early_stopping_patience=2, lr=1e-2)
    split = training.train_val_split(len(states), config.val_fraction, training._generator(config.seed, "split"))
    contradicting = teacher_logits[0].clone()
    contradicting[split.val] = -contradicting[split.val]  # learning the train rows worsens val
    result = train(STUDENT_ARCH, init_params(STUDENT_ARCH, 0), states, [TeacherTarget(contradicting)], config)
    assert result.early_stopped
    assert len(result.history) == result.best_epoch + 2 < 30


def test_temperature_decays_per_epoch(states, teacher_logits):
    result = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        small_config(temperature=4.0, temp_decay=0.5),
    )
    assert [m.temperature for m in result.history] == [4.0, 2.0, 1.0]


def test_on_epoch_sees_every_epoch_and_can_abort(states, teacher_logits):
    seen = []
    train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        small_config(),
        on_epoch=lambda m: seen.append(m.epoch),
    )
    assert seen == [1, 2, 3]

    def cancel(metrics):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train(
            STUDENT_ARCH,
            init_params(STUDENT_ARCH, 0),
            states,
            [TeacherTarget(teacher_logits[0])],
            small_config(),
            on_epoch=cancel,
        )


def test_no_validation_split_selects_by_train_loss(states, teacher_logits):
    result = train(
        STUDENT_ARCH,
        init_params(STUDENT_ARCH, 0),
        states,
        [TeacherTarget(teacher_logits[0])],
        small_config(val_fraction=0.0),
    )
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
        ("engine", "jit"),
        ("adam_betas", (0.9,)),
        ("adam_betas", (1.0, 0.999)),
        ("ema_decay", 0.0),
    ],
)
def test_bad_config_raises_naming_the_field(field, value):
    with pytest.raises(ValueError, match=field):
        TrainConfig(**{field: value})


def test_bad_inputs_raise(states, teacher_logits):
    params = init_params(STUDENT_ARCH, 0)
    with pytest.raises(ValueError, match="width"):
        train(STUDENT_ARCH, params, states[:, :4], [TeacherTarget(teacher_logits[0])], small_config())
    with pytest.raises(ValueError, match=r"targets\[0\]"):
        train(STUDENT_ARCH, params, states, [TeacherTarget(teacher_logits[0][:10])], small_config())
    with pytest.raises(ValueError, match="shapes do not fit"):
        train(QNetworkArch(hidden_size=32), params, states, [TeacherTarget(teacher_logits[0])], small_config())
    with pytest.raises(ValueError, match="weight"):
        TeacherTarget(teacher_logits[0], weight=0.0)
