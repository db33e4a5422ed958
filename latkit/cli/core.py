"""Core commands: profile a space on a device, export the measurements, list spaces."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer
from rich import box
from rich.table import Table

from latkit.cli.app import (
    DEFAULT_DB,
    Archs,
    Db,
    Space,
    StoredDevice,
    TimedDevice,
    app,
    json_option,
    open_store,
    require_config,
    resolve_device,
    writable_file,
)
from latkit.cli.graphs import AllowUnmapped, InputShape, onnx_input_shape, read_onnx
from latkit.cli.output import console, indented, labelled, print_fields, reporting, wrap
from latkit.devices import device_name
from latkit.errors import LatkitError
from latkit.files import replacing, write_json
from latkit.workflows.defaults import MAX_NETWORKS

#: more ops than any space holds: a larger --limit is a typo
MAX_OPS = 100_000
#: unstable keys listed after a profile; `latkit measurements` shows them all
SHOWN_KEYS = 10
#: the profile options that choose what is measured again: a help panel of their own, so that
#: their long names leave the other options' help its width
REDO = "What to measure again"

Devices = Annotated[
    list[str],
    typer.Option(
        "--device",
        "-d",
        help="Device file (YAML) to profile on. Repeat it to profile several devices at once "
        "into one store, one worker process each.",
    ),
]
Limit = Annotated[
    int | None, typer.Option("--limit", min=1, max=MAX_OPS, help="Measure only the first N ops.")
]
Fresh = Annotated[
    bool,
    typer.Option("--fresh", help="Re-measure ops already in the store.", rich_help_panel=REDO),
]
OnlyUnstable = Annotated[
    bool,
    typer.Option(
        "--only-unstable",
        help="Re-measure only the stored rows flagged unstable.",
        rich_help_panel=REDO,
    ),
]
Resume = Annotated[
    bool,
    typer.Option(
        "--resume/--no-resume",
        help="Skip ops already measured (the default); --no-resume = --fresh.",
        rich_help_panel=REDO,
    ),
]
Keep = Annotated[bool, typer.Option("--keep", help="Android: leave pushed files on the phone.")]
ProfileJson = Annotated[Path | None, json_option("a JSON summary")]
Csv = Annotated[
    Path | None,
    typer.Option("--csv", help="Write the rows to this CSV file.", callback=writable_file),
]
WithOps = Annotated[
    bool,
    typer.Option(
        "--ops/--no-ops", help="Also profile each network's ops, to print their sum beside it."
    ),
]
FiguresJson = Annotated[Path | None, json_option("the figures")]
TimedOnnx = Annotated[
    list[Path],
    typer.Option(
        "--onnx",
        help="An ONNX network, timed as latkit rebuilds its mapped op specs: what F "
        "predicts; repeatable.",
    ),
]
ProfileOnnx = Annotated[
    list[Path],
    typer.Option(
        "--onnx",
        help="Measure the distinct ops of this ONNX network (mapped to op specs as `latkit "
        "predict --onnx` maps it) instead of a space's; repeatable.",
    ),
]
FewShot = Annotated[
    int | None,
    typer.Option(
        "--networks",
        min=1,
        max=MAX_NETWORKS,
        help="Time N whole networks instead of every op, for a new device in minutes: those "
        "most informative given the other devices of the space in --db. Then `latkit fit "
        "--device NAME --transfer`.",
    ),
]


@app.command()
def profile(
    ctx: typer.Context,
    device: Devices,
    space: Space = "proxyless-mobile",
    db: Db = DEFAULT_DB,
    limit: Limit = None,
    networks: FewShot = None,
    onnx: ProfileOnnx = [],  # noqa: B006 (typer passes a fresh list; none is kept)
    input_shape: InputShape = None,
    allow_unmapped: AllowUnmapped = False,
    fresh: Fresh = False,
    only_unstable: OnlyUnstable = False,
    resume: Resume = True,
    keep: Keep = False,
    json_out: ProfileJson = None,
) -> None:
    """Measure every distinct op of a search space on the device and store each row.

    Interrupt it at any time: finished ops are committed one by one, and running the same
    command again continues where it stopped without duplicating a row.

    With several --device options the devices are profiled concurrently, each with its own
    progress line. A device that drops out (unplugged, killed) stops alone with a line saying
    why; the others finish, and running the same command again resumes only what is missing.

    Rows timed while other processes left no core free are flagged unstable, like rows whose
    rounds disagreed; --only-unstable re-measures just those, e.g. once the machine is quiet.

    With --networks N it times N whole networks of the space instead (few-shot: a new device
    from the devices the store already knows); a rerun times only those not stored yet.

    With --onnx it measures the distinct ops of those networks instead of a space's, so that F
    answers for them from measurements (`latkit fit`, then `latkit predict --onnx`).
    """
    from latkit.spaces import load_space
    from latkit.workflows.fleet import DeviceOutcome, check_fleet, profile_fleet
    from latkit.workflows.profile import profile_space

    shape = onnx_input_shape(onnx, input_shape, allow_unmapped)
    if onnx:
        _check_onnx_profile(ctx, device, limit, networks, fresh or not resume)
        with open_store(db) as store:
            config = require_config(resolve_device(device[0], store), "profile")
        mapped = read_onnx(onnx, shape, allow_unmapped, config)
        _profile_onnx(config, mapped, db, only_unstable, keep, json_out)
        return
    chosen = load_space(space)
    if networks is not None:
        _check_few_shot(device, limit, only_unstable)
        _profile_networks(device[0], chosen, db, networks, fresh or not resume, keep, json_out)
        return
    with open_store(db) as store:
        configs = [require_config(resolve_device(d, store), "profile") for d in device]
        settings = dict(
            limit=limit, fresh=fresh or not resume, keep_files=keep, raw_dir=raw_dir(store)
        )
        check_fleet(configs, keep)
        if only_unstable:
            if len(configs) > 1:
                raise LatkitError(
                    "--only-unstable re-measures one device at a time: give one --device"
                )
            settings["only_unstable"] = True
        if len(configs) > 1:
            store.create()  # before the workers, so they never race to create one file
        if len(configs) == 1:
            with reporting() as reporter:
                summary = profile_space(configs[0], chosen, store, reporter=reporter, **settings)
            outcomes = [DeviceOutcome(summary.device, summary=summary)]
    if len(configs) > 1:
        with reporting() as reporter:
            fleet = profile_fleet(configs, chosen, db, reporter=reporter, **settings)
        outcomes = fleet.outcomes
    console.print(_profile_table(outcomes))
    for outcome in outcomes:
        if outcome.summary:
            _print_unstable(outcome.summary)
        if outcome.error:
            console.print(labelled(f"{outcome.device} stopped: ", "yellow", outcome.error))
    given = {config.name: arg for config, arg in zip(configs, device)}
    for outcome in outcomes:
        if outcome.summary:
            command = _remeasure(
                given.get(outcome.device, outcome.device), ["--space", space], db, limit
            )
            _print_health(outcome.summary, command, fleet=len(outcomes) > 1)
    if json_out:
        data = outcomes[0].summary.to_json() if len(configs) == 1 else fleet.to_json()
        write_json(json_out, data)
    failed = [o for o in outcomes if o.error]
    if failed:
        raise LatkitError(
            f"{len(failed)} of {len(outcomes)} devices stopped early "
            f"({', '.join(o.device for o in failed)}); their finished ops are stored: run the "
            "same command again to measure only what is missing"
        )


def _check_onnx_profile(
    ctx: typer.Context, devices: list[str], limit: int | None, networks: int | None, fresh: bool
) -> None:
    """Refuse what does not go with `profile --onnx`, before anything is read or timed."""
    space_source = ctx.get_parameter_source("space")  # click's ParameterSource (typer's copy)
    clash = {
        "--space": space_source is not None and space_source.name != "DEFAULT",
        "--limit": limit is not None,
        "--networks": networks is not None,
        "--fresh or --no-resume (they delete every stored row of the device)": fresh,
    }
    given = [option for option, present in clash.items() if present]
    if given:
        raise LatkitError(f"--onnx measures the ops of its networks; it takes no {given[0]}")
    if len(devices) > 1:
        raise LatkitError("--onnx profiles one device at a time: give one --device")


def _profile_onnx(
    config, mapped, db: str, only_unstable: bool, keep: bool, json_out: Path | None
) -> None:
    """`profile --onnx`: the distinct ops of the mapped networks, measured like a space's."""
    from latkit.workflows.fleet import DeviceOutcome
    from latkit.workflows.profile import profile_network_ops

    ops = [op for network in mapped for op in network.ops]
    with open_store(db) as store:
        with reporting() as reporter:
            summary = profile_network_ops(
                config,
                ops,
                store,
                only_unstable=only_unstable,
                keep_files=keep,
                raw_dir=raw_dir(store),
                reporter=reporter,
            )
    console.print(_profile_table([DeviceOutcome(summary.device, summary=summary)]))
    _print_unstable(summary)
    _print_health(summary, "the same command with --only-unstable", fleet=False)
    if json_out:
        write_json(json_out, summary.to_json())


