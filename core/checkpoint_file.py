"""The stored checkpoint as numpy arrays: read, check and write the safetensors file without torch.

The file layout is described in ``core.artifacts``, whose torch ``Checkpoint``
converts to and from a ``CheckpointFile``; every check and the encoder live
here once, so the web process (which never loads torch) and the workers write
the same bytes for the same network. Uploads (safetensors, a ``.pt`` state
dict or a Stable-Baselines3 zip, the latter two read by ``core.imports``'
allowlist unpickler) and synthetic parents (``init_arrays``) become a
``CheckpointFile`` here.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np
from safetensors import SafetensorError, deserialize
from safetensors.numpy import save as safetensors_save

from core import imports
from core.arch import QNetworkArch, check_shapes, infer_arch
from core.imports import CheckpointError, UnsupportedFileError

FORMAT_VERSION = 1
CheckpointFormat = Literal["float32", "int8"]
SourceFormat = Literal["recomb", "reference", "cleanrl", "sb3", "safetensors"]
SOURCE_FORMATS: tuple[str, ...] = ("recomb", "reference", "cleanrl", "sb3", "safetensors")
INT8_EXTRA_SUFFIXES = ("weight_scale", "input_scale", "input_zero_point")
# safetensors dtypes as numpy reads them; bfloat16 (which numpy lacks) is widened to float32 exactly.
SAFETENSORS_DTYPES: dict[str, np.dtype] = {
    "F64": np.dtype("<f8"),
    "F32": np.dtype("<f4"),
    "F16": np.dtype("<f2"),
    "I64": np.dtype("<i8"),
    "I32": np.dtype("<i4"),
    "I16": np.dtype("<i2"),
    "I8": np.dtype("i1"),
    "U64": np.dtype("<u8"),
    "U32": np.dtype("<u4"),
    "U16": np.dtype("<u2"),
    "U8": np.dtype("u1"),
    "BOOL": np.dtype("?"),
}
# torch's CPU generator keeps 24 random bits per float32 draw (uniform_real_distribution<float>).
_FLOAT_MANTISSA_BITS = 24


@dataclass(frozen=True)
class CheckpointFile:
    """A network as stored: architecture, numpy arrays (C-contiguous), format and quantization scheme."""

    arch: QNetworkArch
    arrays: dict[str, np.ndarray]
    format: CheckpointFormat = "float32"
    quantization: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_format: SourceFormat = "recomb"

    @property
    def param_bytes(self) -> int:
        return sum(array.nbytes for array in self.arrays.values())


def float_file(
    state_dict: Mapping[str, np.ndarray],
    arch: QNetworkArch | None = None,
    metadata: dict | None = None,
    source_format: SourceFormat = "recomb",
) -> CheckpointFile:
    """Wrap a float state dict (any float dtype) as a checked float32 file; ``ValueError`` names what is wrong."""
    arch = arch or infer_arch(state_dict)
    check_shapes(state_dict, arch)
    arrays = {key: np.array(state_dict[key], dtype=np.float32, order="C") for key in arch.state_dict_keys()}
    _check_finite(arrays)
    return CheckpointFile(arch=arch, arrays=arrays, metadata=dict(metadata or {}), source_format=source_format)


def encode(checkpoint: CheckpointFile) -> bytes:
    """Serialise to safetensors bytes; equal checkpoints give equal bytes (and sha256)."""
    header = {
        "format_version": FORMAT_VERSION,
        "arch": checkpoint.arch.to_dict(),
        "format": checkpoint.format,
        "quantization": checkpoint.quantization,
        "metadata": checkpoint.metadata,
        "source_format": checkpoint.source_format,
    }
    text = json.dumps(header, sort_keys=True, separators=(",", ":"), allow_nan=False)
    arrays = {key: np.ascontiguousarray(checkpoint.arrays[key]) for key in sorted(checkpoint.arrays)}
    return safetensors_save(arrays, metadata={"recomb": text})


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def decode(data: bytes) -> CheckpointFile:
    """Parse and fully validate safetensors bytes (ours, or a plain float state dict)."""
    try:
        arrays = _load_arrays(data)
        header_metadata = _safetensors_metadata(data)
    except (SafetensorError, ValueError, OSError, RuntimeError, TypeError) as error:
        raise CheckpointError(f"corrupt or truncated safetensors file: {error}") from error
    if "recomb" not in header_metadata:
        return dataclasses.replace(_as_float_file(arrays), source_format="safetensors")
    try:
        header = json.loads(header_metadata["recomb"])
        arch = QNetworkArch.from_dict(header["arch"])
        checkpoint_format = header["format"]
        source_format = header.get("source_format", "recomb")
    except (ValueError, TypeError, KeyError) as error:
        raise CheckpointError(f"invalid recomb metadata: {error}") from error
    if header.get("format_version") != FORMAT_VERSION:
        raise CheckpointError(f"unsupported format_version {header.get('format_version')!r}")
    if source_format not in SOURCE_FORMATS:
        raise CheckpointError(f"unknown source_format {source_format!r}")
    if checkpoint_format == "float32":
        checked = _as_float_file(arrays, arch)
        return CheckpointFile(arch, checked.arrays, "float32", None, header.get("metadata") or {}, source_format)
    if checkpoint_format == "int8":
        _check_int8_arrays(arrays, arch)
        return CheckpointFile(
            arch,
            {key: np.array(array, order="C") for key, array in arrays.items()},
            "int8",
            header.get("quantization") or {},
            header.get("metadata") or {},
            source_format,
        )
    raise CheckpointError(f"unknown checkpoint format {checkpoint_format!r}")


def read_upload(
    data: bytes, declared: QNetworkArch | None = None, max_unpacked_bytes: int = imports.DEFAULT_MAX_TENSOR_BYTES
) -> CheckpointFile:
    """Read an uploaded network: safetensors, a ``.pt`` state dict, or a Stable-Baselines3 DQN zip.

    ``.pt`` and zip files are read by ``core.imports`` (an allowlist
    unpickler, no torch), so a malicious pickle cannot run code and a pickled
    module is refused with ``PickledModuleError``. The architecture is
    inferred from the tensors; a file cannot say its activation (except an
    SB3 zip's ``data``), so ``declared`` supplies activation and dropout and
    must have the same shapes. The result records ``source_format``. A zip
    (``.pt`` or SB3) whose entries would unpack to more than
    ``max_unpacked_bytes`` is refused (``UploadTooLargeError``) before any is
    decompressed; safetensors and legacy ``.pt`` files hold their bytes as
    they are, so their size is the upload's.
    """
    if _looks_like_safetensors(data):
        checkpoint = decode(data)
        if declared is None:
            return checkpoint
        _check_declared(declared, checkpoint.arch)
        return dataclasses.replace(checkpoint, arch=declared)
    if not imports.is_torch_file(data):
        raise UnsupportedFileError(
            "unsupported file type: upload safetensors, a .pt state dict or a Stable-Baselines3 DQN .zip"
        )
    imported = imports.read_network_file(data, max_unpacked_bytes)
    activation = imported.activation
    if declared is not None and activation is not None and declared.activation != activation:
        raise CheckpointError(f"declared activation {declared.activation} differs from the file's {activation}")
    try:
        arch = infer_arch(
            imported.tensors,
            activation=declared.activation if declared is not None else activation or "relu",
            dropout_rate=declared.dropout_rate if declared is not None else None,
        )
    except ValueError as error:
        raise CheckpointError(str(error)) from error
    if imported.hidden_sizes is not None and imported.hidden_sizes != arch.hidden_sizes:
        raise CheckpointError(
            f"the zip's net_arch {list(imported.hidden_sizes)} does not match its tensors ({arch.describe()})"
        )
    if declared is not None:
        _check_declared(declared, arch)
        arch = declared
    source_format = cast(SourceFormat, imported.source_format)  # core.imports names one of SOURCE_FORMATS
    return dataclasses.replace(_as_float_file(imported.tensors, arch), source_format=source_format)


def init_arrays(arch: QNetworkArch, seed: int) -> dict[str, np.ndarray]:
    """Fresh float32 parameters, bit-identical to ``torch.nn.init.xavier_uniform_`` from ``manual_seed(seed)``.

    Linear weights are Xavier-uniform, drawn in block order from one
    Mersenne Twister seeded with ``seed`` (mod 2**32, as torch seeds its CPU
    generator), each float keeping the low 24 bits of one 32-bit output:
    ``bits * 2**-24 * (high - low) + low`` in float32, as torch's CPU
    ``uniform_`` computes it. Biases are zero; LayerNorm weight 1, bias 0.
    ``tests/core/test_checkpoint_file.py`` checks equality with torch.
    """
    generator = np.random.MT19937()
    generator._legacy_seeding(int(seed) & 0xFFFFFFFF)
    params: dict[str, np.ndarray] = {}
    for block in arch.blocks:
        shape = (block.out_features, block.in_features)
        bound = math.sqrt(3.0) * math.sqrt(2.0 / float(block.in_features + block.out_features))
        low, high = np.float32(-bound), np.float32(bound)
        bits = generator.random_raw(shape[0] * shape[1]) & ((1 << _FLOAT_MANTISSA_BITS) - 1)
        unit = bits.astype(np.float64) * 2.0**-_FLOAT_MANTISSA_BITS
        params[block.weight] = (unit * np.float64(high - low) + np.float64(low)).astype(np.float32).reshape(shape)
        params[block.bias] = np.zeros(block.out_features, dtype=np.float32)
        if block.norm:
            params[block.norm_weight] = np.ones(block.out_features, dtype=np.float32)
            params[block.norm_bias] = np.zeros(block.out_features, dtype=np.float32)
    return params


def dequantized_arrays(checkpoint: CheckpointFile) -> dict[str, np.ndarray]:
    """The float32 state dict a checkpoint computes with: int8 weights times their scales (per row or tensor)."""
    keys = checkpoint.arch.state_dict_keys()
    params = {key: checkpoint.arrays[key] for key in keys}
    if checkpoint.format == "int8":
        for key in checkpoint.arch.linear_weight_keys:
            scale = checkpoint.arrays[f"{key}_scale"].astype(np.float32)
            params[key] = checkpoint.arrays[key].astype(np.float32) * scale[:, None]
    return params


def is_static(checkpoint: CheckpointFile) -> bool:
    """True for an int8 checkpoint with quantized activations."""
    return checkpoint.format == "int8" and f"{checkpoint.arch.blocks[0].linear}.input_scale" in checkpoint.arrays


def _check_declared(declared: QNetworkArch, found: QNetworkArch) -> None:
    if not declared.same_shapes(found) or declared.has_dropout_slot != found.has_dropout_slot:
        raise CheckpointError(
            f"declared arch {declared.describe()} does not match the tensors ({found.describe()}): "
            f"{declared.difference(found)}"
        )


def _looks_like_safetensors(data: bytes) -> bool:
    if len(data) < 10:
        return False
    header_length = int.from_bytes(data[:8], "little")
    return 0 < header_length <= len(data) - 8 and data[8:9] == b"{"


def _load_arrays(data: bytes) -> dict[str, np.ndarray]:
    arrays = {}
    for name, view in deserialize(data):
        raw, shape, dtype = view["data"], view["shape"], view["dtype"]
        if dtype == "BF16":
            widened = np.frombuffer(raw, dtype="<u2").astype("<u4") << 16
            arrays[name] = widened.view("<f4").reshape(shape)
        elif dtype in SAFETENSORS_DTYPES:
            arrays[name] = np.frombuffer(raw, dtype=SAFETENSORS_DTYPES[dtype]).reshape(shape)
        else:
            raise CheckpointError(f"{name}: unsupported tensor dtype {dtype}")
    return arrays


def _safetensors_metadata(data: bytes) -> dict[str, str]:
    header_length = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_length])
    return header.get("__metadata__") or {}


def _as_float_file(arrays: Mapping[str, np.ndarray], arch: QNetworkArch | None = None) -> CheckpointFile:
    not_float = [key for key, array in arrays.items() if array.dtype.kind != "f"]
    if not_float:
        raise CheckpointError(f"float checkpoint tensors must be floating point: {not_float}")
    try:
        return float_file(arrays, arch)
    except ValueError as error:
        raise CheckpointError(str(error)) from error


def _check_int8_arrays(arrays: Mapping[str, np.ndarray], arch: QNetworkArch) -> None:
    shapes = arch.param_shapes()
    for key, shape in shapes.items():
        if key not in arrays:
            raise CheckpointError(f"int8 checkpoint is missing {key}")
        if tuple(arrays[key].shape) != shape:
            raise CheckpointError(f"{key}: expected shape {list(shape)}, got {list(arrays[key].shape)}")
    allowed = set(shapes)
    for block in arch.blocks:
        weight = arrays[block.weight]
        if weight.dtype != np.int8:
            raise CheckpointError(
                f"{block.weight} must be int8 in an int8 checkpoint, got {_torch_dtype_name(weight.dtype)}"
            )
        scale_key = f"{block.weight}_scale"
        if scale_key not in arrays:
            raise CheckpointError(f"int8 checkpoint is missing {scale_key}")
        scale = arrays[scale_key]
        if scale.ndim != 1 or scale.shape[0] not in (1, weight.shape[0]) or not bool((scale > 0).all()):
            raise CheckpointError(f"{scale_key} must be positive with 1 or {weight.shape[0]} entries")
        allowed.update(f"{block.linear}.{suffix}" for suffix in INT8_EXTRA_SUFFIXES)
    _check_activation_qparams(arrays, arch)
    unexpected = sorted(set(arrays) - allowed)
    if unexpected:
        raise CheckpointError(f"unexpected tensors in int8 checkpoint: {unexpected[:10]}")
    _check_finite({key: array for key, array in arrays.items() if array.dtype.kind == "f"})


def _check_activation_qparams(arrays: Mapping[str, np.ndarray], arch: QNetworkArch) -> None:
    """Static checkpoints carry a uint8 input scale and zero point for every Linear, others none."""
    keys = [f"{block.linear}.{name}" for block in arch.blocks for name in ("input_scale", "input_zero_point")]
    present = [key for key in keys if key in arrays]
    if not present:
        return
    if len(present) != len(keys):
        raise CheckpointError(f"static int8 checkpoint is missing {sorted(set(keys) - set(present))}")
    for block in arch.blocks:
        scale = arrays[f"{block.linear}.input_scale"]
        zero_point = arrays[f"{block.linear}.input_zero_point"]
        if scale.dtype != np.float32 or scale.shape != (1,) or not bool((scale > 0).all()):
            raise CheckpointError(f"{block.linear}.input_scale must be one positive float32")
        if zero_point.dtype != np.int32 or zero_point.shape != (1,) or not 0 <= int(zero_point[0]) <= 255:
            raise CheckpointError(f"{block.linear}.input_zero_point must be one int32 in [0, 255]")


def _check_finite(arrays: Mapping[str, np.ndarray]) -> None:
    bad = [key for key, array in arrays.items() if not bool(np.isfinite(array).all())]
    if bad:
        raise CheckpointError(f"tensors hold NaN or inf: {bad}")


def _torch_dtype_name(dtype: np.dtype) -> str:
    """``torch.float32`` for float32: error messages name dtypes as they did when torch read the file."""
    return f"torch.{dtype.name}"
