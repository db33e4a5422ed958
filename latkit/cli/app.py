"""The typer application every command module registers on, and the one-line error handling."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import typer

from latkit.cli.output import err_console, labelled, print_wall_time
from latkit.errors import LatkitError

app = typer.Typer(
    name="latkit",
    help=(
        "Measure op latency on a CPU, an NVIDIA GPU or an Android phone, fit a latency "
        "predictor F(op), and run a ProxylessNAS search against it."
    ),
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="markdown",
)

DB_HELP = (
    "Measurement store: a SQLite file, or a postgresql:// URL (user, host and database) that "
    "several profiling hosts share."
)
DEFAULT_DB = "data/latkit.sqlite"


def main() -> None:
    """Entry point: run the app, turning LatkitError and Ctrl-C into one clear line."""
    try:
        code = app(prog_name="latkit", standalone_mode=False)
        if code == 130:  # typer turns Ctrl-C into exit status 130
            raise KeyboardInterrupt
        if not code:
            print_wall_time()
        sys.exit(code if isinstance(code, int) else 0)
    except LatkitError as exc:
        err_console.print(labelled("error: ", "bold red", str(exc)), soft_wrap=True)
        sys.exit(2)
    except (KeyboardInterrupt, typer.Abort) as exc:
        said = str(exc) if isinstance(exc, KeyboardInterrupt) else ""
        err_console.print(
            labelled(
                "interrupted: ",
                "yellow",
                said
                or "everything measured so far is in the store; run the same command again to "
                "continue.",
            ),
            soft_wrap=True,
        )
        sys.exit(130)
    except Exception as exc:
        if not (hasattr(exc, "format_message") and hasattr(exc, "exit_code")):
            raise
        # a usage error from the command-line parser (typer's click exceptions): one line
        command = exc.ctx.command_path if getattr(exc, "ctx", None) else "latkit"
        message = f"{exc.format_message()} (see `{command} --help`)"
        err_console.print(labelled("error: ", "bold red", message), soft_wrap=True)
        sys.exit(exc.exit_code)


def _option(param: typer.CallbackParam) -> str:
    return max(param.opts, key=len) if param.opts else str(param.name)


def creatable_folder(folder: Path, what: str) -> Path:
    """`folder` once it is known that it exists or could be created and would take new files,
    without creating it: a command that then stops on another input leaves no empty folder
    behind (writers create their folders when they write)."""
    chain = (folder, *folder.parents)
    blocker = next((p for p in chain if p.exists() and not p.is_dir()), None)
    if blocker is not None:
        raise LatkitError(f"{what}: cannot create folder {folder}: {blocker} is a file")
    existing = next(p for p in chain if p.exists())
    mode = os.W_OK | os.X_OK
    if not os.access(existing, mode, effective_ids=os.access in os.supports_effective_ids):
        raise LatkitError(f"{what}: folder {existing} is not writable")
    return folder


def writable_file(ctx: typer.Context, param: typer.CallbackParam, value):
    """Option callback: an output file whose folder cannot take it is refused before any work."""
    if value is not None:
        if value.is_dir():
            raise LatkitError(f"{_option(param)} {value}: is a folder; give a file name")
        creatable_folder(value.parent, f"{_option(param)} {value}")
    return value


def writable_dir(ctx: typer.Context, param: typer.CallbackParam, value):
    """Option callback: an output folder that cannot be created or written is refused at once."""
    if value is not None:
        if value.exists() and not value.is_dir():
            raise LatkitError(f"{_option(param)} {value}: is a file, not a folder")
        creatable_folder(value, f"{_option(param)} {value}")
    return value


def open_store(db: str):
    """The store at `db`. A new SQLite file is only created by the first write, so a command
    that stops on a bad input, or only reads, leaves no store behind."""
    from latkit.store import MeasurementStore

    return MeasurementStore(db, lazy=True)


def resolve_device(value: str, store=None):
    """A device file path, or the name of a device already in the store.

    Returns the DeviceConfig when one is known (a file, or a name whose file was registered),
    else the bare name (imported data has a name but no file).
    """
    from latkit.devices import load_device, parse_device

    path = Path(value)
    if path.suffix in (".yaml", ".yml") or path.exists():
        return load_device(path)
    if store is not None:
        known = store.device(value)
        if known is not None:
            if known["config"]:
                return parse_device(known["config"], known["source"] or value)
            return value
        names = store.devices()
        hint = f"; devices in {store.path}: {', '.join(names)}" if names else ""
        raise LatkitError(f"--device {value!r} is neither a device file nor a known device{hint}")
    raise LatkitError(f"--device {value!r}: device file not found")


def require_config(device, what: str):
    """`device` as a DeviceConfig, or an error saying that `what` needs a real device file."""
    from latkit.devices import DeviceConfig

    if isinstance(device, DeviceConfig):
        return device
    raise LatkitError(f"{what} needs a device file: {device!r} is imported data with no profiler")


def device_name(device) -> str:
    return device if isinstance(device, str) else device.name
