"""The one safe checkpoint format: safetensors plus JSON metadata, no pickle.

A float checkpoint holds the architecture's ``network.*`` float32 tensors
(``QNetworkArch.state_dict_keys``). An int8 checkpoint holds every Linear
weight as int8 with its quantization parameters beside it as tensors, and
everything else in float32. Weights are symmetric, so their zero point is 0
and is recorded in the metadata rather than stored as more tensors (the header
is a third of these small files). For each Linear ``L`` (``network.{0,4,8}``
in the reference layout)::

    L.weight             int8     [out, in]
    L.weight_scale       float32  [1] (per tensor) or [out] (per channel)
    L.input_scale        float32  [1]   static mode only
    L.input_zero_point   int32    [1]   static mode only, in [0, 255] (uint8 inputs)
    L.bias, LayerNorm weights and biases   float32

The safetensors header carries ``{"recomb": <json>}`` with the format
version, architecture, format, quantization scheme and ``source_format``
(the layout the network came from: ``reference``, ``cleanrl``, ``sb3``,
``safetensors`` or ``recomb``). Headers written before the architecture
family existed (``hidden_size``) read as the reference layout. The layout depends on
no quantization backend, so swapping the int8 kernel changes no artifact.

Reading, checking and writing the file happen once, on numpy arrays, in
``core.checkpoint_file`` (which the web process uses without torch); this
module is the torch view of the same checkpoint for the stages.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from core import checkpoint_file, imports
from core.arch import QNetworkArch
from core.checkpoint_file import (  # noqa: F401 (re-exported: the file's constants and hash live there)
    FORMAT_VERSION,
    INT8_EXTRA_SUFFIXES,
    SOURCE_FORMATS,
    CheckpointFile,
    CheckpointFormat,
    SourceFormat,
    sha256_hex,
)

# The readers' errors are this module's too: callers catch them from one place.
from core.imports import CheckpointError, PickledModuleError, UnsupportedFileError, UploadTooLargeError  # noqa: F401


@dataclass(frozen=True)
class Checkpoint:
    """A network as stored: architecture, tensors, format and quantization scheme."""

    arch: QNetworkArch
    tensors: dict[str, torch.Tensor]
    format: CheckpointFormat = "float32"
    quantization: dict[str, Any] | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    source_format: SourceFormat = "recomb"

    @property
    def param_bytes(self) -> int:
        return sum(tensor.numel() * tensor.element_size() for tensor in self.tensors.values())

    def to_file(self) -> CheckpointFile:
        """The same checkpoint as numpy arrays (sharing the tensors' memory)."""
        arrays = {key: tensor.detach().contiguous().numpy() for key, tensor in self.tensors.items()}
        return CheckpointFile(self.arch, arrays, self.format, self.quantization, self.metadata, self.source_format)


def from_file(stored: CheckpointFile) -> Checkpoint:
    """The torch view of a checked ``CheckpointFile`` (tensors own copies of the arrays)."""
    tensors = {key: torch.from_numpy(array.copy()) for key, array in stored.arrays.items()}
    return Checkpoint(stored.arch, tensors, stored.format, stored.quantization, stored.metadata, stored.source_format)


def float_checkpoint(
    state_dict: Mapping[str, torch.Tensor],
    arch: QNetworkArch | None = None,
    metadata: dict | None = None,
    source_format: SourceFormat = "recomb",
) -> Checkpoint:
    """Wrap a float state dict (any float dtype) as a checked float32 checkpoint."""
    arrays = {key: tensor.detach().to(torch.float32).cpu().numpy() for key, tensor in state_dict.items()}
    return from_file(checkpoint_file.float_file(arrays, arch, metadata, source_format))


def encode(checkpoint: Checkpoint) -> bytes:
    """Serialise to safetensors bytes; equal checkpoints give equal bytes (and sha256)."""
    return checkpoint_file.encode(checkpoint.to_file())


def decode(data: bytes) -> Checkpoint:
    """Parse and fully validate safetensors bytes (ours, or a plain float state dict)."""
    return from_file(checkpoint_file.decode(data))


def read_upload(
    data: bytes, declared: QNetworkArch | None = None, max_unpacked_bytes: int = imports.DEFAULT_MAX_TENSOR_BYTES
) -> Checkpoint:
    """``checkpoint_file.read_upload`` as a torch checkpoint (its docstring lists formats and errors)."""
    return from_file(checkpoint_file.read_upload(data, declared, max_unpacked_bytes))
