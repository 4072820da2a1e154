"""Deployable copies of a checkpoint: ONNX for onnxruntime, and state dicts in the layout the network came from.

ONNX graphs are written directly from the weights with ``onnx.helper`` (no
tracing, no torch): input ``states`` ``(batch, input_dim)`` float32, output
``q_values`` ``(batch, output_dim)``, opset 17. Each block is a ``Gemm``
(``transB``), then ``LayerNormalization`` and the activation for hidden
blocks; dropout is an identity in inference and is left out.

An int8 checkpoint keeps its int8 weights in the file: every weight is an
int8 initializer read through ``DequantizeLinear`` (its scale per tensor, or
per output channel on axis 0) and a static checkpoint also rounds every Gemm
input through ``QuantizeLinear``/``DequantizeLinear`` with its uint8 scale and
zero point, so onnxruntime computes what the service's int8 forward computes.
Names are one or two characters and there are no doc strings: on networks of
a few thousand parameters the graph's own bytes are a large part of the file.

``pt`` and ``safetensors`` hold float32 tensors (an int8 checkpoint's weights
dequantized) under the source layout's keys: ``network.<i>.*`` for the
reference's and CleanRL's ``nn.Sequential``, ``q_net.<i>.*`` for a
Stable-Baselines3 DQN's ``q_net`` module (``model.q_net.load_state_dict``).

Everything here works on numpy arrays (``core.checkpoint_file``), without
torch: the ``pt`` file is written as ``torch.save`` lays it out (a zip of a
protocol-2 pickle that names only what ``torch.load(weights_only=True)``
allows, and one raw little-endian storage per tensor).
"""

from __future__ import annotations

import dataclasses
import io
import struct
import zipfile
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
from safetensors.numpy import save as safetensors_save

from core.arch import ELU_ALPHA, LAYERNORM_EPS, LEAKY_RELU_SLOPE, rekey
from core.checkpoint_file import CheckpointFile, dequantized_arrays, is_static

if TYPE_CHECKING:
    import onnx

ExportFormat = Literal["onnx", "pt", "safetensors"]
EXPORT_FORMATS: tuple[str, ...] = ("onnx", "pt", "safetensors")
ONNX_OPSET = 17
INPUT_NAME = "states"
OUTPUT_NAME = "q_values"
# torch.save's zip: every entry under one folder, the pickle protocol and serialization version it writes.
PT_ARCHIVE = "archive"
PT_PICKLE_PROTOCOL = 2
PT_SERIALIZATION_VERSION = b"3\n"
# The storage class torch.load(weights_only=True) rebuilds a float32 tensor from.
PT_FLOAT_STORAGE = "FloatStorage"
_MEDIA = {
    "onnx": ("application/octet-stream", "onnx"),
    "pt": ("application/octet-stream", "pt"),
    "safetensors": ("application/octet-stream", "safetensors"),
}


def export(checkpoint: CheckpointFile, export_format: ExportFormat) -> tuple[bytes, str, str]:
    """``(bytes, media type, file suffix)`` of ``checkpoint`` in ``export_format``."""
    if export_format == "onnx":
        data = onnx_bytes(checkpoint)
    elif export_format == "pt":
        data = pt_bytes(checkpoint)
    elif export_format == "safetensors":
        data = safetensors_save(source_state_dict(checkpoint))
    else:
        raise ValueError(f"format must be one of {', '.join(EXPORT_FORMATS)}, got {export_format!r}")
    media_type, suffix = _MEDIA[export_format]
    return data, media_type, suffix


def source_state_dict(checkpoint: CheckpointFile) -> dict[str, np.ndarray]:
    """Float32 arrays under the keys of the layout the network came from (see the module docstring)."""
    arch = checkpoint.arch
    params = {
        key: np.ascontiguousarray(array, dtype=np.float32) for key, array in dequantized_arrays(checkpoint).items()
    }
    if checkpoint.source_format in ("cleanrl", "sb3") and arch.norm == "none":
        # Those libraries build no Dropout module: index as a rate-0 layout does.
        bare = dataclasses.replace(arch, dropout_rate=0.0)
        params = rekey(params, arch, bare)
    if checkpoint.source_format == "sb3":
        return {key.replace("network.", "q_net.", 1): tensor for key, tensor in params.items()}
    return params


