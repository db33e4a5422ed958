"""ONNX graphs as latkit networks: which nodes are which op specs, and which are none.

`map_onnx` walks a graph from its input as `torch.onnx.export(model.eval(), ..., dynamo=False)`
writes MBConv-family networks (batch norm folded into the convs): MBConv and FBNet blocks with or
without squeeze-excite, convs with their activation, pools and classifiers (the patterns are in
`latkit.graph_patterns`). `read_model` takes what a user holds (an ONNX path, bytes, a
ModelProto, or a torch module, exported by `export_module`).

Mapping is exact or refused: a pattern becomes an op spec only when the spec describes it
exactly; otherwise each of its nodes is listed by name in `unmapped`, with the reason, and never
approximated. Nodes no pattern covers are listed too. The caller decides whether a network with
unmapped nodes may be answered at all (`require_mapped`). A file that is no ONNX model, has no
graph, has an input that is not 4-D NCHW, has an input of unknown size (and no input shape
given), or an input shape that contradicts a dim the file fixes, is one error naming it.
"""

from __future__ import annotations

import dataclasses
import io
import numbers
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from latkit.devices import MAX_BATCH
from latkit.errors import LatkitError
from latkit.graph_patterns import Graph, walk
from latkit.ops import MAX_RESOLUTION, OpSpec

if TYPE_CHECKING:
    import torch

#: the opset of every ONNX export latkit makes (`trace_onnx`)
OPSET = 17
#: the input's dims, as errors name them
AXES = "NCHW"
#: what an input shape is, in every error about one
SHAPE_HINT = "give N,C,H,W as four positive integers, e.g. 1,3,224,224"


# --- what comes out ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedNetwork:
    """A graph as latkit's op specs. `unmapped` lists each node no op spec describes exactly, as
    "NAME (OP_TYPE): why"; `nodes_mapped` counts the nodes folded into an op spec or computing
    nothing (Identity, Dropout), of `nodes_total`: the graph's nodes but those that only carry
    constants (Constant, and Identity of a constant). `input_shape` is the N, C, H, W it was
    mapped at (N is every op's batch), `fixes_batch` whether the file itself fixes that N (no
    input shape can change it); `label` is what errors call it (its file)."""

    ops: tuple[OpSpec, ...]
    unmapped: tuple[str, ...]
    nodes_total: int
    nodes_mapped: int
    input_shape: tuple[int, ...]
    name: str
    label: str
    fixes_batch: bool = False

    @property
    def share_mapped(self) -> float:
        """The share of the nodes that mapped (the figure bench/onnx_networks.py reports)."""
        return self.nodes_mapped / self.nodes_total if self.nodes_total else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "nodes_total": self.nodes_total,
            "nodes_mapped": self.nodes_mapped,
            "unmapped": list(self.unmapped),
        }


def require_mapped(mapped: MappedNetwork, allow_unmapped: bool, label: str) -> MappedNetwork:
    """`mapped`, unless it has unmapped nodes and the caller did not allow answering for the
    mapped part only: then one error that lists them all."""
    if mapped.unmapped and not allow_unmapped:
        raise LatkitError(
            f"{label}: {len(mapped.unmapped)} of {mapped.nodes_total} nodes map to no op spec "
            f"exactly: {'; '.join(mapped.unmapped)}. Pass --allow-unmapped (allow_unmapped=True) "
            "to answer for the mapped part only"
        )
    if not mapped.ops:
        raise LatkitError(f"{label}: no node maps to an op spec; nothing to answer for")
    return mapped


def check_batch(mapped: MappedNetwork, batch: int, device: str) -> MappedNetwork:
    """`mapped`, when its N is the batch `device` times at. Op keys do not carry the batch, so a
    network at another N would be answered from, and shown beside, timings of the device's."""
    n = mapped.input_shape[0]
    if n == batch:
        return mapped
    said = f"{mapped.label} has batch {n}, device {device} times batch {batch}"
    other = f"or use a device file with batch_size: {n}"
    if mapped.fixes_batch:
        raise LatkitError(
            f"{said}: the file fixes N, so export it at batch {batch} (or with a dynamic N, "
            f"which takes the device's) {other}"
        )
    shape = ",".join(map(str, (batch, *mapped.input_shape[1:])))
    raise LatkitError(f"{said}: give --input-shape {shape} (input_shape=...) {other}")


# --- input shapes --------------------------------------------------------------------------------


