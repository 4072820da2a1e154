"""The torch-free checkpoint file: equal to what torch itself draws, saves and loads, and exports that runtimes run."""

import io
import json
import pickle

import numpy as np
import onnxruntime
import pytest
import safetensors.torch
import torch
import torch._weights_only_unpickler
from torch import nn

from core import artifacts, checkpoint_file, export, imports
from core.arch import QNetworkArch
from core.networks import QNetwork, functional_forward
from core.quantize import dequantize, inference_forward, quantize_dynamic, quantize_static

ARCHS = [
    QNetworkArch(),
    QNetworkArch(3, (7,), 2, "none", "tanh", 0.0),
    QNetworkArch(17, (300, 129, 5), 9, "layernorm", "gelu", 0.2),
    QNetworkArch(64, (1024, 512), 18, "none", "silu", 0.0),
]
SEEDS = [0, 1, 42, 2**32 - 1, 2**32 + 5, 2**63 - 1]


def torch_xavier(arch: QNetworkArch, seed: int) -> dict[str, torch.Tensor]:
    """The reference initialisation, written with torch's own generator and ``xavier_uniform_``."""
    generator = torch.Generator().manual_seed(seed)
    params = {}
    for block in arch.blocks:
        weight = torch.empty(block.out_features, block.in_features)
        nn.init.xavier_uniform_(weight, generator=generator)
        params[block.weight] = weight
        params[block.bias] = torch.zeros(block.out_features)
        if block.norm:
            params[block.norm_weight] = torch.ones(block.out_features)
            params[block.norm_bias] = torch.zeros(block.out_features)
    return params


@pytest.mark.parametrize("arch", ARCHS, ids=lambda arch: arch.describe())
@pytest.mark.parametrize("seed", SEEDS)
def test_init_arrays_are_torch_xavier_bit_for_bit(arch, seed):
    expected = torch_xavier(arch, seed)
    drawn = checkpoint_file.init_arrays(arch, seed)
    assert list(drawn) == list(expected)
    for key, tensor in expected.items():
        assert drawn[key].dtype == np.float32
        assert np.array_equal(drawn[key], tensor.numpy()), key


def recomb_header(checkpoint: artifacts.Checkpoint) -> str:
    header = {
        "format_version": checkpoint_file.FORMAT_VERSION,
        "arch": checkpoint.arch.to_dict(),
        "format": checkpoint.format,
        "quantization": checkpoint.quantization,
        "metadata": checkpoint.metadata,
        "source_format": checkpoint.source_format,
    }
    return json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)


@pytest.fixture(scope="module")
def float_parent() -> artifacts.Checkpoint:
    return artifacts.float_checkpoint(QNetwork(QNetworkArch()).state_dict(), metadata={"origin": "test"})


@pytest.fixture(scope="module")
def static_int8(float_parent) -> artifacts.Checkpoint:
    states = np.random.default_rng(0).standard_normal((640, 8)).astype(np.float32)
    return quantize_static(float_parent, states).checkpoint


@pytest.mark.parametrize("kind", ["float", "dynamic", "static"])
def test_encode_writes_the_bytes_safetensors_torch_writes(kind, float_parent, static_int8):
    checkpoint = {
        "float": float_parent,
        "dynamic": quantize_dynamic(float_parent).checkpoint,
        "static": static_int8,
    }[kind]
    by_torch = safetensors.torch.save(
        {key: checkpoint.tensors[key].contiguous() for key in sorted(checkpoint.tensors)},
        metadata={"recomb": recomb_header(checkpoint)},
    )
    assert checkpoint_file.encode(checkpoint.to_file()) == by_torch
    decoded = checkpoint_file.decode(by_torch)
    assert decoded.format == checkpoint.format and decoded.quantization == checkpoint.quantization
    for key, tensor in checkpoint.tensors.items():
        assert decoded.arrays[key].dtype == tensor.numpy().dtype
        assert np.array_equal(decoded.arrays[key], tensor.numpy()), key


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_plain_safetensors_of_any_float_dtype_read_as_torch_converts_them(dtype):
    state_dict = {key: tensor.to(dtype) for key, tensor in QNetwork(QNetworkArch(hidden_size=32)).state_dict().items()}
    stored = checkpoint_file.read_upload(safetensors.torch.save(state_dict))
    assert stored.source_format == "safetensors" and stored.arch == QNetworkArch(hidden_size=32)
    for key, tensor in state_dict.items():
        assert np.array_equal(stored.arrays[key], tensor.to(torch.float32).numpy()), key