def pt_bytes(checkpoint: CheckpointFile) -> bytes:
    """``source_state_dict`` as ``torch.save`` writes it: loads with ``torch.load(weights_only=True)``."""
    return torch_file_bytes(source_state_dict(checkpoint))


def torch_file_bytes(state_dict: Mapping[str, np.ndarray]) -> bytes:
    """A ``torch.save`` zip of float32 arrays: ``torch.load(weights_only=True)`` returns the same dict of tensors.

    The pickle is written opcode by opcode: a dict whose values are
    ``torch._utils._rebuild_tensor_v2(storage, 0, shape, stride, False,
    collections.OrderedDict())``, each storage a persistent id
    ``("storage", torch.FloatStorage, key, "cpu", numel)`` naming the entry
    ``data/<key>``; no torch object is imported to write it.
    """
    pickle = bytearray(b"\x80" + bytes([PT_PICKLE_PROTOCOL]) + b"}(")  # PROTO, EMPTY_DICT, MARK
    storages = {}
    for index, (name, array) in enumerate(state_dict.items()):
        values = np.ascontiguousarray(array, dtype="<f4")
        key = str(index)
        storages[key] = values.tobytes()
        strides = [int(np.prod(values.shape[position + 1 :], dtype=np.int64)) for position in range(values.ndim)]
        pickle += _pickle_text(name)
        pickle += b"ctorch._utils\n_rebuild_tensor_v2\n("  # GLOBAL, MARK
        pickle += b"(" + _pickle_text("storage") + b"ctorch\n" + PT_FLOAT_STORAGE.encode() + b"\n"
        pickle += _pickle_text(key) + _pickle_text("cpu") + _pickle_int(values.size) + b"tQ"  # TUPLE, BINPERSID
        pickle += _pickle_int(0) + _pickle_tuple(list(values.shape)) + _pickle_tuple(strides)
        pickle += b"\x89ccollections\nOrderedDict\n)R"  # NEWFALSE, GLOBAL, EMPTY_TUPLE, REDUCE
        pickle += b"tR"  # TUPLE, REDUCE
    pickle += b"u."  # SETITEMS, STOP
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as archive:
        archive.writestr(f"{PT_ARCHIVE}/data.pkl", bytes(pickle))
        archive.writestr(f"{PT_ARCHIVE}/byteorder", b"little")
        for key, data in storages.items():
            archive.writestr(f"{PT_ARCHIVE}/data/{key}", data)
        archive.writestr(f"{PT_ARCHIVE}/version", PT_SERIALIZATION_VERSION)
    return buffer.getvalue()


def _pickle_text(text: str) -> bytes:
    encoded = text.encode("utf-8")
    return b"X" + struct.pack("<I", len(encoded)) + encoded  # BINUNICODE


def _pickle_int(value: int) -> bytes:
    if 0 <= value < 256:
        return b"K" + bytes([value])  # BININT1
    if 0 <= value < 65536:
        return b"M" + struct.pack("<H", value)  # BININT2
    return b"J" + struct.pack("<i", value)  # BININT (every shape and numel here is below 2**31)


def _pickle_tuple(values: list[int]) -> bytes:
    return b"(" + b"".join(_pickle_int(value) for value in values) + b"t"  # MARK ... TUPLE


