"""The one safe checkpoint format: safetensors plus JSON metadata, no pickle.

A float checkpoint holds the ten ``network.*`` float32 tensors. An int8
checkpoint holds the three Linear weights as int8 with their quantization
parameters beside them as tensors, and everything else in float32. Weights are
symmetric, so their zero point is 0 and is recorded in the metadata rather
than stored as three more tensors (the header is a third of these small files)::

    network.{0,4,8}.weight             int8     [out, in]
    network.{0,4,8}.weight_scale       float32  [1] (per tensor) or [out] (per channel)
    network.{0,4,8}.input_scale        float32  [1]   static mode only
    network.{0,4,8}.input_zero_point   int32    [1]   static mode only, in [0, 255] (uint8 inputs)
    network.{0,4,8}.bias, network.{1,5}.*  float32

The safetensors header carries ``{"recomb": <json>}`` with the format
version, architecture, format and quantization scheme. The layout depends on
no quantization backend, so swapping the int8 kernel changes no artifact.
"""

from __future__ import annotations

import hashlib
import io
import json
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as safetensors_load
from safetensors.torch import save as safetensors_save

from core.networks import LINEAR_INDICES, STATE_DICT_KEYS, QNetworkArch, check_shapes, infer_arch

FORMAT_VERSION = 1
CheckpointFormat = Literal["float32", "int8"]
ZIP_MAGIC = b"PK\x03\x04"  # torch.save's default container
PICKLE_PROTOCOL_MARK = b"\x80"  # torch.save(..., _use_new_zipfile_serialization=False)
INT8_EXTRA_SUFFIXES = ("weight_scale", "input_scale", "input_zero_point")


class CheckpointError(ValueError):
    """The bytes are not a usable checkpoint; the message says why."""


class UnsupportedFileError(CheckpointError):
    """Neither safetensors nor a ``.pt`` (zip or legacy pickle) file."""


class PickledModuleError(CheckpointError):
    """A ``.pt`` file holds a pickled module or other objects, not a plain state dict."""


@dataclass(frozen=True)
class Checkpoint:
    """A network as stored: architecture, tensors, format and quantization scheme."""

    arch: QNetworkArch
    tensors: dict[str, torch.Tensor]
    format: CheckpointFormat = "float32"
    quantization: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def param_bytes(self) -> int:
        return sum(tensor.numel() * tensor.element_size() for tensor in self.tensors.values())


def float_checkpoint(state_dict: Mapping[str, torch.Tensor], arch: QNetworkArch | None = None, metadata: dict | None = None) -> Checkpoint:
    """Wrap a float state dict (any float dtype) as a checked float32 checkpoint."""
    arch = arch or infer_arch(state_dict)
    check_shapes(state_dict, arch)
    tensors = {key: state_dict[key].detach().to(torch.float32).contiguous().clone() for key in STATE_DICT_KEYS}
    _check_finite(tensors)
    return Checkpoint(arch=arch, tensors=tensors, metadata=dict(metadata or {}))


def encode(checkpoint: Checkpoint) -> bytes:
    """Serialise to safetensors bytes; equal checkpoints give equal bytes (and sha256)."""
    header = {
        "format_version": FORMAT_VERSION,
        "arch": checkpoint.arch.to_dict(),
        "format": checkpoint.format,
        "quantization": checkpoint.quantization,
        "metadata": checkpoint.metadata,
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    tensors = {key: checkpoint.tensors[key].contiguous() for key in sorted(checkpoint.tensors)}
    return safetensors_save(tensors, metadata={"recomb": text})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> Checkpoint:
    """Parse and fully validate safetensors bytes (ours, or a plain float state dict)."""
    try:
        tensors = safetensors_load(data)
        header_metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError, RuntimeError) as error:
        raise CheckpointError(f"corrupt or truncated safetensors file: {error}") from error
    if "recomb" not in header_metadata:
        return _as_float_checkpoint(tensors)
    try:
        header = json.loads(header_metadata["recomb"])
        arch = QNetworkArch(**header["arch"])
        checkpoint_format = header["format"]
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"invalid recomb metadata: {error}") from error
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"unsupported format_version {header.get('format_version')!r}")
    if checkpoint_format == "float32":
        checkpoint = _as_float_checkpoint(tensors, arch)
        return Checkpoint(arch, checkpoint.tensors, "float32", None, header.get("metadata") or {})
    if checkpoint_format == "int8":
        _check_int8_tensors(tensors, arch)
        return Checkpoint(arch, tensors, "int8", header.get("quantization") or {}, header.get("metadata") or {})
    raise CheckpointError(f"unknown checkpoint format {checkpoint_format!r}")


