import pytest
import torch

from core.networks import (
    STATE_DICT_KEYS,
    QNetwork,
    QNetworkArch,
    functional_forward,
    infer_arch,
    init_network,
    network_from_state_dict,
    student_arch,
)


def test_state_dict_keys_match_the_reference_layout():
    model = QNetwork(QNetworkArch())
    assert tuple(model.state_dict()) == STATE_DICT_KEYS
    assert STATE_DICT_KEYS == (
        "network.0.weight", "network.0.bias", "network.1.weight", "network.1.bias",
        "network.4.weight", "network.4.bias", "network.5.weight", "network.5.bias",
        "network.8.weight", "network.8.bias",
    )


@pytest.mark.parametrize(("arch", "count"), [(QNetworkArch(), 5252), (student_arch(QNetworkArch()), 1604)])
def test_param_count_formula_matches_the_module(arch, count):
    model = QNetwork(arch)
    assert arch.param_count == count == sum(p.numel() for p in model.parameters())


def test_student_is_half_width_with_floor_16():
    assert student_arch(QNetworkArch(hidden_size=64)).hidden_size == 32
    assert student_arch(QNetworkArch(hidden_size=20)).hidden_size == 16
    assert student_arch(QNetworkArch()).dropout_rate == 0.05


def test_equal_seeds_give_bit_identical_networks_and_different_seeds_do_not():
    first, again, other = (init_network(QNetworkArch(), seed).state_dict() for seed in (3, 3, 4))
    assert all(torch.equal(first[key], again[key]) for key in STATE_DICT_KEYS)
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
    arch = infer_arch(reference)
    assert (arch.input_dim, arch.hidden_size, arch.output_dim) == (6, 32, 3)


def test_infer_arch_names_missing_and_misshaped_keys():
    state = QNetwork(QNetworkArch()).state_dict()
    del state["network.4.weight"]
    with pytest.raises(ValueError, match=r"missing keys \['network.4.weight'\]"):
        infer_arch(state)
    state = QNetwork(QNetworkArch()).state_dict()
    state["network.5.bias"] = torch.zeros(63)
    with pytest.raises(ValueError, match=r"network.5.bias: expected \[64\], got \[63\]"):
        infer_arch(state)


def test_functional_forward_equals_the_module_in_eval_mode():
    model = init_network(QNetworkArch(), 0).eval()
    with torch.no_grad():
        model.network[1].weight.uniform_(0.5, 1.5)
        model.network[5].bias.uniform_(-0.1, 0.1)
    states = torch.randn(50, 8, generator=torch.Generator().manual_seed(0))
    with torch.inference_mode():
        torch.testing.assert_close(functional_forward(model.state_dict(), states), model(states), rtol=1e-6, atol=1e-6)


def test_single_state_input_keeps_its_shape():
    model = network_from_state_dict(init_network(QNetworkArch(), 1).state_dict())
    assert model(torch.zeros(8)).shape == (4,)
    assert not model.training


@pytest.mark.parametrize("field", ["input_dim", "hidden_size", "output_dim"])
def test_arch_rejects_non_positive_sizes(field):
    with pytest.raises(ValueError, match=field):
        QNetworkArch(**{field: 0})
