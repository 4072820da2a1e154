"""Reading other libraries' network files without torch and without a general unpickler.

Formats (detected from the bytes, never from a file name):

- a torch ``.pt`` file holding a plain state dict, in torch's zip container or
  the legacy pickle stream (the reference's files, CleanRL's ``nn.Sequential``
  state dicts, a Stable-Baselines3 ``q_net`` state dict);
- a Stable-Baselines3 DQN ``.zip``: ``policy.pth`` is read, ``q_net.*`` taken,
  ``q_net_target.*`` and the optimizer ignored; ``net_arch`` and the
  activation come from the readable fields of the ``data`` JSON (its pickled
  entries are never decoded).

Pickles are read by ``_StateDictUnpickler``, whose ``find_class`` allows
exactly what ``torch.load(weights_only=True)`` needs for a plain tensor state
dict (``collections.OrderedDict``, ``torch._utils._rebuild_tensor_v2`` and
``_rebuild_parameter``, the typed storage classes) and maps each to a numpy
stand-in; any other global is refused before anything is built, so a
malicious pickle never runs code. Tensor bytes are bounds-checked against
their storage before a view is taken, and a storage's size is read from the
zip directory before it is read.
"""

from __future__ import annotations

import ast
import io
import json
import math
import pickle
import re
import struct
import zipfile
import zlib
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