def read_upload(data: bytes) -> Checkpoint:
    """Read an uploaded network: safetensors, or a ``.pt`` state dict.

    ``.pt`` files are opened only with ``torch.load(weights_only=True)``, whose
    restricted unpickler refuses any global it does not know, so a malicious
    pickle cannot run code. A pickled module is refused with ``PickledModuleError``.
    """
    if _looks_like_safetensors(data):
        return decode(data)
    if not data.startswith((ZIP_MAGIC, PICKLE_PROTOCOL_MARK)):
        raise UnsupportedFileError("unsupported file type: upload a safetensors file or a .pt state dict")
    try:
        loaded = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        raise PickledModuleError(
            "the .pt file holds a pickled object, not a plain state dict; "
            "save it with torch.save(model.state_dict(), path) and upload that"
        ) from error
    except Exception as error:  # torch.load raises many types for corrupt input
        raise CheckpointError(f"not a readable safetensors or .pt state-dict file: {type(error).__name__}") from error
    if not isinstance(loaded, Mapping) or not all(isinstance(value, torch.Tensor) for value in loaded.values()):
        raise PickledModuleError("the .pt file must hold a flat state dict of tensors (model.state_dict())")
    return _as_float_checkpoint(dict(loaded))


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_length = int.from_bytes(data[:8], "little")
    return 0 < header_length <= len(data) - 8 and data[8:9] == b"{"


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    return header.get("__metadata__") or {}


def _as_float_checkpoint(tensors: Mapping[str, torch.Tensor], arch: QNetworkArch | None = None) -> Checkpoint:
    not_float = [key for key, tensor in tensors.items() if not tensor.is_floating_point()]
    if not_float:
        raise CheckpointError(f"float checkpoint tensors must be floating point: {not_float}")
    try:
        return float_checkpoint(tensors, arch)
    except ValueError as error:
        raise CheckpointError(str(error)) from error


def _check_int8_tensors(tensors: Mapping[str, torch.Tensor], arch: QNetworkArch) -> None:
    shapes = arch.param_shapes()
    for key in STATE_DICT_KEYS:
        if key not in tensors:
            raise CheckpointError(f"int8 checkpoint is missing {key}")
        if tuple(tensors[key].shape) != shapes[key]:
            raise CheckpointError(f"{key}: expected shape {list(shapes[key])}, got {list(tensors[key].shape)}")
    allowed = set(STATE_DICT_KEYS)
    for index in LINEAR_INDICES:
        weight = tensors[f"network.{index}.weight"]
        if weight.dtype != torch.int8:
            raise CheckpointError(f"network.{index}.weight must be int8 in an int8 checkpoint, got {weight.dtype}")
        scale_key = f"network.{index}.weight_scale"
        if scale_key not in tensors:
            raise CheckpointError(f"int8 checkpoint is missing {scale_key}")
        scale = tensors[scale_key]
        if scale.dim() != 1 or scale.shape[0] not in (1, weight.shape[0]) or not bool((scale > 0).all()):
            raise CheckpointError(f"{scale_key} must be positive with 1 or {weight.shape[0]} entries")
        allowed.update(f"network.{index}.{suffix}" for suffix in INT8_EXTRA_SUFFIXES)
    _check_activation_qparams(tensors)
    unexpected = sorted(set(tensors) - allowed)
    if unexpected:
        raise CheckpointError(f"unexpected tensors in int8 checkpoint: {unexpected[:10]}")
    _check_finite({key: tensor for key, tensor in tensors.items() if tensor.is_floating_point()})


def _check_activation_qparams(tensors: Mapping[str, torch.Tensor]) -> None:
    """Static checkpoints carry a uint8 input scale and zero point for every Linear, others none."""
    keys = [f"network.{index}.{name}" for index in LINEAR_INDICES for name in ("input_scale", "input_zero_point")]
    present = [key for key in keys if key in tensors]
    if not present:
        return
    if len(present) != len(keys):
        raise CheckpointError(f"static int8 checkpoint is missing {sorted(set(keys) - set(present))}")
    for index in LINEAR_INDICES:
        scale = tensors[f"network.{index}.input_scale"]
        zero_point = tensors[f"network.{index}.input_zero_point"]
        if scale.dtype != torch.float32 or scale.shape != (1,) or not bool((scale > 0).all()):
            raise CheckpointError(f"network.{index}.input_scale must be one positive float32")
        if zero_point.dtype != torch.int32 or zero_point.shape != (1,) or not 0 <= int(zero_point) <= 255:
            raise CheckpointError(f"network.{index}.input_zero_point must be one int32 in [0, 255]")


def _check_finite(tensors: Mapping[str, torch.Tensor]) -> None:
    bad = [key for key, tensor in tensors.items() if not bool(torch.isfinite(tensor).all())]
    if bad:
        raise CheckpointError(f"tensors hold NaN or inf: {bad}")
