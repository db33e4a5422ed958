"""ONNX export of ops and whole networks, through the legacy TorchScript exporter, as a user's
module is exported (`latkit.graphs.trace_onnx`: one opset, one exporter for both). Tracing runs
the model once, and at 112x112 that first run dominates export time; every op latkit builds is
independent of the spatial size except `Zero` without a skip, so chains without it are traced on
a small input and the graph's input shape is then set to the real one. The graph, its weights
and what onnxruntime runs are the same as a full-size trace (tests check this numerically).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import onnx
import torch

from latkit.graphs import set_input_shape, trace_onnx
from latkit.modules import build_network, example_input
from latkit.ops import OpSpec

TRACE_HW = 8


def _shape_free(ops: Sequence[OpSpec]) -> bool:
    """True when no op reads its input's spatial size (only Zero without a skip does)."""
    return not any(op.type == "zero" and not op.skip for op in ops)


def export_onnx(ops: Sequence[OpSpec], path: str | Path | None = None, seed: int = 0) -> bytes:
    """The chain of `ops` as an ONNX model (bytes); also written to `path` when given."""
    model = build_network(ops, seed=seed)
    first = ops[0]
    small = _shape_free(ops) and first.input_hw > TRACE_HW
    example = example_input(first.replace(input_hw=TRACE_HW) if small else first)
    with _one_thread():
        data = trace_onnx(model, example, input_names=["input"], output_names=["output"])
    if small:
        data = _set_input_hw(data, first.input_hw)
    if path is not None:
        Path(path).write_bytes(data)
    return data


@contextmanager
def _one_thread() -> Iterator[None]:
    """Trace on one thread: the traced convs are tiny, and idle OpenMP workers spinning for work
    slow export down on a busy machine and steal cycles from the timing that follows."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _set_input_hw(data: bytes, hw: int) -> bytes:
    """Give the graph its real input size and let shape inference redo the rest."""
    model = onnx.load_from_string(data)
    n, c = (d.dim_value for d in model.graph.input[0].type.tensor_type.shape.dim[:2])
    return set_input_shape(model, (n, c, hw, hw)).SerializeToString()