ZIP_MAGIC = b"PK\x03\x04"
PICKLE_PROTOCOL_MARK = b"\x80"
LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
LEGACY_PROTOCOL_VERSION = 1001
DEFAULT_MAX_TENSOR_BYTES = 256 * 1024 * 1024
# The torch storage classes a state dict names, and their element types (little-endian, as torch writes).
STORAGE_DTYPES: dict[str, np.dtype] = {
    "FloatStorage": np.dtype("<f4"),
    "DoubleStorage": np.dtype("<f8"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}
# Entries a Stable-Baselines3 save writes; anything else in a zip is refused by name.
SB3_ENTRIES = frozenset(
    {
        "data",
        "policy.pth",
        "policy.optimizer.pth",
        "pytorch_variables.pth",
        "_stable_baselines3_version",
        "system_info.txt",
    }
)
SB3_ACTIVATIONS = {
    "ReLU": "relu",
    "Tanh": "tanh",
    "GELU": "gelu",
    "SiLU": "silu",
    "ELU": "elu",
    "LeakyReLU": "leaky_relu",
}


class CheckpointError(ValueError):
    """The bytes are not a usable checkpoint; the message says why."""


class UnsupportedFileError(CheckpointError):
    """Neither safetensors, a ``.pt`` (zip or legacy pickle) file, nor a Stable-Baselines3 zip."""


class PickledModuleError(CheckpointError):
    """A ``.pt`` file holds a pickled module or other objects, not a plain state dict."""


class UploadTooLargeError(CheckpointError):
    """A zip whose entries would unpack to more bytes than allowed; raised from its directory, before anything is
    decompressed.
    """


@dataclass(frozen=True)
class ImportedNetwork:
    """Tensors renamed to ``network.<index>.<weight|bias>`` and what the file said about the network.

    ``activation`` is None when the file does not say (state dicts never do);
    ``hidden_sizes`` is what a Stable-Baselines3 ``data`` JSON declared, if anything.
    """

    tensors: dict[str, np.ndarray]
    source_format: str
    activation: str | None = None
    hidden_sizes: tuple[int, ...] | None = None


def is_torch_file(data: bytes) -> bool:
    return data.startswith((ZIP_MAGIC, PICKLE_PROTOCOL_MARK))


def read_network_file(data: bytes, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> ImportedNetwork:
    """Read a ``.pt`` state dict or a Stable-Baselines3 DQN zip (see the module docstring)."""
    try:
        return _read_network_file(data, max_tensor_bytes)
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, RuntimeError, NotImplementedError) as error:
        # A damaged zip member surfaces while it is read, not when the directory is.
        raise CheckpointError(f"corrupt or truncated file: {type(error).__name__}: {error}") from error


def _read_network_file(data: bytes, max_tensor_bytes: int) -> ImportedNetwork:
    if data.startswith(ZIP_MAGIC):
        archive = _open_zip(data, max_tensor_bytes)
        names = archive.namelist()
        if "policy.pth" in names or "data" in names:
            return _read_sb3(archive, max_tensor_bytes)
        return _state_dict_network(read_torch_zip(archive, max_tensor_bytes))
    if data.startswith(PICKLE_PROTOCOL_MARK):
        return _state_dict_network(read_legacy_torch(data, max_tensor_bytes))
    raise UnsupportedFileError(
        "unsupported file type: upload safetensors, a .pt state dict or a Stable-Baselines3 DQN .zip"
    )


def read_torch_zip(archive: zipfile.ZipFile, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> dict[str, np.ndarray]:
    """The tensors of a state dict saved by ``torch.save`` (zip container), as numpy arrays."""
    names = archive.namelist()
    pickles = [name for name in names if name.endswith("/data.pkl") and name.count("/") == 1]
    if len(pickles) != 1:
        others = sorted(
            name
            for name in names
            if not re.match(
                r"^[^/]+/(data\.pkl|data/\d+|version|\.format_version|\.storage_alignment|byteorder|\.data/serialization_id)$",
                name,
            )
        )
        raise UnsupportedFileError(f"not a torch .pt archive: unexpected entries {others[:10] or names[:10]}")
    root = pickles[0].split("/")[0]
    byteorder = archive.read(f"{root}/byteorder").decode() if f"{root}/byteorder" in names else "little"
    if byteorder != "little":
        raise CheckpointError(f"big-endian .pt files are not supported (byteorder {byteorder!r})")
    total = sum(info.file_size for info in archive.infolist() if info.filename.startswith(f"{root}/data/"))
    if total > max_tensor_bytes:
        raise CheckpointError(f"the tensors take {total} bytes, over the limit of {max_tensor_bytes}")

    def storage_bytes(key: str) -> bytes:
        try:
            return archive.read(f"{root}/data/{key}")
        except KeyError as error:
            raise CheckpointError(f"the .pt archive names a storage {key!r} it does not hold") from error

    unpickler = _StateDictUnpickler(io.BytesIO(archive.read(pickles[0])))
    loaded = _load(unpickler)
    storages = {key: storage_bytes(key) for key in unpickler.storage_keys}
    return _materialise(loaded, storages)


def read_legacy_torch(data: bytes, max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES) -> dict[str, np.ndarray]:
    """The tensors of a state dict in torch's legacy (non-zip) format."""
    stream = io.BytesIO(data)
    if _load(_StateDictUnpickler(stream)) != LEGACY_MAGIC_NUMBER:
        raise UnsupportedFileError("not a torch .pt file: the pickle stream lacks torch's magic number")
    if _load(_StateDictUnpickler(stream)) != LEGACY_PROTOCOL_VERSION:
        raise CheckpointError("unsupported legacy .pt protocol version")
    _load(_StateDictUnpickler(stream))  # system info: plain data
    unpickler = _StateDictUnpickler(stream)
    loaded = _load(unpickler)
    keys = _load(_StateDictUnpickler(stream))
    if not isinstance(keys, list) or not all(isinstance(key, str) for key in keys):
        raise CheckpointError("corrupt legacy .pt file: bad storage key list")
    storages = {}
    total = 0
    for key in keys:
        header = stream.read(8)
        if len(header) != 8:
            raise CheckpointError("truncated legacy .pt file")
        (count,) = struct.unpack("<q", header)
        itemsize = unpickler.storage_itemsize.get(key)
        if itemsize is None or count < 0:
            raise CheckpointError(f"corrupt legacy .pt file: storage {key!r}")
        total += count * itemsize
        if total > max_tensor_bytes:
            raise CheckpointError(f"the tensors take more than the limit of {max_tensor_bytes} bytes")
        storages[key] = stream.read(count * itemsize)
    return _materialise(loaded, storages)


class _StorageType:
    """Stand-in for a ``torch.<Type>Storage`` class named by a pickle."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.dtype = STORAGE_DTYPES[name]


@dataclass
class _Storage:
    key: str
    dtype: np.dtype
    numel: int


@dataclass
class _LazyTensor:
    """A tensor whose storage bytes are read after the pickle (as torch itself does)."""

    storage: _Storage
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _rebuild_tensor_v2(
    storage: Any,
    storage_offset: Any,
    size: Any,
    stride: Any,
    requires_grad: Any,
    backward_hooks: Any,
    metadata: Any = None,
) -> _LazyTensor:
    if not isinstance(storage, _Storage):
        raise CheckpointError("a tensor in the pickle does not reference a storage")
    if not _int_tuple(size) or not _int_tuple(stride) or not isinstance(storage_offset, int) or storage_offset < 0:
        raise CheckpointError("a tensor in the pickle has a malformed size, stride or offset")
    if backward_hooks:
        raise PickledModuleError("a tensor carries backward hooks: not a plain state dict")
    return _LazyTensor(storage, storage_offset, tuple(size), tuple(stride))


def _rebuild_parameter(data: Any, requires_grad: Any, backward_hooks: Any, *state: Any) -> _LazyTensor:
    if not isinstance(data, _LazyTensor) or backward_hooks:
        raise PickledModuleError("a parameter in the pickle is not a plain tensor")
    return data


def _int_tuple(value: Any) -> bool:
    return isinstance(value, tuple) and all(
        isinstance(item, int) and not isinstance(item, bool) and item >= 0 for item in value
    )


_ALLOWED_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
    **{("torch", name): _StorageType(name) for name in STORAGE_DTYPES},
}


class _StateDictUnpickler(pickle.Unpickler):
    """Builds only dicts, lists, tuples, numbers, strings and tensor stand-ins."""

    def __init__(self, stream: io.BytesIO) -> None:
        super().__init__(stream)
        self.storages: dict[str, _Storage] = {}

    @property
    def storage_keys(self) -> list[str]:
        return list(self.storages)

    @property
    def storage_itemsize(self) -> dict[str, int]:
        return {key: storage.dtype.itemsize for key, storage in self.storages.items()}

    def find_class(self, module: str, name: str) -> Any:
        allowed = _ALLOWED_GLOBALS.get((module, name))
        if allowed is None:
            raise PickledModuleError(
                f"the file references {module}.{name}, which a plain state dict never does: it holds a pickled module "
                "or other objects; save it with torch.save(model.state_dict(), path) and upload that"
            )
        return allowed

    def persistent_load(self, pid: Any) -> _Storage:
        # zip: ("storage", type, key, location, numel); legacy adds view metadata.
        if (
            not isinstance(pid, tuple)
            or len(pid) not in (5, 6)
            or pid[0] != "storage"
            or not isinstance(pid[1], _StorageType)
        ):
            raise PickledModuleError(f"unsupported persistent id in the pickle: {type(pid).__name__}")
        _, storage_type, key, _location, numel, *view = pid
        if not isinstance(key, str) or not isinstance(numel, int) or numel < 0 or (view and view[0] is not None):
            raise CheckpointError("corrupt storage reference in the pickle")
        storage = self.storages.setdefault(key, _Storage(key, storage_type.dtype, numel))
        return storage


def _load(unpickler: _StateDictUnpickler) -> Any:
    try:
        return unpickler.load()
    except CheckpointError:
        raise
    except Exception as error:  # any malformed stream: the unpickler raises many types
        raise CheckpointError(f"not a readable .pt state-dict file: {type(error).__name__}") from error


def _materialise(loaded: Any, storages: Mapping[str, bytes]) -> dict[str, np.ndarray]:
    if not isinstance(loaded, Mapping) or not loaded:
        raise PickledModuleError("the .pt file must hold a flat state dict of tensors (model.state_dict())")
    arrays = {}
    for key, value in loaded.items():
        if not isinstance(key, str) or not isinstance(value, _LazyTensor):
            raise PickledModuleError(
                f"the .pt file must hold a flat state dict of tensors; entry {key!r} is {type(value).__name__}"
            )
        arrays[key] = _array(value, storages)
    return arrays


def _array(tensor: _LazyTensor, storages: Mapping[str, bytes]) -> np.ndarray:
    storage = tensor.storage
    raw = storages[storage.key]
    if len(raw) < storage.numel * storage.dtype.itemsize:
        raise CheckpointError(f"storage {storage.key!r} is truncated")
    flat = np.frombuffer(raw, dtype=storage.dtype, count=storage.numel)
    if len(tensor.size) != len(tensor.stride):
        raise CheckpointError("a tensor's size and stride differ in length")
    if 0 in tensor.size:
        return np.zeros(tensor.size, dtype=storage.dtype)
    last = tensor.offset + sum((extent - 1) * step for extent, step in zip(tensor.size, tensor.stride, strict=True))
    # Bounds first: a view outside the storage would read foreign memory, and
    # one larger than its storage (zero strides) would allocate without bound.
    if last >= storage.numel:
        raise CheckpointError("a tensor reaches past the end of its storage")
    if math.prod(tensor.size) > storage.numel:
        raise CheckpointError("a tensor has more elements than its storage holds")
    itemsize = storage.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[tensor.offset :], shape=tensor.size, strides=tuple(step * itemsize for step in tensor.stride)
    )
    return np.array(view, copy=True)


def _open_zip(data: bytes, max_unpacked_bytes: int) -> zipfile.ZipFile:
    """The archive, if its entries declare at most ``max_unpacked_bytes`` in all: a deflated entry may expand a
    thousandfold.
    """
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except (zipfile.BadZipFile, OSError, ValueError) as error:
        raise CheckpointError(f"corrupt or truncated zip file: {error}") from error
    unpacked = sum(info.file_size for info in archive.infolist())
    if unpacked > max_unpacked_bytes:
        raise UploadTooLargeError(f"the zip unpacks to {unpacked} bytes, over the limit of {max_unpacked_bytes}")
    return archive


def _state_dict_network(state_dict: dict[str, np.ndarray]) -> ImportedNetwork:
    """Name the layout of a plain state dict: the reference's, CleanRL's, or an SB3 ``q_net``."""
    keys = list(state_dict)
    for prefix in ("q_net.q_net.", "q_net."):
        if (
            keys
            and all(key.startswith(prefix) or key.startswith("q_net_target.") for key in keys)
            and any(key.startswith(prefix) for key in keys)
        ):
            tensors = _take_prefix(state_dict, prefix, ignore=("q_net_target.",))
            return ImportedNetwork(tensors, "sb3")
    # A 1-D weight is a LayerNorm's: the reference family has them, CleanRL's Sequential does not.
    norm = any(key.endswith(".weight") and value.ndim == 1 for key, value in state_dict.items())
    return ImportedNetwork(dict(state_dict), "reference" if norm else "cleanrl")


def _take_prefix(state_dict: Mapping[str, np.ndarray], prefix: str, ignore: tuple[str, ...]) -> dict[str, np.ndarray]:
    """``prefix<index>.<name>`` renamed ``network.<index>.<name>``; keys outside ``ignore`` are refused by name."""
    taken, unsupported = {}, []
    for key, value in state_dict.items():
        if key.startswith(ignore):
            continue
        rest = key[len(prefix) :] if key.startswith(prefix) else None
        if rest is None or not re.fullmatch(r"\d+\.(weight|bias)", rest):
            unsupported.append(key)
            continue
        taken[f"network.{rest}"] = value
    if unsupported:
        raise CheckpointError(
            f"unsupported tensors {sorted(unsupported)[:10]}: only an MLP Q-network (Linear layers, optional "
            "LayerNorm) "
            "is supported, not a feature extractor or other modules"
        )
    return taken


def _read_sb3(archive: zipfile.ZipFile, max_tensor_bytes: int) -> ImportedNetwork:
    names = set(archive.namelist())
    unexpected = sorted(names - SB3_ENTRIES)
    if unexpected:
        raise CheckpointError(f"not a Stable-Baselines3 DQN zip: unexpected entries {unexpected[:10]}")
    if "policy.pth" not in names:
        raise CheckpointError("the Stable-Baselines3 zip has no policy.pth")
    declared = _sb3_declared(archive.read("data") if "data" in names else None)
    info = archive.getinfo("policy.pth")
    if info.file_size > max_tensor_bytes:
        raise CheckpointError(f"policy.pth takes {info.file_size} bytes, over the limit of {max_tensor_bytes}")
    inner = archive.read("policy.pth")
    if not inner.startswith(ZIP_MAGIC):
        raise CheckpointError("policy.pth is not a torch .pt archive")
    state_dict = read_torch_zip(_open_zip(inner, max_tensor_bytes), max_tensor_bytes)
    if not any(key.startswith("q_net.q_net.") for key in state_dict):
        raise CheckpointError(
            f"policy.pth has no q_net.q_net.* tensors (a DQN policy's); found {sorted(state_dict)[:10]}"
        )
    # The target network is a lagged copy and the optimizer state is training-only: neither is the policy.
    tensors = _take_prefix(state_dict, "q_net.q_net.", ignore=("q_net_target.",))
    return ImportedNetwork(
        tensors, "sb3", activation=declared.get("activation"), hidden_sizes=declared.get("hidden_sizes")
    )


def _sb3_declared(data: bytes | None) -> dict[str, Any]:
    """``net_arch`` and activation from the readable fields of SB3's ``data`` JSON (pickled fields are never decoded).

    SB3 writes a value JSON cannot hold as ``{":type:": ..., ":serialized:": <pickle>, <field>: str(value)}``,
    so ``policy_kwargs`` with an activation class appears as its fields' strings.
    """
    if data is None:
        return {}
    try:
        document = json.loads(data)
    except (ValueError, UnicodeDecodeError) as error:
        raise CheckpointError(f"the Stable-Baselines3 data entry is not JSON: {error}") from error
    kwargs = document.get("policy_kwargs") if isinstance(document, dict) else None
    if not isinstance(kwargs, dict):
        return {}
    declared: dict[str, Any] = {}
    net_arch = kwargs.get("net_arch")
    if isinstance(net_arch, str):
        try:
            net_arch = ast.literal_eval(net_arch)
        except (ValueError, SyntaxError):
            net_arch = None
    if isinstance(net_arch, list) and all(isinstance(width, int) for width in net_arch):
        declared["hidden_sizes"] = tuple(net_arch)
    activation = kwargs.get("activation_fn")
    if isinstance(activation, str):
        match = re.search(r"(\w+)'?>?$", activation.strip())
        name = match.group(1) if match else activation
        if name not in SB3_ACTIVATIONS:
            raise CheckpointError(f"activation {name} is not supported; use one of {', '.join(SB3_ACTIVATIONS)}")
        declared["activation"] = SB3_ACTIVATIONS[name]
    return declared