def _check_few_shot(devices: list[str], limit: int | None, only_unstable: bool) -> None:
    """Refuse what does not go with `profile --networks`, before anything runs."""
    if len(devices) > 1:
        raise LatkitError("--networks times one device's networks: give one --device")
    if limit is not None:
        raise LatkitError("--limit counts ops; --networks times whole networks instead: choose one")
    if only_unstable:
        raise LatkitError(
            "--only-unstable re-measures op rows; --networks times whole networks: choose one"
        )


def _profile_networks(
    device: str, space, db: str, n: int, fresh: bool, keep: bool, json_out: Path | None
) -> None:
    """`profile --networks N` (`profile_networks`): the timings, then the fit that uses them."""
    from latkit.store import redact
    from latkit.workflows.transfer import profile_networks

    with open_store(db) as store:
        config = require_config(resolve_device(device, store), "profile")
        with reporting() as reporter:
            result = profile_networks(
                config,
                space,
                store,
                n,
                fresh=fresh,
                keep_files=keep,
                raw_dir=raw_dir(store),
                reporter=reporter,
            )
    console.print(_few_shot_table(result))
    drawn = ", ".join(result.sources) or f"none (no other device of {space.name} in {redact(db)})"
    print_fields(["networks picked with the F of:", drawn], sep=" ")
    command = ["latkit", "fit", "--device", config.name, "--transfer"]
    command += [] if db == DEFAULT_DB else ["--db", redact(db)]
    first = "" if result.sources else f"profile or import another device of {space.name}, then "
    console.print(f"next: {first}{shlex.join(command)}", soft_wrap=True)
    if json_out:
        write_json(json_out, result.to_json())


