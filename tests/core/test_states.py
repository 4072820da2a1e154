import io

import numpy as np
import pytest
import torch

from core.states import (
    StatesTooLargeError,
    SyntheticStates,
    derive_seed,
    dump_npy,
    load_npy,
    synthetic_states,
    validate_states,
)
from core.training import train_val_split


def test_synthetic_states_are_the_reference_draw():
    states = synthetic_states(SyntheticStates(n_states=5, seed=42), input_dim=8)
    expected = np.random.default_rng(42).standard_normal((5, 8)).astype(np.float32)
    assert states.dtype == np.float32
    np.testing.assert_array_equal(states, expected)


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.zeros(8, dtype=np.float32), "2-D"),
        (np.zeros((0, 8), dtype=np.float32), "non-empty"),
        (np.array([["a"] * 8]), "numeric"),
        (np.array([[np.nan] * 8, [0.0] * 8], dtype=np.float32), "1 row"),
        (np.array([[np.inf] * 8], dtype=np.float64), "finite"),
    ],
)
def test_validate_states_refuses_unusable_arrays(array, message):
    with pytest.raises(ValueError, match=message):
        validate_states(array)


def test_validate_states_checks_the_width_and_casts_to_float32():
    assert validate_states(np.ones((3, 8), dtype=np.int64), input_dim=8).dtype == np.float32
    with pytest.raises(ValueError, match="width 6 but the network's input_dim is 8"):
        validate_states(np.ones((3, 6)), input_dim=8)


def test_npy_round_trip_and_no_pickles():
    states = np.arange(16, dtype=np.float32).reshape(2, 8)
    np.testing.assert_array_equal(load_npy(dump_npy(states)), states)
    buffer = __import__("io").BytesIO()
    np.save(buffer, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(ValueError, match="object arrays"):
        load_npy(buffer.getvalue())
    with pytest.raises(ValueError, match="not a valid .npy"):
        load_npy(dump_npy(states)[:60])


def test_split_holds_out_disjoint_rows_deterministically():
    split = train_val_split(100, 0.1, torch.Generator().manual_seed(5))
    again = train_val_split(100, 0.1, torch.Generator().manual_seed(5))
    assert len(split.val) == 10 and len(split.train) == 90
    assert set(split.train.tolist()).isdisjoint(split.val.tolist())
    assert torch.equal(split.val, again.val)
    assert len(train_val_split(100, 0.0, torch.Generator()).val) == 0


def test_derived_seeds_differ_by_purpose_and_repeat_by_seed():
    assert derive_seed(42, "init") == derive_seed(42, "init")
    assert derive_seed(42, "init") != derive_seed(42, "split")
    assert derive_seed(42, "init") != derive_seed(43, "init")


def _rewrite_header(shape: tuple[int, ...]) -> bytes:
    header = {"descr": "<f4", "fortran_order": False, "shape": shape}
    buffer = io.BytesIO()
    np.lib.format.write_array_header_1_0(buffer, header)
    return np.lib.format.magic(1, 0) + buffer.getvalue()[len(np.lib.format.magic(1, 0)) :] + bytes(64)


def test_npy_header_is_checked_before_anything_is_allocated():
    with pytest.raises(ValueError, match="at most 1000000 states are accepted, got 1000000000000"):
        load_npy(_rewrite_header((10**12, 8)))
    with pytest.raises(ValueError, match="the file is shorter"):
        load_npy(_rewrite_header((100_000, 8)))  # 3.2 MB declared, 64 bytes present
    with pytest.raises(StatesTooLargeError, match="holds 4000 values \\(500 x 8\\), over the limit of 1000"):
        load_npy(dump_npy(np.zeros((500, 8), np.float32)), max_values=1000)
    assert load_npy(dump_npy(np.ones((125, 8), np.float32)), max_values=1000).shape == (125, 8)
