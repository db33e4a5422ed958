"""`latkit export`: every op of a space (or one whole network) as model files for other tools.

The files are what latkit's own profilers run, so timings from `benchmark_model`, onnxruntime's
perf test or anything else line up with latkit's table key for key via `manifest.json`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path

import typer

from latkit.cli.app import app, console, progress_bar, write_json
from latkit.errors import LatkitError
from latkit.ops import OpSpec

MANIFEST = "manifest.json"


def _tflite(ops: Sequence[OpSpec]) -> bytes:
    from profilers.tflite_writer import export_tflite

    return export_tflite(ops)


def _onnx(ops: Sequence[OpSpec]) -> bytes:
    from profilers.onnx_export import export_onnx

    return export_onnx(ops)


#: format name -> (file suffix, writer of a chain of ops)
FORMATS: dict[str, tuple[str, Callable[[Sequence[OpSpec]], bytes]]] = {
    "tflite": (".tflite", _tflite),
    "onnx": (".onnx", _onnx),
}


def safe_name(key: str) -> str:
    """A file name for a table key: ':' and anything else odd become '_' (the key stays in the
    manifest, so nothing is lost)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    tmp.replace(path)


def _read_manifest(path: Path) -> dict:
    """The manifest already in `--out`, so exports of several formats share one file."""
    if not path.exists():
        return {"files": {}}
    try:
        manifest = json.loads(path.read_text())
        if not isinstance(manifest.get("files"), dict):
            raise ValueError("no 'files' mapping")
    except (ValueError, AttributeError) as exc:
        raise LatkitError(
            f"{path}: not a latkit export manifest ({exc}); remove it or pick another --out"
        ) from exc
    return manifest


@app.command()
def export(
    out: Path = typer.Option(..., "--out", "-o", help="Folder to write the model files into."),
    space: str = typer.Option(
        "proxyless-mobile", help="Built-in space name or a space YAML whose ops to export."
    ),
    fmt: str = typer.Option(
        "tflite", "--format", "-f", help="File format: tflite (LiteRT) or onnx."
    ),
    arch: Path | None = typer.Option(
        None,
        "--arch",
        help="A ProxylessNAS net.config JSON: write this whole network as one file instead.",
    ),
    batch: int = typer.Option(1, min=1, help="Batch size baked into the files."),
) -> None:
    """Write one model file per distinct op of a space (named by its key) and manifest.json.

    manifest.json maps each file to its table key, op fields and format, so timings from any
    tool (e.g. LiteRT's benchmark_model) join back to latkit's tables.
    With --arch, the whole network goes into one file instead.
    """
    if fmt not in FORMATS:
        raise LatkitError(f"--format {fmt!r} is not one of {', '.join(FORMATS)}")
    suffix, writer = FORMATS[fmt]
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / MANIFEST
    manifest = _read_manifest(manifest_path)
    if arch is not None:
        from latkit.spaces import Network

        network = Network.load(arch, batch=batch)
        entry = {
            "network": network.name,
            "keys": [op.key for op in network.ops],
            "ops": [op.to_dict() for op in network.ops],
        }
        jobs = [(safe_name(network.name) + suffix, list(network.ops), entry)]
    else:
        from latkit.spaces import load_space

        ops = load_space(space).distinct_ops(batch)
        jobs = [
            (safe_name(op.key) + suffix, [op], {"key": op.key, "op": op.to_dict()}) for op in ops
        ]
        names = [name for name, _, _ in jobs]
        if len(set(names)) != len(names):
            raise LatkitError(f"space {space}: two op keys map to the same file name")
    with progress_bar() as bar:
        task = bar.add_task(f"writing {fmt}", total=len(jobs))
        for name, ops, entry in jobs:
            _write_atomic(out / name, writer(ops))
            manifest["files"][name] = {"format": fmt, **entry}
            write_json(manifest_path, manifest)  # after every file: an interrupted run keeps both
            bar.advance(task)
    what = f"network {arch}" if arch is not None else f"{len(jobs)} ops of {space}"
    console.print(f"wrote {what} as {fmt} to {out} (index: {manifest_path})")