def _few_shot_table(result) -> Table:
    """One row per network: its median, the CV across rounds, and whether it was timed now."""
    label = f" ({result.label})" if result.label else ""
    table = Table(
        title=f"{len(result.networks)} networks of {result.space} on {result.device}{label}"
    )
    for col in ("network", "ms", "CV", "timed"):
        table.add_column(col, justify="left" if col == "network" else "right")
    for timed in result.networks:
        when = "now" if timed.timed_now else "stored"
        table.add_row(timed.network, f"{timed.median_ms:.4f}", f"{timed.cv:.2%}", when)
    return table


def _print_unstable(summary) -> None:
    """The keys of a profile's rows whose rounds still disagreed after every retry (the first
    `SHOWN_KEYS`); rows flagged because the machine was busy are only counted, in the last
    line (`_print_health`), since their cause is known."""
    busy = set(summary.busy)
    shaky = [key for key in summary.unstable if key not in busy]
    if not shaky:
        return
    text = (
        f"{summary.device}: {len(shaky)} row(s) still above max_cv after every retry, "
        "stored with unstable = true:"
    )
    for line in wrap(text, console.width):
        console.print(line, style="yellow", soft_wrap=True)
    for key in shaky[:SHOWN_KEYS]:
        console.print(indented(key, console.width, 2), soft_wrap=True)
    if len(shaky) > SHOWN_KEYS:
        console.print(f"  ... and {len(shaky) - SHOWN_KEYS} more (latkit measurements lists them)")


