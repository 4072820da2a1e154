import io
import pickle
import struct
import zipfile

import numpy as np
import pytest
import torch
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from core import artifacts
from core.networks import QNetwork, QNetworkArch, init_network


@pytest.fixture
def parent():
    return artifacts.float_checkpoint(init_network(QNetworkArch(), 0).state_dict())


def test_encoding_is_deterministic_and_round_trips(parent):
    data = artifacts.encode(parent)
    assert data == artifacts.encode(artifacts.float_checkpoint(init_network(QNetworkArch(), 0).state_dict()))
    decoded = artifacts.decode(data)
    assert decoded.arch == parent.arch and decoded.format == "float32"
    assert all(torch.equal(decoded.tensors[key], parent.tensors[key]) for key in parent.tensors)
    # Any safetensors reader sees the reference state-dict keys.
    assert sorted(safetensors_load(data)) == sorted(parent.tensors)


def test_reference_pt_state_dict_uploads_unchanged():
    model = QNetwork(QNetworkArch(hidden_size=32))
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    checkpoint = artifacts.read_upload(buffer.getvalue())
    assert checkpoint.arch.hidden_sizes == (32, 32)
    assert torch.equal(checkpoint.tensors["network.4.weight"], model.state_dict()["network.4.weight"])


def test_pickled_module_is_refused_with_advice():
    buffer = io.BytesIO()
    torch.save(QNetwork(QNetworkArch()), buffer)
    with pytest.raises(artifacts.PickledModuleError, match=r"state_dict"):
        artifacts.read_upload(buffer.getvalue())


class _Exploit:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED_PATH').write_text('pwned')",))


def test_malicious_pickle_never_executes(tmp_path):
    marker = tmp_path / "pwned"
    payload = pickle.dumps(_Exploit(), protocol=2).replace(b"PWNED_PATH", str(marker).encode())
    with pytest.raises(artifacts.CheckpointError):
        artifacts.read_upload(payload)
    buffer = io.BytesIO()
    torch.save({"network.0.weight": _Exploit()}, buffer)
    with pytest.raises(artifacts.CheckpointError):
        artifacts.read_upload(buffer.getvalue().replace(b"PWNED_PATH", str(marker).encode()))
    assert not marker.exists()


@pytest.mark.parametrize("cut", [10, 200, -100])
def test_truncated_safetensors_is_refused(parent, cut):
    with pytest.raises(artifacts.CheckpointError):
        artifacts.decode(artifacts.encode(parent)[:cut])


def test_unknown_file_type_is_refused():
    with pytest.raises(artifacts.UnsupportedFileError):
        artifacts.read_upload(b"hello, this is text and not a network")


def test_nan_weights_and_wrong_shapes_are_refused(parent):
    tensors = dict(parent.tensors)
    tensors["network.0.bias"] = torch.full((64,), float("nan"))
    with pytest.raises(artifacts.CheckpointError, match="NaN"):
        artifacts.decode(safetensors_save(tensors))
    tensors = dict(parent.tensors)
    tensors["network.8.bias"] = torch.zeros(5)
    with pytest.raises(artifacts.CheckpointError, match="network.8.bias"):
        artifacts.decode(safetensors_save(tensors))


def test_int8_checkpoint_needs_int8_weights_and_scales(parent):
    header = {"format_version": 1, "arch": parent.arch.to_dict(), "format": "int8", "quantization": {}, "metadata": {}}
    import json

    data = safetensors_save(dict(parent.tensors), metadata={"recomb": json.dumps(header)})
    with pytest.raises(artifacts.CheckpointError, match="must be int8"):
        artifacts.decode(data)


def test_header_length_prefix_is_validated():
    bogus = struct.pack("<Q", 10**9) + b"{}"
    with pytest.raises(artifacts.CheckpointError):
        artifacts.read_upload(bogus + np.zeros(4, dtype=np.uint8).tobytes())


def test_a_deflated_pt_is_refused_by_its_declared_size_before_decompression():
    """A .pt zip rewritten with deflate: 16 MB of zeros in about 20 KB, read back only within the limit."""
    buffer = io.BytesIO()
    torch.save(QNetwork(QNetworkArch(hidden_size=2048)).state_dict(), buffer)
    plain = zipfile.ZipFile(io.BytesIO(buffer.getvalue()))
    deflated = io.BytesIO()
    with zipfile.ZipFile(deflated, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for entry in plain.infolist():
            data = plain.read(entry.filename)
            archive.writestr(entry.filename, bytes(len(data)) if "/data/" in entry.filename else data)
    bomb = deflated.getvalue()
    assert len(bomb) < 100_000
    with pytest.raises(
        artifacts.UploadTooLargeError, match=r"the zip unpacks to 1[0-9]{7} bytes, over the limit of 1000000"
    ):
        artifacts.read_upload(bomb, max_unpacked_bytes=1_000_000)
    assert artifacts.read_upload(bomb, max_unpacked_bytes=20_000_000).arch.hidden_sizes == (
        2048,
        2048,
    )  # deflated entries read fine within the limit
