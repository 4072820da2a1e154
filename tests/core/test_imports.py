"""The torch-free readers: plain state dicts in both torch containers and SB3 zips read; anything else refused, nothing run."""

from __future__ import annotations

import base64
import io
import json
import os
import pickle
import zipfile

import numpy as np
import pytest
import torch

from core import imports
from core.imports import CheckpointError, PickledModuleError, read_network_file
from core.networks import QNetworkArch, init_params


class _RunsCode:
    def __init__(self, marker: str) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def torch_bytes(obj, legacy: bool = False) -> bytes:
    buffer = io.BytesIO()
    torch.save(obj, buffer, _use_new_zipfile_serialization=not legacy)
    return buffer.getvalue()


def sb3_zip(policy: bytes, data: dict | None = None, extra: dict[str, bytes] | None = None) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        if data is not None:
            archive.writestr("data", json.dumps(data))
        archive.writestr("policy.pth", policy)
        for name, content in (extra or {}).items():
            archive.writestr(name, content)
    return buffer.getvalue()


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_state_dicts_read_exactly_as_torch_load(legacy):
    state = {
        key: value for key, value in init_params(QNetworkArch(8, (16, 12), 3, "layernorm", "relu", 0.1), 0).items()
    }
    state["network.0.weight"] = (
        torch.randn(16, 8, dtype=torch.float64).t().contiguous().t()
    )  # a non-contiguous view, float64
    imported = read_network_file(torch_bytes(state, legacy))
    assert imported.source_format == "reference"
    reference = torch.load(io.BytesIO(torch_bytes(state, legacy)), weights_only=True)
    for key, tensor in reference.items():
        assert imported.tensors[key].dtype == tensor.numpy().dtype
        np.testing.assert_array_equal(imported.tensors[key], tensor.numpy())


@pytest.mark.parametrize("legacy", [False, True], ids=["zip", "legacy"])
def test_a_code_running_pickle_is_refused_and_never_runs(tmp_path, legacy):
    marker = tmp_path / "ran"
    with pytest.raises(PickledModuleError, match="posix.system"):
        read_network_file(torch_bytes({"network.0.weight": _RunsCode(str(marker))}, legacy))
    with pytest.raises(PickledModuleError):
        read_network_file(pickle.dumps(_RunsCode(str(marker)), protocol=2))
    assert not marker.exists()


def test_a_code_running_policy_inside_an_sb3_zip_never_runs(tmp_path):
    marker = tmp_path / "ran"
    with pytest.raises(PickledModuleError):
        read_network_file(sb3_zip(torch_bytes({"q_net.q_net.0.weight": _RunsCode(str(marker))}), {"policy_kwargs": {}}))
    assert not marker.exists()


def test_sb3_data_pickles_are_never_decoded(tmp_path):
    """SB3 stores objects JSON cannot hold as base64 pickles; only their readable fields are used."""
    marker = tmp_path / "ran"
    payload = base64.b64encode(pickle.dumps(_RunsCode(str(marker)))).decode()
    data = {
        "policy_kwargs": {
            ":type:": "<class 'dict'>",
            ":serialized:": payload,
            "net_arch": [16],
            "activation_fn": "<class 'torch.nn.modules.activation.ELU'>",
        },
        "observation_space": {":type:": "<class 'gymnasium.spaces.box.Box'>", ":serialized:": payload},
    }
    params = {
        f"q_net.q_net.{key.split('.', 1)[1]}": value
        for key, value in init_params(QNetworkArch(4, (16,), 2, "none", "elu", 0.0), 0).items()
    }
    imported = read_network_file(sb3_zip(torch_bytes(params), data))
    assert (imported.source_format, imported.activation, imported.hidden_sizes) == ("sb3", "elu", (16,))
    assert not marker.exists()


def test_sb3_target_network_and_optimizer_are_ignored():
    params = init_params(QNetworkArch(4, (16,), 2, "none", "relu", 0.0), 0)
    state = {f"q_net.q_net.{key.split('.', 1)[1]}": value for key, value in params.items()}
    state |= {f"q_net_target.q_net.{key.split('.', 1)[1]}": value + 1 for key, value in params.items()}
    imported = read_network_file(sb3_zip(torch_bytes(state), {}, {"policy.optimizer.pth": b"never read"}))
    assert set(imported.tensors) == set(params)
    np.testing.assert_array_equal(imported.tensors["network.0.weight"], params["network.0.weight"].numpy())


@pytest.mark.parametrize(
    ("activation", "message"),
    [("<class 'torch.nn.modules.activation.Softplus'>", "activation Softplus is not supported")],
)
def test_sb3_activation_outside_the_family_is_named(activation, message):
    params = {
        f"q_net.q_net.{key.split('.', 1)[1]}": value
        for key, value in init_params(QNetworkArch(4, (16,), 2, "none", "relu", 0.0), 0).items()
    }
    with pytest.raises(CheckpointError, match=message):
        read_network_file(sb3_zip(torch_bytes(params), {"policy_kwargs": {"activation_fn": activation}}))


def test_a_tensor_reaching_past_its_storage_is_refused():
    """A crafted stride must never turn into a read of foreign memory."""
    tensor = imports._LazyTensor(imports._Storage("0", np.dtype("<f4"), 4), 0, (4, 4), (4, 1))
    with pytest.raises(CheckpointError, match="past the end of its storage"):
        imports._array(tensor, {"0": np.zeros(4, dtype="<f4").tobytes()})


def test_a_tensor_larger_than_its_storage_is_refused_before_allocating():
    tensor = imports._LazyTensor(imports._Storage("0", np.dtype("<f4"), 4), 0, (2**40,), (0,))
    with pytest.raises(CheckpointError, match="more elements than its storage"):
        imports._array(tensor, {"0": np.zeros(4, dtype="<f4").tobytes()})


def test_declared_storage_sizes_are_bounded_before_reading():
    data = torch_bytes({"network.0.weight": torch.zeros(256, 256)})
    with pytest.raises(CheckpointError, match="over the limit of 1024"):
        read_network_file(data, max_tensor_bytes=1024)


def test_corrupt_files_are_checkpoint_errors():
    good = torch_bytes(init_params(QNetworkArch(), 0))
    for broken in (good[: len(good) // 2], good[:20] + b"\0" * 100, b"\x80\x02garbage"):
        with pytest.raises(CheckpointError):
            read_network_file(broken)


def test_a_zip_that_is_neither_torch_nor_sb3_names_its_entries():
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("model/weights.bin", b"\0" * 8)
    with pytest.raises(CheckpointError, match="model/weights.bin"):
        read_network_file(buffer.getvalue())
