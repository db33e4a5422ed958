"""The options of the commands that read ONNX files (`predict`, `profile`, `time-network`), and
the warning every one of them prints for nodes it answers or times without."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from latkit.cli.output import err_console, labelled
from latkit.errors import LatkitError

if TYPE_CHECKING:
    from latkit.devices import DeviceConfig
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
        help="N,C,H,W of the --onnx input, e.g. 1,3,224,224: needed where the file leaves C, H "
        "or W dynamic. N is the batch of its ops and must be the device's (a dynamic N takes "
        "it).",
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


def onnx_input_shape(
    paths: Sequence[Path], input_shape: str | None, allow_unmapped: bool
) -> tuple[int, ...] | None:
    """The parsed --input-shape. The options of --onnx are refused without it: ignored, they
    would hide a command that reads no ONNX file at all."""
    given = {"--input-shape": input_shape is not None, "--allow-unmapped": allow_unmapped}
    stray = [option for option, present in given.items() if present]
    if stray and not paths:
        raise LatkitError(f"{stray[0]} applies to --onnx networks: give --onnx MODEL.onnx")
    if input_shape is None:
        return None
    from latkit.graphs import parse_input_shape

    return parse_input_shape(input_shape)


def read_onnx(
    paths: Sequence[Path],
    input_shape: tuple[int, ...] | None,
    allow_unmapped: bool,
    device: DeviceConfig,
) -> list[MappedNetwork]:
    """The --onnx files mapped to op specs at the device's batch (a dynamic N takes it; another
    N is an error; an error lists unmapped nodes unless allowed), and a warning for each network
    that goes on without some of its nodes."""
    from latkit.graphs import check_batch, read_onnx_files

    batch = device.batch_size
    mapped = read_onnx_files(paths, input_shape, allow_unmapped, batch=batch)
    mapped = [check_batch(network, batch, device.name) for network in mapped]
    warn_unmapped(mapped)
    return mapped


def warn_unmapped(networks: Iterable[MappedNetwork]) -> None:
    """One line for each network naming the nodes that no op spec describes, if any."""
    for network in networks:
        if network.unmapped:
            text = (
                f"{network.name}: {len(network.unmapped)} of {network.nodes_total} nodes left "
                f"out (no op spec describes them exactly): {'; '.join(network.unmapped)}"
            )
            err_console.print(labelled("warning: ", "yellow", text), soft_wrap=True)
