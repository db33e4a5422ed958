"""`latkit export`: every op of a space (or one whole network) as model files for other tools."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from latkit.cli.app import app, writable_dir
from latkit.cli.output import console, reporting
from latkit.devices import MAX_BATCH

OutDir = Annotated[
    Path,
    typer.Option(
        "--out", "-o", help="Folder to write the model files into.", callback=writable_dir
    ),
]
ExportSpace = Annotated[
    str,
    typer.Option("--space", help="Built-in space name or a space YAML whose ops to export."),
]
Format = Annotated[
    str, typer.Option("--format", "-f", help="File format: tflite (LiteRT) or onnx.")
]
Arch = Annotated[
    Path | None,
    typer.Option(
        "--arch",
        help="A ProxylessNAS net.config JSON: write this whole network as one file instead.",
    ),
]
Batch = Annotated[
    int, typer.Option("--batch", min=1, max=MAX_BATCH, help="Batch size baked into the files.")
]


@app.command()
def export(
    out: OutDir,
    space: ExportSpace = "proxyless-mobile",
    fmt: Format = "tflite",
    arch: Arch = None,
    batch: Batch = 1,
) -> None:
    """Write one model file per distinct op of a space (named by its key) and manifest.json.

    manifest.json maps each file to its table key, op fields and format, so timings from any
    tool (e.g. LiteRT's benchmark_model) join back to latkit's tables.
    With --arch, the whole network goes into one file instead.
    """
    from latkit.spaces import Network, load_space
    from latkit.workflows.export import FORMATS, export_files

    FORMATS.check(fmt)
    network = Network.load(arch, batch=batch) if arch is not None else None
    chosen = load_space(space) if network is None else None
    with reporting() as reporter:
        count, manifest = export_files(
            out, fmt, space=chosen, network=network, batch=batch, reporter=reporter
        )
    what = f"network {arch}" if arch is not None else f"{count} ops of {space}"
    console.print(f"wrote {what} as {fmt} to {out} (index: {manifest})")
