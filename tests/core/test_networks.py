import dataclasses

import pytest
import torch

from core.networks import (
    QNetwork,
    QNetworkArch,
    check_param_cap,
    functional_forward,
    infer_arch,
    init_network,
    init_params,
    network_from_state_dict,
    student_arch,
)
from tests.archs import ARCH_IDS, ARCH_MATRIX

REFERENCE_KEYS = (
    "network.0.weight", "network.0.bias", "network.1.weight", "network.1.bias",
    "network.4.weight", "network.4.bias", "network.5.weight", "network.5.bias",
    "network.8.weight", "network.8.bias",
)  # fmt: skip


def test_state_dict_keys_match_the_reference_layout():
    model = QNetwork(QNetworkArch())
    assert tuple(model.state_dict()) == QNetworkArch().state_dict_keys() == REFERENCE_KEYS
    # A student trained without dropout keeps the reference's Dropout slot, so its file loads into the reference classes.
    assert QNetworkArch(hidden_size=32, dropout_rate=0.0).state_dict_keys() == REFERENCE_KEYS


def test_a_layout_without_norm_or_dropout_has_cleanrl_and_sb3_indices():
    arch = QNetworkArch(4, (120, 84), 2, "none", "relu", 0.0)
    assert arch.state_dict_keys() == (
        "network.0.weight",
        "network.0.bias",
        "network.2.weight",
        "network.2.bias",
        "network.4.weight",
        "network.4.bias",
    )
    assert [type(module).__name__ for module in QNetwork(arch).network] == [
        "Linear",
        "ReLU",
        "Linear",
        "ReLU",
        "Linear",
    ]


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_every_member_builds_its_keys_and_counts_its_parameters(arch_id):
    arch = ARCH_MATRIX[arch_id]
    model = QNetwork(arch)
    assert tuple(model.state_dict()) == arch.state_dict_keys()
    assert arch.param_count == sum(p.numel() for p in model.parameters())
    assert {tuple(p.shape) for p in model.parameters()} == set(arch.param_shapes().values())


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_functional_forward_equals_the_module_in_eval_mode(arch_id):
    arch = ARCH_MATRIX[arch_id]
    generator = torch.Generator().manual_seed(0)
    params = {
        key: tensor + 0.3 * torch.randn(tensor.shape, generator=generator)
        for key, tensor in init_params(arch, 0).items()
    }
    model = network_from_state_dict(params, arch)
    states = torch.randn(50, arch.input_dim, generator=generator)
    with torch.inference_mode():
        torch.testing.assert_close(functional_forward(arch, params, states), model(states), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("arch_id", ARCH_IDS)
def test_infer_arch_reads_every_member_back(arch_id):
    arch = ARCH_MATRIX[arch_id]
    assert (
        infer_arch(
            init_params(arch, 0),
            activation=arch.activation,
            dropout_rate=arch.dropout_rate if arch.has_dropout_slot else None,
        )
        == arch
    )


@pytest.mark.parametrize(("arch", "count"), [(QNetworkArch(), 5252), (student_arch(QNetworkArch()), 1604)])
def test_param_count_of_the_reference_and_its_student(arch, count):
    assert arch.param_count == count


def test_student_halves_every_width_with_floor_16_and_never_wider():
    assert student_arch(QNetworkArch(hidden_size=64)).hidden_sizes == (32, 32)
    assert student_arch(QNetworkArch(hidden_size=20)).hidden_sizes == (16, 16)
    assert student_arch(QNetworkArch(8, (256, 12, 40), 4)).hidden_sizes == (128, 12, 20)
    assert student_arch(QNetworkArch()).dropout_rate == 0.05
    assert student_arch(QNetworkArch(8, (64, 64, 64), 4), [None, 48, 8]).hidden_sizes == (32, 48, 8)
    with pytest.raises(ValueError, match="needs 3 entries"):
        student_arch(QNetworkArch(8, (64, 64, 64), 4), [32])


def test_hidden_size_is_shorthand_for_two_equal_layers():
    assert QNetworkArch(hidden_size=32) == QNetworkArch(hidden_sizes=(32, 32))
    assert (
        QNetworkArch.from_dict({"input_dim": 8, "hidden_size": 64, "output_dim": 4, "dropout_rate": 0.1})
        == QNetworkArch()
    )
    assert QNetworkArch.from_dict(QNetworkArch(8, (5, 7), 2, "none", "gelu", 0.0).to_dict()) == QNetworkArch(
        8, (5, 7), 2, "none", "gelu", 0.0
    )


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"activation": "swish"}, "activation 'swish' is not supported"),
        ({"norm": "batchnorm"}, "norm 'batchnorm' is not supported"),
        ({"hidden_sizes": []}, "1 to 8 layers"),
        ({"hidden_sizes": [8] * 9}, "1 to 8 layers"),
        ({"hidden_sizes": [8, 5000]}, r"hidden_sizes\[1\] must be an integer in \[1, 4096\]"),
        ({"input_dim": 0}, "input_dim"),
        ({"dropout_rate": 1.0}, "dropout_rate"),
        ({"residual": True}, r"unsupported arch fields \['residual'\]"),
    ],
)
def test_outside_the_family_is_refused_naming_what(values, message):
    with pytest.raises(ValueError, match=message):
        QNetworkArch.from_dict(values)