def test_pt_upload_reads_what_torch_saved():
    model = QNetwork(QNetworkArch(5, (24, 12), 3, "none", "elu", 0.0))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    stored = checkpoint_file.read_upload(buffer.getvalue(), QNetworkArch(5, (24, 12), 3, "none", "elu", 0.0))
    for key, tensor in model.state_dict().items():
        assert np.array_equal(stored.arrays[key], tensor.numpy()), key


def test_the_pt_allowlist_is_inside_torchs_weights_only_allowlist():
    torch_allowed = set(torch._weights_only_unpickler._get_allowed_globals())
    ours = {f"{module}.{name}" for module, name in imports._ALLOWED_GLOBALS}
    assert ours <= torch_allowed, ours - torch_allowed


class RunsCode:
    def __reduce__(self):
        return (print, ("never printed",))


def test_a_pickle_that_runs_code_is_refused_by_both_readers():
    buffer = io.BytesIO()
    torch.save({"network.0.weight": torch.zeros(2, 2), "payload": RunsCode()}, buffer)
    with pytest.raises(checkpoint_file.CheckpointError, match=r"references __builtin__\.print"):
        checkpoint_file.read_upload(buffer.getvalue())
    with pytest.raises(pickle.UnpicklingError):
        torch.load(io.BytesIO(buffer.getvalue()), weights_only=True)


@pytest.mark.parametrize("arch", ARCHS, ids=lambda arch: arch.describe())
def test_pt_file_round_trips_through_torch_load_and_our_reader(arch):
    state_dict = {key: torch.from_numpy(array) for key, array in checkpoint_file.init_arrays(arch, 3).items()}
    state_dict = {key: tensor + 0.25 for key, tensor in state_dict.items()}  # no all-zero tensors
    data = export.torch_file_bytes({key: tensor.numpy() for key, tensor in state_dict.items()})
    loaded = torch.load(io.BytesIO(data), weights_only=True)
    assert list(loaded) == list(state_dict)
    for key, tensor in state_dict.items():
        assert loaded[key].dtype == torch.float32 and loaded[key].shape == tensor.shape
        assert torch.equal(loaded[key], tensor), key
    QNetwork(arch).load_state_dict(loaded)  # the module loads it as a saved state dict
    ours = imports.read_network_file(data).tensors
    assert all(np.array_equal(ours[key], tensor.numpy()) for key, tensor in state_dict.items())


@pytest.mark.parametrize("kind", ["float", "dynamic", "static"])
def test_onnx_export_from_numpy_runs_in_onnxruntime_like_the_service(kind, float_parent, static_int8):
    checkpoint = {
        "float": float_parent,
        "dynamic": quantize_dynamic(float_parent).checkpoint,
        "static": static_int8,
    }[kind]
    states = np.random.default_rng(1).standard_normal((256, 8)).astype(np.float32)
    session = onnxruntime.InferenceSession(export.onnx_bytes(checkpoint.to_file()), providers=["CPUExecutionProvider"])
    onnx_q = session.run(None, {export.INPUT_NAME: states})[0]
    with torch.no_grad():
        service_q = inference_forward(checkpoint)(torch.from_numpy(states)).numpy()
    assert (onnx_q.argmax(axis=1) == service_q.argmax(axis=1)).mean() >= 0.99
    assert np.abs(onnx_q - service_q).max() < (0.05 if kind == "static" else 1e-4)


def test_source_state_dict_dequantizes_as_torch_does(float_parent):
    int8 = quantize_dynamic(float_parent).checkpoint
    exported = export.source_state_dict(int8.to_file())
    for key, tensor in dequantize(int8).items():
        assert np.array_equal(exported[key], tensor.numpy()), key
    with torch.no_grad():
        states = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
        float_q = functional_forward(float_parent.arch, float_parent.tensors, states)
        int8_q = functional_forward(
            int8.arch, {key: torch.from_numpy(array) for key, array in exported.items()}, states
        )
    assert (float_q.argmax(1) == int8_q.argmax(1)).float().mean() > 0.9
