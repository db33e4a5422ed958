"""The options of the commands that read ONNX files (`predict`, `profile`, `time-network`), and
the warning every one of them prints for nodes it answers or times without."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from latkit.cli.output import err_console, labelled

if TYPE_CHECKING:
    from latkit.graphs import MappedNetwork

OnnxFiles = Annotated[
    list[Path],
    typer.Option(
        "--onnx",
        help="An ONNX network (e.g. from torch.onnx.export of the model in eval mode), mapped "
        "to latkit's op specs exactly or not at all: nodes no op spec describes are listed "
        "by name; repeatable.",
    ),
]
InputShape = Annotated[
    str | None,
    typer.Option(
        "--input-shape",
        help="N,C,H,W of the --onnx input, e.g. 1,3,224,224: needed where the file leaves it "
        "dynamic; N is the batch of its ops.",
    ),
]
AllowUnmapped = Annotated[
    bool,
    typer.Option(
        "--allow-unmapped",
        help="Go on with an --onnx network some of whose nodes map to no op spec, for its "
        "mapped part only (the others are listed); without it, such a network is an error.",
    ),
]


def read_onnx(
    paths: Sequence[Path], input_shape: str | None, allow_unmapped: bool
) -> list[MappedNetwork]:
    """The --onnx files mapped to op specs (an error lists unmapped nodes unless allowed), and a
    warning for each network that goes on without some of its nodes."""
    from latkit.graphs import parse_input_shape, read_onnx_files

    shape = parse_input_shape(input_shape) if input_shape is not None else None
    mapped = read_onnx_files(paths, shape, allow_unmapped)
    for network in mapped:
        warn_unmapped(network)
    return mapped


def warn_unmapped(network: MappedNetwork) -> None:
    """One line naming the nodes of `network` that no op spec describes, if any."""
    if network.unmapped:
        text = (
            f"{network.name}: {len(network.unmapped)} of {network.nodes_total} nodes left out "
            f"(no op spec describes them exactly): {'; '.join(network.unmapped)}"
        )
        err_console.print(labelled("warning: ", "yellow", text), soft_wrap=True)
