"""Core commands: profile a space on a device, export the measurements, list spaces."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.table import Table

from latkit.cli.app import (
    DB_HELP,
    DEFAULT_DB,
    app,
    device_name,
    open_store,
    require_config,
    resolve_device,
)
from latkit.cli.output import console, print_fields, reporting
from latkit.errors import LatkitError
from latkit.files import replacing, write_json


@app.command()
def profile(
    device: str = typer.Option(..., "--device", "-d", help="Device file (YAML) to profile on."),
    space: str = typer.Option("proxyless-mobile", help="Built-in space name or a space YAML."),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    limit: int | None = typer.Option(None, min=1, help="Measure only the first N ops."),
    fresh: bool = typer.Option(False, "--fresh", help="Re-measure ops already in the store."),
    resume: bool = typer.Option(
        True,
        "--resume/--no-resume",
        help="Skip ops already measured (the default); --no-resume = --fresh.",
    ),
    keep: bool = typer.Option(False, "--keep", help="Android: leave pushed files on the phone."),
    json_out: Path | None = typer.Option(None, "--json", help="Write a JSON summary here."),
) -> None:
    """Measure every distinct op of a search space on the device and store each row.

    Interrupt it at any time: finished ops are committed one by one, and running the same
    command again continues where it stopped without duplicating a row.
    """
    from latkit.spaces import load_space
    from latkit.workflows.profile import profile_space

    with open_store(db) as store:
        config = require_config(resolve_device(device, store), "profile")
        chosen = load_space(space)
        with reporting() as reporter:
            summary = profile_space(
                config,
                chosen,
                store,
                limit=limit,
                fresh=fresh or not resume,
                keep_files=keep,
                raw_dir=Path(db).parent / "raw",
                reporter=reporter,
            )
    table = Table(
        title=f"profile of {summary.device}" + (f" ({summary.label})" if summary.label else "")
    )
    for col in ("ops", "measured", "already stored", "median CV", "wall s", "timed s"):
        table.add_column(col, justify="right")
    table.add_row(
        str(summary.ops),
        str(summary.measured),
        str(summary.skipped),
        f"{summary.median_cv:.2%}",
        f"{summary.wall_s:.1f}",
        f"{summary.timed_s:.1f}",
    )
    console.print(table)
    if json_out:
        write_json(json_out, summary.to_json())


@app.command()
def measurements(
    device: str = typer.Option(..., "--device", "-d", help="Device file or stored device name."),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    csv: Path | None = typer.Option(None, "--csv", help="Write the rows to this CSV file."),
) -> None:
    """Show or export a device's measured ops (one row per op and environment)."""
    with open_store(db) as store:
        name = device_name(resolve_device(device, store))
        frame = store.dataframe(name)
    if frame.empty:
        raise LatkitError(
            f"no measurements for device {name!r} in {db}; run `latkit profile` first"
        )
    if csv:
        with replacing(csv) as tmp:
            frame.to_csv(tmp, index=False)
        console.print(f"wrote {len(frame)} rows to {csv}")
        return
    console.print(f"{name}: {len(frame)} ops (median ms, CV across rounds, runtime, key)")
    for row in frame.itertuples():
        head = f"{row.median_ms:10.4f}  {row.cv:6.2%}  {row.runtime}  "
        parts = row.key.split("-")
        fields = [head + parts[0], *("-" + part for part in parts[1:])]
        print_fields(fields, indent=len(head), sep="")


@app.command()
def spaces() -> None:
    """List the built-in search spaces and how many distinct ops each has."""
    from latkit.spaces import builtin_spaces

    table = Table(title="built-in search spaces")
    for col in ("name", "layers", "distinct ops", "description"):
        table.add_column(col)
    for name, space in builtin_spaces().items():
        table.add_row(
            name, str(len(space.layers())), str(len(space.distinct_ops())), space.description
        )
    console.print(table)


@app.command("time-network")
def time_network(
    device: str = typer.Option(..., "--device", "-d", help="Device file (YAML) to time on."),
    arch: list[Path] = typer.Option(
        ..., "--arch", help="ProxylessNAS net.config JSON; repeatable."
    ),
    db: str = typer.Option(DEFAULT_DB, help=DB_HELP),
    ops: bool = typer.Option(
        True,
        "--ops/--no-ops",
        help="Also profile each network's ops, to print their sum beside it.",
    ),
    json_out: Path | None = typer.Option(None, "--json", help="Write the figures here."),
) -> None:
    """Time whole networks end to end, next to the sum of their separately measured ops.

    The gap between the two is what a per-op latency table cannot see (fusion, caches, launch
    overhead); `latkit fit --networks` learns it.
    """
    from latkit.profilers import ProfilerOptions, get_profiler
    from latkit.spaces import Network
    from latkit.workflows.networks import time_networks

    with open_store(db) as store:
        config = require_config(resolve_device(device, store), "time-network")
        nets = [Network.load(path, batch=config.batch_size) for path in arch]
        with reporting() as reporter:
            profiler = get_profiler(config, ProfilerOptions(reporter=reporter))
            try:
                rows = time_networks(profiler, store, nets, with_ops=ops)
            finally:
                profiler.close()
    table = Table(
        title=f"whole networks on {config.name}"
        + (f" ({profiler.label})" if profiler.label else "")
    )
    for col in ("network", "measured ms", "sum of ops ms", "measured / sum", "CV"):
        table.add_column(col, justify="right")
    for row in rows:
        s = row.sum_of_ops_ms
        table.add_row(
            row.network,
            f"{row.measured_ms:.3f}",
            "-" if s is None else f"{s:.3f}",
            "-" if s is None else f"{row.measured_ms / s:.3f}",
            f"{row.cv:.2%}",
        )
    console.print(table)
    if json_out:
        write_json(json_out, {"device": config.name, "networks": [r.to_json() for r in rows]})