def _remeasure(device: str, what: list[str], db: str, limit: int | None = None) -> str:
    """The command that re-measures the unstable rows of `what` (`--space S`, or `--onnx` files
    with their options)."""
    from latkit.store import redact

    words = ["latkit", "profile", "--device", device, *what]
    if db != DEFAULT_DB:
        words += ["--db", redact(db)]
    if limit:
        words += ["--limit", str(limit)]
    return shlex.join([*words, "--only-unstable"])


def _onnx_words(onnx: list[Path], input_shape: str | None, allow_unmapped: bool) -> list[str]:
    """The --onnx options that map these files again as they were mapped now."""
    words = [word for path in onnx for word in ("--onnx", str(path))]
    words += ["--input-shape", input_shape] if input_shape else []
    return words + (["--allow-unmapped"] if allow_unmapped else [])


def _print_health(summary, command: str, fleet: bool) -> None:
    """The summary's last word: how many rows are unstable and how to re-measure them."""
    text = summary.health()
    if fleet:
        text = f"{summary.device}: {text}"
    if summary.unstable:
        text += f": {command} re-measures them"
    style = "yellow" if summary.unstable else None
    for line in wrap(text, console.width):
        console.print(line, style=style, soft_wrap=True)


def raw_dir(store) -> Path:
    """Where raw tool output is kept: beside a SQLite store, else under data/."""
    return (store.path.parent if store.is_file else Path("data")) / "raw"


def _profile_table(outcomes) -> Table:
    """One row per device: ops in the space, measured now (new), already stored (kept), retried,
    still unstable. A device whose numbers are not its own hardware's (an emulated phone's
    host-CPU numbers) says so in a caption."""
    fleet = len(outcomes) > 1
    labels = sorted({o.summary.label for o in outcomes if o.summary and o.summary.label})
    title = f"profile of {len(outcomes)} devices" if fleet else f"profile of {outcomes[0].device}"
    table = Table(
        title=title,
        caption="; ".join(f"* {label}" for label in labels) or None,
        box=box.SIMPLE_HEAD if fleet else box.HEAVY_HEAD,
    )
    columns = ["ops", "new", "kept", "retried", "unstable", "median CV", "wall s"]
    if not fleet:
        columns.append("timed s")
    if fleet:
        table.add_column("device")
    for col in columns:
        table.add_column(col, justify="right")
    if fleet:
        table.add_column("status")
    for outcome in outcomes:
        s = outcome.summary
        cells = ["-"] * len(columns)
        if s:
            cells = [str(s.ops), str(s.measured), str(s.skipped), str(s.retried)]
            cells += [str(len(s.unstable)), f"{s.median_cv:.2%}", f"{s.wall_s:.1f}"]
            cells += [] if fleet else [f"{s.timed_s:.1f}"]
        if fleet:
            mark = "*" if s and s.label else ""
            cells = [outcome.device + mark, *cells, "done" if s else "stopped"]
        elif s and s.label:
            table.title = f"{title}*"
        table.add_row(*cells)
    return table


@app.command()
def measurements(device: StoredDevice, db: Db = DEFAULT_DB, csv: Csv = None) -> None:
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
    console.print(f"{name}: {len(frame)} ops (median ms, CV across rounds, runtime, key, notes)")
    for row in frame.itertuples():
        head = f"{row.median_ms:10.4f}  {row.cv:6.2%}  {row.runtime}  "
        parts = row.key.split("-")
        notes = _notes(row)
        fields = [head + parts[0], *("-" + part for part in parts[1:])]
        if notes:
            fields.append(f"  ({notes})")
        print_fields(fields, indent=len(head), sep="")


