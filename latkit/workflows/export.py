"""Model files for other tools: every op of a space, or one whole network, plus manifest.json.

The files are what latkit's own profilers run, so timings from `benchmark_model`, onnxruntime's
perf test or anything else line up with latkit's table key for key via the manifest, which maps
each file to its table key, op fields and format.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from latkit.devices import MAX_BATCH
from latkit.errors import LatkitError
from latkit.files import write_atomic, write_json
from latkit.ops import OpSpec
from latkit.registry import Registry
from latkit.reporting import Reporter, SilentReporter
from latkit.spaces import Network, SearchSpace

MANIFEST = "manifest.json"
Writer = Callable[[Sequence[OpSpec]], bytes]


def _tflite(ops: Sequence[OpSpec]) -> bytes:
    from latkit.profilers.tflite_writer import export_tflite

    return export_tflite(ops)


def _onnx(ops: Sequence[OpSpec]) -> bytes:
    from latkit.profilers.onnx_export import export_onnx

    return export_onnx(ops)


#: file format -> (suffix, writer of a chain of ops)
FORMATS: Registry[tuple[str, Writer]] = Registry("--format")
FORMATS.register("tflite", (".tflite", _tflite))
FORMATS.register("onnx", (".onnx", _onnx))


def safe_name(key: str) -> str:
    """A file name for a table key: ':' and anything else odd become '_' (the key stays in the
    manifest, so nothing is lost)."""
    return re.sub(r"[^A-Za-z0-9._-]", "_", key)


def read_manifest(path: Path) -> dict[str, Any]:
    """The manifest already in the folder, so exports of several formats share one file."""
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


def export_files(
    out: Path,
    fmt: str,
    *,
    space: SearchSpace | None = None,
    network: Network | None = None,
    batch: int = 1,
    reporter: Reporter | None = None,
) -> tuple[int, Path]:
    """Write every distinct op of `space` (one file each), or `network` as one file, into `out`;
    returns (files written, manifest path). The manifest is rewritten after every file, so an
    interrupted export keeps files and index in step."""
    suffix, writer = FORMATS.get(fmt)
    if not 1 <= batch <= MAX_BATCH:  # the CLI's range too: a file's input is allocated at once
        raise LatkitError(f"batch {batch}: allowed 1 to {MAX_BATCH}")
    if network is not None:
        entry = {
            "network": network.name,
            "keys": [op.key for op in network.ops],
            "ops": [op.to_dict() for op in network.ops],
        }
        jobs = [(safe_name(network.name) + suffix, list(network.ops), entry)]
    elif space is not None:
        ops = space.distinct_ops(batch)
        jobs = [
            (safe_name(op.key) + suffix, [op], {"key": op.key, "op": op.to_dict()}) for op in ops
        ]
        names = [name for name, _, _ in jobs]
        if len(set(names)) != len(names):
            raise LatkitError(f"space {space.name}: two op keys map to the same file name")
    else:
        raise LatkitError("export needs a space or a network")
    manifest_path = Path(out) / MANIFEST
    manifest = read_manifest(manifest_path)
    advance = (reporter or SilentReporter()).task(f"writing {fmt}", len(jobs))
    for name, ops, entry in jobs:
        write_atomic(Path(out) / name, writer(ops))
        manifest["files"][name] = {"format": fmt, **entry}
        write_json(manifest_path, manifest)
        advance(1)
    return len(jobs), manifest_path
