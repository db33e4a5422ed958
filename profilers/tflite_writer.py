"""Write op chains as `.tflite` flatbuffers, straight from the schema that ai-edge-litert ships.

No TensorFlow and no converter: each op spec maps to a handful of LiteRT builtins whose weights are
the torch module's own tensors (batch norm folded into the conv before it), so the file is the same
model that `latkit.modules.build_network` computes, only in NHWC. Anything the format cannot express
raises `UnsupportedOp` instead of being written as a silently different model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import flatbuffers
import numpy as np
from ai_edge_litert import schema_py_generated as schema
from torch import nn

from latkit.errors import LatkitError
from latkit.modules import build_network
from latkit.ops import OpSpec

#: flatbuffers address everything with signed 32-bit offsets, so one file must stay below 2 GiB
MAX_MODEL_BYTES = 2**31 - 2**24
SCHEMA_VERSION = 3
FILE_IDENTIFIER = b"TFL3"
#: weight buffers start on 16-byte boundaries, as the official converter writes them
BUFFER_ALIGNMENT = 16
#: LiteRT's op-version rules give CONV_2D version 6 when the filter holds cin / groups channels
GROUPED_CONV_VERSION = 6

Act = schema.ActivationFunctionType
FUSED_ACTS: dict[type[nn.Module] | None, int] = {
    None: Act.NONE,
    nn.ReLU6: Act.RELU6,
    nn.ReLU: Act.RELU,
}
TENSOR_TYPES = {
    np.dtype(np.float32): schema.TensorType.FLOAT32,
    np.dtype(np.int32): schema.TensorType.INT32,
}


class UnsupportedOp(LatkitError):
    """An op (or chain) that a `.tflite` file cannot express exactly."""


@dataclass(frozen=True)
class Value:
    """A tensor of the graph being written: its index and its (NHWC or 2-D) shape."""

    index: int
    shape: tuple[int, ...]


class _AlignedBufferT(schema.BufferT):
    """A weight buffer packed on a 16-byte boundary (the schema's default packs it byte-aligned)."""

    def Pack(self, builder: flatbuffers.Builder) -> int:
        payload = self.data.tobytes()
        builder.StartVector(1, len(payload), BUFFER_ALIGNMENT)
        builder.head -= len(payload)
        builder.Bytes[builder.head : builder.head + len(payload)] = payload
        data = builder.EndVector()
        schema.BufferStart(builder)
        schema.BufferAddData(builder, data)
        return schema.BufferEnd(builder)


class Graph:
    """One subgraph under construction: tensors, constant buffers, operators and their codes."""

    def __init__(self) -> None:
        self.buffers: list[schema.BufferT] = [schema.BufferT()]
        self.tensors: list[schema.TensorT] = []
        self.operators: list[schema.OperatorT] = []
        self.opcodes: dict[tuple[int, int], int] = {}

    def tensor(self, shape: Sequence[int], name: str, dtype: int = schema.TensorType.FLOAT32):
        t = schema.TensorT()
        t.shape, t.type, t.buffer, t.name = [int(d) for d in shape], dtype, 0, name
        t.hasRank = True
        self.tensors.append(t)
        return Value(len(self.tensors) - 1, tuple(t.shape))

    def constant(self, array: np.ndarray, name: str) -> Value:
        shape, array = array.shape, np.ascontiguousarray(array)
        value = self.tensor(shape, name, TENSOR_TYPES[array.dtype])
        buffer = _AlignedBufferT()
        buffer.data = array.reshape(-1).view(np.uint8)
        self.buffers.append(buffer)
        self.tensors[value.index].buffer = len(self.buffers) - 1
        return value

    def op(
        self,
        name: str,
        inputs: Sequence[Value],
        shapes: Sequence[Sequence[int]],
        options: object | None = None,
        label: str = "",
        version: int = 1,
    ) -> list[Value]:
        """Append builtin `name`; its option table type is named after the options class."""
        code = (getattr(schema.BuiltinOperator, name), version)
        if code not in self.opcodes:
            self.opcodes[code] = len(self.opcodes)
        outputs = [
            self.tensor(shape, f"{label or name.lower()}:{i}") for i, shape in enumerate(shapes)
        ]
        op = schema.OperatorT()
        op.opcodeIndex = self.opcodes[code]
        op.inputs = [v.index for v in inputs]
        op.outputs = [v.index for v in outputs]
        if options is not None:
            op.builtinOptionsType = getattr(schema.BuiltinOptions, type(options).__name__[:-1])
            op.builtinOptions = options
        self.operators.append(op)
        return outputs

    def finish(self, inputs: Sequence[Value], outputs: Sequence[Value]) -> bytes:
        subgraph = schema.SubGraphT()
        subgraph.tensors, subgraph.operators = self.tensors, self.operators
        subgraph.inputs = [v.index for v in inputs]
        subgraph.outputs = [v.index for v in outputs]
        subgraph.name = "main"
        codes = []
        for code, version in self.opcodes:  # dicts keep insertion order = opcode index
            entry = schema.OperatorCodeT()
            entry.builtinCode, entry.deprecatedBuiltinCode = code, min(code, 127)
            entry.version = version
            codes.append(entry)
        model = schema.ModelT()
        model.version, model.description = SCHEMA_VERSION, "latkit"
        model.operatorCodes, model.subgraphs, model.buffers = codes, [subgraph], self.buffers
        # sized once up front: growing copies the whole buffer, weights included
        size = sum(b.data.size + BUFFER_ALIGNMENT for b in self.buffers[1:])
        builder = flatbuffers.Builder(4096 + size + 256 * (len(self.tensors) + len(self.operators)))
        builder.Finish(model.Pack(builder), file_identifier=FILE_IDENTIFIER)
        return bytes(builder.Output())


# --- building blocks ---------------------------------------------------------------------------


def _hard_swish(g: Graph, x: Value, label: str) -> Value:
    (out,) = g.op("HARD_SWISH", [x], [x.shape], label=label)
    return out


def _sigmoid(g: Graph, x: Value, label: str) -> Value:
    (out,) = g.op("LOGISTIC", [x], [x.shape], label=label)
    return out


def _swish(g: Graph, x: Value, label: str) -> Value:
    """x * sigmoid(x): LiteRT has no swish builtin (nor a fused one), so LOGISTIC then MUL."""
    gate = _sigmoid(g, x, f"{label}.sigmoid")
    (out,) = g.op("MUL", [x, gate], [x.shape], schema.MulOptionsT(), label)
    return out


#: activations that cannot be fused into a conv: the ops that follow it instead
STANDALONE_ACTS: dict[type[nn.Module], Callable[[Graph, Value, str], Value]] = {
    nn.Hardswish: _hard_swish,
    nn.SiLU: _swish,
}


def _fold_bn(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> tuple[np.ndarray, np.ndarray]:
    """Conv weight and bias with eval-mode batch norm folded in (scale and shift in float64,
    so the only rounding is the final cast to float32)."""
    weight = conv.weight.detach().numpy()
    bias = (
        conv.bias.detach().numpy().astype(np.float64)
        if conv.bias is not None
        else np.zeros(conv.out_channels)
    )
    if bn is None:
        return weight.astype(np.float32), bias.astype(np.float32)
    gamma, beta = bn.weight.detach().numpy(), bn.bias.detach().numpy()
    mean, var = bn.running_mean.numpy(), bn.running_var.numpy()
    scale = gamma.astype(np.float64) / np.sqrt(var.astype(np.float64) + bn.eps)
    weight = weight * scale.reshape(-1, 1, 1, 1)
    bias = (bias - mean) * scale + beta
    return weight.astype(np.float32), bias.astype(np.float32)


def _conv_geometry(conv: nn.Conv2d, g: Graph, x: Value, label: str) -> tuple[Value, int]:
    """Padding as torch does it: symmetric k//2. `SAME` is used only where it is provably the same
    (stride 1, odd kernel, padding (k-1)/2); otherwise an explicit PAD feeds a VALID conv."""
    if conv.dilation != (1, 1) or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
        raise UnsupportedOp(f"{label}: {conv} has a dilation or padding mode not written here")
    (kh, kw), (sh, sw), (ph, pw) = conv.kernel_size, conv.stride, conv.padding
    if sh == sw == 1 and kh == 2 * ph + 1 and kw == 2 * pw + 1:
        return x, schema.Padding.SAME
    if ph or pw:
        n, h, w, c = x.shape
        paddings = np.array([[0, 0], [ph, ph], [pw, pw], [0, 0]], dtype=np.int32)
        (x,) = g.op(
            "PAD",
            [x, g.constant(paddings, f"{label}.paddings")],
            [(n, h + 2 * ph, w + 2 * pw, c)],
            schema.PadOptionsT(),
            f"{label}.pad",
        )
    return x, schema.Padding.VALID


def conv_bn(g: Graph, x: Value, block: nn.Module, label: str) -> Value:
    """A torch conv (optionally followed by BN and an activation) as one LiteRT conv op.

    Depthwise convs become DEPTHWISE_CONV_2D. Grouped convs stay one CONV_2D whose filter holds
    cin/groups input channels, marked version 6 as LiteRT's versioning rules require, so a runtime
    too old for grouped convs refuses the file instead of running something else."""
    layers = list(block) if isinstance(block, nn.Sequential) else [block]
    conv, rest = layers[0], layers[1:]
    bn = rest.pop(0) if rest and isinstance(rest[0], nn.BatchNorm2d) else None
    act = type(rest.pop(0)) if rest else None
    if not isinstance(conv, nn.Conv2d) or rest:
        raise UnsupportedOp(f"{label}: expected Conv2d [BatchNorm2d] [activation], got {block}")
    if act not in FUSED_ACTS and act not in STANDALONE_ACTS:
        raise UnsupportedOp(f"{label}: activation {act.__name__} has no LiteRT equivalent here")
    fused = FUSED_ACTS.get(act, Act.NONE)
    weight, bias = _fold_bn(conv, bn)
    if x.shape[-1] != conv.in_channels:
        raise UnsupportedOp(f"{label}: takes {conv.in_channels} channels, gets {x.shape}")
    x, padding = _conv_geometry(conv, g, x, label)
    n, h, w, _ = x.shape
    (kh, kw), (sh, sw) = conv.kernel_size, conv.stride
    if padding == schema.Padding.SAME:
        ho, wo = -(-h // sh), -(-w // sw)
    else:
        ho, wo = (h - kh) // sh + 1, (w - kw) // sw + 1
    cout, groups = conv.out_channels, conv.groups
    bias_value = g.constant(bias, f"{label}.bias")
    if groups > 1 and groups == conv.in_channels == cout:
        options = schema.DepthwiseConv2DOptionsT(padding, sw, sh, 1, fused)
        filt = g.constant(weight.transpose(1, 2, 3, 0), f"{label}.weight")
        (out,) = g.op(
            "DEPTHWISE_CONV_2D", [x, filt, bias_value], [(n, ho, wo, cout)], options, label
        )
    else:
        options = schema.Conv2DOptionsT(padding, sw, sh, fused)
        filt = g.constant(weight.transpose(0, 2, 3, 1), f"{label}.weight")
        version = GROUPED_CONV_VERSION if groups > 1 else 1
        (out,) = g.op(
            "CONV_2D", [x, filt, bias_value], [(n, ho, wo, cout)], options, label, version
        )
    if act in STANDALONE_ACTS:
        out = STANDALONE_ACTS[act](g, out, f"{label}.act")
    return out


def _mean_hw(g: Graph, x: Value, keep_dims: bool, label: str) -> Value:
    n, _, _, c = x.shape
    axes = g.constant(np.array([1, 2], dtype=np.int32), f"{label}.axes")
    shape = (n, 1, 1, c) if keep_dims else (n, c)
    (out,) = g.op("MEAN", [x, axes], [shape], schema.ReducerOptionsT(keepDims=keep_dims), label)
    return out


def squeeze_excite(g: Graph, x: Value, se: nn.Module, label: str) -> Value:
    """mean -> 1x1 conv + activation -> 1x1 conv -> gate -> scale. A sigmoid gate (EfficientNet)
    is LOGISTIC. A hard-sigmoid gate (once-for-all) is relu6(z+3)/6: the +3 goes into the second
    conv's bias, RELU6 is fused, and /6 is a MUL by 1/6."""
    scale = _mean_hw(g, x, True, f"{label}.mean")
    scale = conv_bn(g, scale, nn.Sequential(se.reduce, se.act), f"{label}.reduce")
    if isinstance(se.gate, nn.Sigmoid):
        scale = conv_bn(g, scale, se.expand, f"{label}.expand")
        scale = _sigmoid(g, scale, f"{label}.sigmoid")
    elif isinstance(se.gate, nn.Hardsigmoid):
        weight, bias = _fold_bn(se.expand, None)
        n, _, _, mid = x.shape
        inputs = [
            scale,
            g.constant(weight.transpose(0, 2, 3, 1), f"{label}.expand.weight"),
            g.constant(bias + np.float32(3.0), f"{label}.expand.bias_plus_3"),
        ]
        options = schema.Conv2DOptionsT(schema.Padding.VALID, 1, 1, Act.RELU6)
        (scale,) = g.op("CONV_2D", inputs, [(n, 1, 1, mid)], options, f"{label}.expand")
        sixth = g.constant(np.array([1.0 / 6.0], dtype=np.float32), f"{label}.one_sixth")
        mul = schema.MulOptionsT()
        (scale,) = g.op("MUL", [scale, sixth], [scale.shape], mul, f"{label}.hsig")
    else:
        raise UnsupportedOp(f"{label}: SE gate {type(se.gate).__name__} is not written here")
    (out,) = g.op("MUL", [x, scale], [x.shape], schema.MulOptionsT(), f"{label}.scale")
    return out


# --- one writer per op type ---------------------------------------------------------------------


def channel_shuffle(g: Graph, x: Value, shuffle: nn.Module, label: str) -> Value:
    """The shuffle as the module computes it: a GATHER of channels in the permuted order."""
    order = g.constant(shuffle.order.numpy().astype(np.int32), f"{label}.order")
    options = schema.GatherOptionsT()
    options.axis, options.batchDims = len(x.shape) - 1, 0
    (out,) = g.op("GATHER", [x, order], [x.shape], options, label)
    return out


def write_mbconv(g: Graph, x: Value, module: nn.Module, spec: OpSpec, label: str) -> Value:
    """Both block types (`mbconv`, FBNet's `irf`): the module says which convs exist."""
    out = x
    if module.expand is not None:
        out = conv_bn(g, out, module.expand, f"{label}.expand")
    if module.shuffle is not None:
        out = channel_shuffle(g, out, module.shuffle, f"{label}.shuffle")
    out = conv_bn(g, out, module.depthwise, f"{label}.depthwise")
    if module.se is not None:
        out = squeeze_excite(g, out, module.se, f"{label}.se")
    out = conv_bn(g, out, module.project, f"{label}.project")
    if spec.skip:
        (out,) = g.op("ADD", [out, x], [out.shape], schema.AddOptionsT(), f"{label}.skip")
    return out


def write_zero(g: Graph, x: Value, module: nn.Module, spec: OpSpec, label: str) -> Value:
    """With a skip the block is the identity (no op at all); without, FILL writes real zeros."""
    if spec.skip:
        return x
    n, h, w, _ = x.shape
    s = spec.stride
    shape = (n, -(-h // s), -(-w // s), spec.cout)
    dims = g.constant(np.array(shape, dtype=np.int32), f"{label}.dims")
    zero = g.constant(np.array(0.0, dtype=np.float32), f"{label}.value")
    (out,) = g.op("FILL", [dims, zero], [shape], schema.FillOptionsT(), label)
    return out


def write_conv(g: Graph, x: Value, module: nn.Module, spec: OpSpec, label: str) -> Value:
    return conv_bn(g, x, module, label)


def write_pool(g: Graph, x: Value, module: nn.Module, spec: OpSpec, label: str) -> Value:
    return _mean_hw(g, x, True, label)


def write_linear(g: Graph, x: Value, module: nn.Module, spec: OpSpec, label: str) -> Value:
    """Global mean over H and W when the input is larger than 1x1 (else a flatten), then FC."""
    n, c = x.shape[0], x.shape[-1]
    if module.pool:
        if len(x.shape) != 4:
            raise UnsupportedOp(f"{label}: pools over H and W but follows a 2-D output {x.shape}")
        x = _mean_hw(g, x, False, f"{label}.pool")
    elif len(x.shape) == 4:
        if x.shape[1:3] != (1, 1):
            raise UnsupportedOp(f"{label}: a linear without pooling needs 1x1 input, got {x.shape}")
        (x,) = g.op(
            "RESHAPE",
            [x, g.constant(np.array([n, c], dtype=np.int32), f"{label}.shape")],
            [(n, c)],
            schema.ReshapeOptionsT(newShape=[n, c]),
            f"{label}.flatten",
        )
    linear = module.linear
    if c != linear.in_features:
        raise UnsupportedOp(f"{label}: takes {linear.in_features} features, gets {x.shape}")
    inputs = [
        x,
        g.constant(linear.weight.detach().float().numpy(), f"{label}.weight"),
        g.constant(linear.bias.detach().float().numpy(), f"{label}.bias"),
    ]
    options = schema.FullyConnectedOptionsT()
    (out,) = g.op("FULLY_CONNECTED", inputs, [(n, linear.out_features)], options, label)
    return out


Writer = Callable[[Graph, Value, nn.Module, OpSpec, str], Value]
WRITERS: dict[str, Writer] = {
    "mbconv": write_mbconv,
    "irf": write_mbconv,
    "zero": write_zero,
    "conv": write_conv,
    "pool": write_pool,
    "linear": write_linear,
}
#: op types that need a feature map (NHWC) as input, not the 2-D output of a linear
SPATIAL = frozenset({"mbconv", "irf", "zero", "conv", "pool"})


def _check(ops: Sequence[OpSpec]) -> None:
    if not ops:
        raise UnsupportedOp("nothing to write: the op list is empty")
    for op in ops:
        if op.type not in WRITERS:
            raise UnsupportedOp(f"op type {op.type!r} has no .tflite writer ({', '.join(WRITERS)})")
    weight_bytes = 4 * sum(op.params for op in ops)
    if weight_bytes > MAX_MODEL_BYTES:
        raise UnsupportedOp(
            f"{weight_bytes / 2**30:.1f} GiB of weights exceed the 2 GiB a .tflite flatbuffer "
            "can address; export fewer or smaller ops per file"
        )


def export_tflite(ops: Sequence[OpSpec], path: str | Path | None = None, seed: int = 0) -> bytes:
    """The chain of `ops` as a `.tflite` model (bytes), written to `path` too when given.

    Same weights as `build_network(ops, seed=seed)`; input "input" is NHWC float32, output
    "output" is NHWC for feature maps and (batch, classes) after a linear.
    """
    ops = list(ops)
    _check(ops)
    network = build_network(ops, seed=seed)
    g = Graph()
    first = ops[0]
    x = source = g.tensor((first.batch, first.input_hw, first.input_hw, first.cin), "input")
    for i, (op, module) in enumerate(zip(ops, network)):
        if op.type in SPATIAL and len(x.shape) != 4:
            raise UnsupportedOp(f"op {i} ({op.key}) needs a feature map but follows a 2-D output")
        x = WRITERS[op.type](g, x, module, op, f"op{i}")
    if x == source:  # an identity chain still needs one real op, so output is not input
        shape = np.array(x.shape, dtype=np.int32)
        (x,) = g.op(
            "RESHAPE",
            [x, g.constant(shape, "identity.shape")],
            [x.shape],
            schema.ReshapeOptionsT(newShape=list(x.shape)),
            "identity",
        )
    g.tensors[x.index].name = "output"
    data = g.finish([source], [x])
    if path is not None:
        Path(path).write_bytes(data)
    return data
