"""ONNX export of ops and whole networks, through the legacy TorchScript exporter.

`dynamo=False` keeps export dependency-light (the dynamo exporter needs onnxscript) and fast.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from latkit.modules import build_network, example_input
from latkit.ops import OpSpec

OPSET = 17


def export_onnx(ops: Sequence[OpSpec], path: str | Path | None = None, seed: int = 0) -> bytes:
    """The chain of `ops` as an ONNX model (bytes); also written to `path` when given."""
    model = build_network(ops, seed=seed)
    example = example_input(ops[0])
    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model,
            (example,),
            buffer,
            dynamo=False,
            opset_version=OPSET,
            input_names=["input"],
            output_names=["output"],
        )
    data = buffer.getvalue()
    if path is not None:
        Path(path).write_bytes(data)
    return data