def onnx_model(checkpoint: CheckpointFile) -> onnx.ModelProto:
    """The ONNX graph of ``checkpoint`` (float or int8), checked by ``onnx.checker``."""
    # onnx is imported on first export: it costs a second of start-up and tens of MiB to a process that never exports.
    import onnx
    from onnx import TensorProto, helper

    arch = checkpoint.arch
    tensors = checkpoint.arrays
    int8 = checkpoint.format == "int8"
    static = is_static(checkpoint)
    graph = _Graph()
    hidden = INPUT_NAME
    for block in arch.blocks:
        p = block.position
        if static:
            scale = graph.constant(f"s{p}", tensors[f"{block.linear}.input_scale"].reshape(()))
            zero_point = graph.constant(
                f"z{p}", tensors[f"{block.linear}.input_zero_point"].reshape(()).astype(np.uint8)
            )
            quantized = graph.node("QuantizeLinear", [hidden, scale, zero_point])
            hidden = graph.node("DequantizeLinear", [quantized, scale, zero_point])
        if int8:
            weight_scale = tensors[f"{block.weight}_scale"]
            per_channel = weight_scale.shape[0] > 1
            scale = graph.constant(f"k{p}", weight_scale if per_channel else weight_scale.reshape(()))
            weight_int8 = graph.constant(f"q{p}", tensors[block.weight])
            axis: dict[str, Any] = {"axis": 0} if per_channel else {}
            weight = graph.node("DequantizeLinear", [weight_int8, scale], **axis)
        else:
            weight = graph.constant(f"w{p}", tensors[block.weight])
        bias = graph.constant(f"b{p}", tensors[block.bias])
        hidden = graph.node("Gemm", [hidden, weight, bias], output=OUTPUT_NAME if not block.hidden else None, transB=1)
        if block.hidden:
            if block.norm:
                gamma = graph.constant(f"g{p}", tensors[block.norm_weight])
                beta = graph.constant(f"e{p}", tensors[block.norm_bias])
                hidden = graph.node("LayerNormalization", [hidden, gamma, beta], axis=-1, epsilon=LAYERNORM_EPS)
            hidden = _activation(graph, arch.activation, hidden)
    model = helper.make_model(
        helper.make_graph(
            graph.nodes,
            "q",
            [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", arch.input_dim])],
            [helper.make_tensor_value_info(OUTPUT_NAME, TensorProto.FLOAT, ["batch", arch.output_dim])],
            graph.initializers,
        ),
        opset_imports=[helper.make_opsetid("", ONNX_OPSET)],
        producer_name="recomb",
    )
    # onnxruntime reads IR versions up to its own; 8 is what opset 17 needs and every current runtime reads.
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def onnx_bytes(checkpoint: CheckpointFile) -> bytes:
    return onnx_model(checkpoint).SerializeToString()


class _Graph:
    """Nodes and initializers with short, unique names."""

    def __init__(self) -> None:
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self._count = 0

    def constant(self, name: str, array: np.ndarray) -> str:
        from onnx import numpy_helper

        self.initializers.append(numpy_helper.from_array(np.ascontiguousarray(array), name))
        return name

    def node(self, op_type: str, inputs: list[str], output: str | None = None, **attributes: Any) -> str:
        from onnx import helper

        output = output or f"t{self._count}"
        self._count += 1
        self.nodes.append(helper.make_node(op_type, inputs, [output], **attributes))
        return output


def _activation(graph: _Graph, name: str, hidden: str) -> str:
    if name == "relu":
        return graph.node("Relu", [hidden])
    if name == "tanh":
        return graph.node("Tanh", [hidden])
    if name == "elu":
        return graph.node("Elu", [hidden], alpha=ELU_ALPHA)
    if name == "leaky_relu":
        return graph.node("LeakyRelu", [hidden], alpha=LEAKY_RELU_SLOPE)
    if name == "silu":
        return graph.node("Mul", [hidden, graph.node("Sigmoid", [hidden])])
    # Exact GELU, 0.5 x (1 + erf(x / sqrt 2)): opset 17 has no Gelu operator.
    if "gelu_half" not in {tensor.name for tensor in graph.initializers}:
        graph.constant("gelu_half", np.array(0.5, dtype=np.float32))
        graph.constant("gelu_one", np.array(1.0, dtype=np.float32))
        graph.constant("gelu_rsqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))
    erf = graph.node("Erf", [graph.node("Mul", [hidden, "gelu_rsqrt2"])])
    return graph.node("Mul", [graph.node("Mul", [hidden, "gelu_half"]), graph.node("Add", [erf, "gelu_one"])])