def test_parameter_cap():
    check_param_cap(QNetworkArch(), 5252)
    with pytest.raises(ValueError, match="5,252 parameters, over the limit of 5,000"):
        check_param_cap(QNetworkArch(), 5000)


def test_equal_seeds_give_bit_identical_networks_and_different_seeds_do_not():
    first, again, other = (init_params(QNetworkArch(), seed) for seed in (3, 3, 4))
    assert all(torch.equal(first[key], again[key]) for key in REFERENCE_KEYS)
    assert not torch.equal(first["network.0.weight"], other["network.0.weight"])
    assert torch.count_nonzero(first["network.0.bias"]) == 0
    assert torch.equal(first["network.1.weight"], torch.ones(64))


def test_initialisation_leaves_global_rng_untouched():
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    init_network(QNetworkArch(), 0)
    assert torch.equal(torch.rand(3), expected)


def test_infer_arch_from_a_reference_state_dict():
    reference = QNetwork(QNetworkArch(input_dim=6, hidden_size=32, output_dim=3)).state_dict()
    assert infer_arch(reference) == QNetworkArch(input_dim=6, hidden_size=32, output_dim=3)


def test_infer_arch_names_unexpected_and_misshaped_keys():
    state = QNetwork(QNetworkArch()).state_dict()
    del state["network.4.weight"]
    with pytest.raises(ValueError, match=r"\['network.4'\] need both weight and bias"):
        infer_arch(state)
    state = QNetwork(QNetworkArch()).state_dict()
    state["network.5.bias"] = torch.zeros(63)
    with pytest.raises(ValueError, match=r"network.5.bias: expected \[64\], got \[63\]"):
        infer_arch(state)
    state = QNetwork(QNetworkArch()).state_dict()
    state["features.0.weight"] = torch.zeros(3, 3)
    with pytest.raises(ValueError, match=r"unexpected keys \['features.0.weight'\]"):
        infer_arch(state)


def test_infer_arch_refuses_layouts_outside_the_family():
    conv = {"network.0.weight": torch.zeros(4, 3, 3, 3), "network.0.bias": torch.zeros(4)}
    with pytest.raises(ValueError, match="4 dimensions: only Linear"):
        infer_arch(conv)
    # LayerNorm after the first hidden layer only.
    state = init_params(QNetworkArch(), 0)
    partial = {key: value for key, value in state.items() if not key.startswith("network.5")}
    with pytest.raises(ValueError, match="do not follow every hidden Linear"):
        infer_arch(partial)


def test_single_state_input_keeps_its_shape():
    model = network_from_state_dict(init_params(QNetworkArch(), 1))
    assert model(torch.zeros(8)).shape == (4,)
    assert not model.training


def test_dropout_slot_follows_norm_or_rate():
    bare = QNetworkArch(8, (16,), 4, "none", "relu", 0.0)
    assert not bare.has_dropout_slot
    assert dataclasses.replace(bare, dropout_rate=0.2).state_dict_keys()[-1] == "network.3.bias"
    assert QNetworkArch(8, (16,), 4, "layernorm", "relu", 0.0).has_dropout_slot