def check_input_shape(shape: Any, label: str | None = None) -> tuple[int, ...]:
    """`shape` as N, C, H, W: four positive integers, N at most `MAX_BATCH` and H, W at most
    `MAX_RESOLUTION` (a module is traced on an input of this size, allocated at once). A string
    is refused rather than split: from Python it is a mistake, and the CLI parses its text."""
    label = label or f"input_shape {shape!r}"
    dims = list(shape) if isinstance(shape, Sequence) and not isinstance(shape, str) else []
    integral = [isinstance(d, numbers.Integral) and not isinstance(d, bool) for d in dims]
    if len(dims) != 4 or not all(integral) or min(dims) < 1:
        raise LatkitError(f"{label}: {SHAPE_HINT}")
    n, c, h, w = (int(d) for d in dims)
    if n > MAX_BATCH:
        raise LatkitError(f"{label}: N is at most {MAX_BATCH}, the largest batch latkit times")
    if max(h, w) > MAX_RESOLUTION:
        raise LatkitError(f"{label}: H and W are at most {MAX_RESOLUTION}")
    return n, c, h, w


def parse_input_shape(text: str) -> tuple[int, ...]:
    """The N,C,H,W of `--input-shape`, e.g. "1,3,224,224" (or 1x3x224x224), checked as a shape
    from Python is. ASCII digits only: str.isdigit takes "²" for a digit that int() refuses."""
    label = f"--input-shape {text!r}"
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if not all(p.isascii() and p.isdecimal() for p in parts):
        raise LatkitError(f"{label}: {SHAPE_HINT}")
    return check_input_shape([int(p) for p in parts], label)


def _data_input(model: onnx.ModelProto, label: str) -> onnx.ValueInfoProto:
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise LatkitError(f"{label}: {len(inputs)} graph inputs ({names}); latkit maps one")
    return inputs[0]


def set_input_shape(
    model: onnx.ModelProto, dims: Sequence[int], label: str = "ONNX model"
) -> onnx.ModelProto:
    """`model` with its data input of shape `dims` and every tensor's shape inferred (strictly:
    a contradiction raises). Where the dims change, the shapes inferred for the old ones are
    dropped first (value_info, the outputs' dims): strict inference refuses to contradict them."""
    shape = _data_input(model, label).type.tensor_type.shape
    if [d.dim_value for d in shape.dim] != list(dims):
        model = onnx.ModelProto.FromString(model.SerializeToString())
        for dim, value in zip(_data_input(model, label).type.tensor_type.shape.dim, dims):
            dim.Clear()
            dim.dim_value = int(value)
        del model.graph.value_info[:]
        for output in model.graph.output:
            for dim in output.type.tensor_type.shape.dim:
                dim.Clear()
    return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)


def _input_dims(
    entry: onnx.ValueInfoProto, input_shape: Sequence[int] | None, batch: int | None, label: str
) -> tuple[int, ...]:
    """The N, C, H, W to map `entry` at: the given shape, which must agree with every dim the
    file fixes; else the file's, a dynamic N taking the device's `batch` when known."""
    fixed = [
        d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
        for d in entry.type.tensor_type.shape.dim
    ]
    shown = "x".join("?" if d is None else str(d) for d in fixed)
    where = f"{label}: input {entry.name!r}"
    if len(fixed) != 4:
        raise LatkitError(
            f"{where} is {shown or 'of unknown rank'}: latkit maps 4-D NCHW image inputs"
        )
    if input_shape is not None:
        for axis, have, given in zip(AXES, fixed, input_shape):
            if have is not None and have != given:
                raise LatkitError(f"{where} fixes {axis} at {have}; the input shape gives {given}")
        return tuple(input_shape)
    if fixed[0] is None and batch is not None:
        fixed[0] = batch
    if None in fixed:
        raise LatkitError(
            f"{where} is {shown}: latkit maps NCHW inputs of a known size; give --input-shape "
            "N,C,H,W (input_shape=...)"
        )
    return tuple(fixed)


# --- reading files and modules -------------------------------------------------------------------


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def parse_onnx(data: bytes, label: str) -> onnx.ModelProto:
    """An ONNX model from bytes, checked; anything else is one error naming `label`."""
    try:
        model = onnx.load_from_string(data)
    except Exception:  # protobuf's DecodeError, and whatever a foreign file provokes
        raise LatkitError(f"{label}: not an ONNX model (it does not parse as one)") from None
    return check_onnx(model, label)


def check_onnx(model: onnx.ModelProto, label: str) -> onnx.ModelProto:
    """`model` when it has a graph that passes ONNX's checker."""
    if not model.HasField("graph") or not model.graph.node:
        raise LatkitError(f"{label}: no graph (not an ONNX model, or an empty one)")
    try:
        onnx.checker.check_model(model)
    except Exception as exc:
        raise LatkitError(f"{label}: not a valid ONNX model: {_first_line(exc)}") from None
    return model


