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
graph, or has an input of unknown size (and no input shape given) is one error naming it.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import onnx

from latkit.errors import LatkitError
from latkit.graph_patterns import Graph, walk
from latkit.ops import OpSpec

if TYPE_CHECKING:
    import torch

#: the opset `export_module` writes (the one latkit's own exports use)
OPSET = 17


# --- what comes out ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MappedNetwork:
    """A graph as latkit's op specs. `unmapped` lists each node no op spec describes exactly, as
    "NAME (OP_TYPE): why"; `nodes_mapped` counts the nodes folded into an op spec or computing
    nothing (Identity, Dropout), of `nodes_total`: the graph's nodes but those that only carry
    constants (Constant, and Identity of a constant)."""

    ops: tuple[OpSpec, ...]
    unmapped: tuple[str, ...]
    nodes_total: int
    nodes_mapped: int
    name: str = "network"

    @property
    def share_mapped(self) -> float:
        """The share of the nodes that mapped (the figure bench/onnx_networks.py reports)."""
        return self.nodes_mapped / self.nodes_total if self.nodes_total else 1.0

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
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


# --- reading files, modules and shapes ----------------------------------------------------------


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


def parse_input_shape(text: str) -> tuple[int, ...]:
    """The N,C,H,W of `--input-shape`, e.g. "1,3,224,224" (or 1x3x224x224): positive integers."""
    parts = [p.strip() for p in text.replace("x", ",").split(",")]
    if len(parts) != 4 or not all(p.isdigit() and int(p) > 0 for p in parts):
        raise LatkitError(
            f"--input-shape {text!r}: give N,C,H,W as four positive integers, e.g. 1,3,224,224"
        )
    return tuple(int(p) for p in parts)


def export_module(model: torch.nn.Module, input_shape: Sequence[int]) -> onnx.ModelProto:
    """`model` as ONNX, exported in eval mode (batch norm folds into the convs, dropout vanishes)
    with torch's TorchScript exporter; the module's train/eval mode is restored afterwards."""
    import torch

    training = model.training
    first = next(model.parameters(), None)
    example = torch.zeros(*input_shape, device=first.device if first is not None else "cpu")
    buffer = io.BytesIO()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(model.eval(), (example,), buffer, dynamo=False, opset_version=OPSET)
    except Exception as exc:
        name = type(model).__name__
        raise LatkitError(f"{name}: torch.onnx.export failed: {_first_line(exc)}") from None
    finally:
        model.train(training)
    return onnx.load_from_string(buffer.getvalue())


def read_model(
    source: Any, input_shape: Sequence[int] | None = None, name: str | None = None
) -> MappedNetwork:
    """Map what a user holds: an ONNX path, its bytes, a ModelProto or a torch module (exported
    first, which needs `input_shape`)."""
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
    else:
        raise LatkitError(
            f"cannot map a {type(source).__name__}: give an ONNX path, bytes, a ModelProto or a "
            "torch.nn.Module"
        )
    return map_onnx(model, input_shape, name=name or label, label=label)


def read_onnx_files(
    paths: Sequence[str | Path],
    input_shape: Sequence[int] | None = None,
    allow_unmapped: bool = False,
) -> list[MappedNetwork]:
    """Each ONNX file mapped (`read_model`), all before anything is answered or timed; a file
    with unmapped nodes is an error listing them, unless `allow_unmapped`."""
    return [require_mapped(read_model(p, input_shape), allow_unmapped, str(p)) for p in paths]


def _data_input(model: onnx.ModelProto, label: str) -> onnx.ValueInfoProto:
    weights = {init.name for init in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in weights]
    if len(inputs) != 1:
        names = ", ".join(i.name for i in inputs) or "none"
        raise LatkitError(f"{label}: {len(inputs)} graph inputs ({names}); latkit maps one")
    return inputs[0]


def _with_shapes(
    model: onnx.ModelProto, input_shape: Sequence[int] | None, label: str
) -> onnx.ModelProto:
    """`model` with its input's shape set (when given) and every tensor's shape inferred."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    entry = _data_input(model, label)
    dims = entry.type.tensor_type.shape.dim
    if input_shape is not None:
        if len(dims) != len(input_shape):
            raise LatkitError(
                f"{label}: input {entry.name!r} has {len(dims)} dims; the input shape gives "
                f"{len(input_shape)}"
            )
        for dim, value in zip(dims, input_shape):
            dim.Clear()
            dim.dim_value = int(value)
        del model.graph.value_info[:]
        for output in model.graph.output:
            for dim in output.type.tensor_type.shape.dim:
                dim.Clear()
    if len(dims) != 4 or not all(d.HasField("dim_value") and d.dim_value > 0 for d in dims):
        shown = "x".join(str(d.dim_value) if d.HasField("dim_value") else "?" for d in dims)
        raise LatkitError(
            f"{label}: input {entry.name!r} is {shown or 'of unknown shape'}: latkit maps NCHW "
            "inputs of a known size; give --input-shape N,C,H,W (input_shape=...)"
        )
    try:
        return onnx.shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
    except Exception as exc:
        raise LatkitError(f"{label}: shape inference failed: {_first_line(exc)}") from None


def map_onnx(
    model: onnx.ModelProto,
    input_shape: Sequence[int] | None = None,
    *,
    name: str = "network",
    label: str | None = None,
) -> MappedNetwork:
    """The op specs of `model`, and the nodes no op spec describes exactly. `input_shape`
    (N, C, H, W) sets the input's size (needed when it is dynamic); the batch of every op is N.
    Errors name `label` (the file)."""
    label = label or name
    g = Graph(_with_shapes(model, input_shape, label))
    ops, refused = walk(g)
    unmapped = tuple(
        f"{node.label} ({node.op}): {refused[node]}" for node in g.nodes if node in refused
    )
    total = len(g.nodes) - len(g.plumbing)
    return MappedNetwork(tuple(ops), unmapped, total, total - len(refused), name)