def _yes(flag) -> bool:
    """A flag column's value; unknown (rows from a version 1 store) counts as no."""
    import pandas as pd

    return bool(not pd.isna(flag) and flag)


def _notes(row) -> str:
    """What a reader must know about a row's statistics, in a word or two each."""
    from latkit.profilers.load import contended

    notes = [] if _yes(row.exact) else ["derived"]
    if _yes(row.unstable):
        busy = contended(row.waited, row.steal)
        notes.append("unstable: timed busy" if busy else "unstable")
    if row.block and row.block > 1:
        notes.append(f"blocks of {int(row.block)}")
    return ", ".join(notes)


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
    device: TimedDevice,
    arch: Archs = [],  # noqa: B006 (typer passes a fresh list; none is kept)
    onnx: TimedOnnx = [],  # noqa: B006
    input_shape: InputShape = None,
    allow_unmapped: AllowUnmapped = False,
    db: Db = DEFAULT_DB,
    ops: WithOps = True,
    json_out: FiguresJson = None,
) -> None:
    """Time whole networks end to end, next to the sum of their separately measured ops.

    The gap between the two is what a per-op latency table cannot see (fusion, caches, launch
    overhead); `latkit fit --networks` learns it.

    An --onnx network is timed as latkit rebuilds its mapped op specs (seeded weights, the
    device's runtime and batch size), which is exactly what F predicts, on every kind of
    device, and is stored like every network timing (`latkit predict --onnx` shows it beside
    F). Since mapping is exact or refused, the rebuild is the file's graph but for its weights'
    values; with --allow-unmapped it lacks the unmapped nodes, as F's answer does.
    """
    from latkit.profilers import ProfilerOptions, get_profiler
    from latkit.spaces import Network
    from latkit.workflows.networks import time_networks

    shape = onnx_input_shape(onnx, input_shape, allow_unmapped)
    if not arch and not onnx:
        raise LatkitError("nothing to time: give --arch NET.config and/or --onnx MODEL.onnx")
    with open_store(db) as store:
        config = require_config(resolve_device(device, store), "time-network")
        nets = [Network.load(path, batch=config.batch_size) for path in arch]
        mapped = read_onnx(onnx, shape, allow_unmapped, config)
        nets += [Network(network.ops, network.name) for network in mapped]
        with reporting() as reporter:
            profiler = get_profiler(config, ProfilerOptions(reporter=reporter))
            try:
                rows = time_networks(profiler, store, nets, with_ops=ops)
                health = _op_health(profiler, store, nets) if ops else None
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
    if health is not None:
        text = f"ops: {health.describe()}"
        if health.unstable:
            onnx_words = _onnx_words(onnx, input_shape, allow_unmapped)
            text += f": {_remeasure_networks(device, db, bool(arch), onnx_words)}"
        for line in wrap(text, console.width):
            console.print(line, style="yellow" if health.unstable else None, soft_wrap=True)
    if json_out:
        write_json(json_out, {"device": config.name, "networks": [r.to_json() for r in rows]})


def _remeasure_networks(device: str, db: str, arch: bool, onnx_words: list[str]) -> str:
    """How to re-measure the unstable rows of the timed networks' ops: those of --onnx files as
    `profile --onnx` measured them, those of --arch networks with their space's profile."""
    commands = []
    if onnx_words:
        commands.append(
            f"{_remeasure(device, onnx_words, db)} re-measures those of the --onnx files"
        )
    if arch:
        commands.append(
            f"{_remeasure(device, ['--space', 'SPACE'], db)} re-measures those of SPACE"
        )
    return "; ".join(commands)


def _op_health(profiler, store, nets):
    """The stored rows of the networks' ops: how many are unstable (`RowHealth`)."""
    from latkit.profilers.session import row_health

    ops = [op for net in nets for op in net.ops if op.type != "zero"]
    keys = {op.key for op in profiler.prepare(ops)}
    return row_health(store, profiler.device.name, profiler.environment().env_id, keys)