def load_onnx(path: str | Path) -> onnx.ModelProto:
    """The ONNX model in `path`, checked."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise LatkitError(f"{path}: cannot read it ({exc.strerror or exc})") from None
    return parse_onnx(data, str(path))


def trace_onnx(model: torch.nn.Module, example: torch.Tensor, **names: Any) -> bytes:
    """`model` traced on `example` as ONNX bytes at `OPSET`: every export latkit makes (of a
    user's module, of its own ops). torch's TorchScript exporter (`dynamo=False`), since the
    dynamo exporter needs onnxscript; its warnings about tracing are silenced."""
    import torch

    buffer = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (example,), buffer, dynamo=False, opset_version=OPSET, **names)
    return buffer.getvalue()


def export_module(model: torch.nn.Module, input_shape: Sequence[int]) -> onnx.ModelProto:
    """`model` as ONNX, exported in eval mode (batch norm folds into the convs, dropout vanishes)
    on an input of `input_shape`; the module's train/eval mode is restored afterwards."""
    import torch

    shape = check_input_shape(input_shape)
    training = model.training
    first = next(model.parameters(), None)
    try:
        example = torch.zeros(*shape, device=first.device if first is not None else "cpu")
        data = trace_onnx(model.eval(), example)
    except Exception as exc:
        name = type(model).__name__
        raise LatkitError(f"{name}: torch.onnx.export failed: {_first_line(exc)}") from None
    finally:
        model.train(training)
    return onnx.load_from_string(data)


def read_model(
    source: Any,
    input_shape: Sequence[int] | None = None,
    name: str | None = None,
    *,
    batch: int | None = None,
) -> MappedNetwork:
    """Map what a user holds: an ONNX path, its bytes, a ModelProto or a torch module (exported
    first, which needs `input_shape`); `batch` is the device's, for a dynamic N (`map_onnx`)."""
    if isinstance(source, str | Path):
        model, label = load_onnx(source), str(source)
        name = name or Path(source).stem
    elif isinstance(source, bytes):
        model, label = parse_onnx(source, name or "ONNX bytes"), name or "ONNX bytes"
    elif isinstance(source, onnx.ModelProto):
        label = name or source.graph.name or "ONNX model"
        model = check_onnx(source, label)
    elif hasattr(source, "forward") and hasattr(source, "parameters"):
        if input_shape is None:
            raise LatkitError("a torch module needs input_shape, e.g. (1, 3, 224, 224)")
        label = name or type(source).__name__
        model = export_module(source, input_shape)
        mapped = map_onnx(model, input_shape, name=name or label, label=label)
        return dataclasses.replace(mapped, fixes_batch=False)  # its N is input_shape's
    else:
        raise LatkitError(
            f"cannot map a {type(source).__name__}: give an ONNX path, bytes, a ModelProto or a "
            "torch.nn.Module"
        )
    return map_onnx(model, input_shape, batch=batch, name=name or label, label=label)


def read_onnx_files(
    paths: Sequence[str | Path],
    input_shape: Sequence[int] | None = None,
    allow_unmapped: bool = False,
    *,
    batch: int | None = None,
) -> list[MappedNetwork]:
    """Each ONNX file mapped (`read_model`), all before anything is answered or timed; a file
    with unmapped nodes is an error listing them, unless `allow_unmapped`."""
    return [
        require_mapped(read_model(p, input_shape, batch=batch), allow_unmapped, str(p))
        for p in paths
    ]


def map_onnx(
    model: onnx.ModelProto,
    input_shape: Sequence[int] | None = None,
    *,
    batch: int | None = None,
    name: str = "network",
    label: str | None = None,
) -> MappedNetwork:
    """The op specs of `model`, and the nodes no op spec describes exactly. `input_shape`
    (N, C, H, W) sets the input's size where the file leaves it dynamic (it may not contradict
    a dim the file fixes); a dynamic N alone takes `batch` (the device's) when given. N is the
    batch of every op. Errors name `label` (the file)."""
    label = label or name
    shape = check_input_shape(input_shape) if input_shape is not None else None
    entry = _data_input(model, label)
    dims = _input_dims(entry, shape, batch, label)
    try:
        inferred = set_input_shape(model, dims, label)
    except Exception as exc:
        raise LatkitError(f"{label}: shape inference failed: {_first_line(exc)}") from None
    g = Graph(inferred)
    ops, refused = walk(g)
    unmapped = tuple(
        f"{node.label} ({node.op}): {refused[node]}" for node in g.nodes if node in refused
    )
    total = len(g.nodes) - len(g.plumbing)
    n = entry.type.tensor_type.shape.dim[0]
    fixes = n.HasField("dim_value") and n.dim_value > 0
    return MappedNetwork(
        tuple(ops), unmapped, total, total - len(refused), dims, name, label, fixes
    )
