"""The typer application every command module registers on, the option types they share, and
the one-line error handling.

Help reads as other Python CLIs' help does (click's own): a value's type is `INTEGER`, `FLOAT`,
`TEXT` or `PATH`, a flag shows none, an argument's usage is its name in capitals. Typer's newer
releases write `<int>`, `<str>`, `<bool>` and `list[...]` instead; `Command` and `Group` put
click's names back (`click_type`), for every command registered on `app`.
"""

from __future__ import annotations

import os
import sys
import types
import typing
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption

from latkit.cli.output import err_console, labelled, print_wall_time
from latkit.errors import LatkitError

#: click's names of the value types latkit's options take
CLICK_TYPES = {int: "INTEGER", float: "FLOAT", str: "TEXT", bool: "BOOLEAN", Path: "PATH"}


def click_type(param: Any) -> str | None:
    """click's name for the values `param` takes: INTEGER, FLOAT, TEXT, PATH (FILE or DIRECTORY
    where only one is allowed), `INTEGER RANGE` for a bounded number, `[a|b]` for a choice, and
    nothing for a flag. None where typer gives no type descriptor (its older, click-based
    releases already write click's names)."""
    if getattr(param, "is_flag", False) or getattr(param, "count", False):
        return ""
    desc = getattr(param, "type_descriptor", None)
    if desc is None:
        return None
    if desc.is_choice:
        return "[" + "|".join(str(choice) for choice in desc.choices) + "]"
    if desc.is_path:
        return str(desc.path_type).upper()
    annotation = desc.annotation
    while typing.get_origin(annotation) in (list, typing.Union, types.UnionType):
        annotation = next(a for a in typing.get_args(annotation) if a is not type(None))
    name = CLICK_TYPES.get(annotation, "TEXT")
    return f"{name} RANGE" if desc.is_ranged else name


class Argument(TyperArgument):
    """An argument as click shows it: its type by click's name, its usage its name in capitals
    (`FILE`, `[FILE]` when optional)."""

    def display_type_rich(self, ctx: typer.Context) -> str | None:
        return click_type(self)

    def get_usage_pieces(self, ctx: typer.Context) -> list[str]:
        name = str(self.name).upper() + ("..." if self.nargs != 1 else "")
        return [name if self.required else f"[{name}]"]


def click_style(param: Any) -> None:
    """Give `param` click's help: an option its metavar (none for a flag), an argument the
    display of `Argument` (typer builds its parameters itself, so the class is swapped on the
    instance; `Argument` adds no state)."""
    label = click_type(param)
    if label is None:
        return
    if isinstance(param, TyperOption):
        if param.metavar is None:
            param.metavar = label
    elif type(param) is TyperArgument:
        param.__class__ = Argument


class Command(TyperCommand):
    """A typer command whose help writes click's type names (`click_style`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        for param in self.params:
            click_style(param)

    def get_help_option(self, ctx: typer.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            click_style(option)
        return option


class Group(TyperGroup):
    """The `latkit` group: its own `--help` as a flag with no type."""

    def get_help_option(self, ctx: typer.Context) -> Any:
        option = super().get_help_option(ctx)
        if option is not None:
            click_style(option)
        return option


class App(typer.Typer):
    """A typer app whose commands are `Command`s unless one asks for another class."""

    def command(self, *args: Any, cls: Any = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or Command, **kwargs)


app = App(
    name="latkit",
    cls=Group,
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
SPACE_HELP = "Built-in space name or a space YAML."
DEVICE_HELP = "Device file (YAML) or the name of a device already in the store."


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
    from latkit.devices import is_device_file, load_device, parse_device

    if is_device_file(value):
        return load_device(value)
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


# --- option types the commands share ----------------------------------------------------------
# A command's signature names its options by these types, so that an option every command has
# (`--db`, `--device`) is spelt, helped and checked in one place.

#: the measurement store
Db = Annotated[str, typer.Option("--db", help=DB_HELP)]
#: a device file or a device the store knows (imported data)
StoredDevice = Annotated[str, typer.Option("--device", "-d", help=DEVICE_HELP)]
#: a device file to time on (a device known only by imported data has no profiler)
TimedDevice = Annotated[str, typer.Option("--device", "-d", help="Device file (YAML) to time on.")]
#: the name rows imported from elsewhere are stored under
ImportDevice = Annotated[
    str, typer.Option("--device", "-d", help="Device name to store the rows under.")
]
#: a search space (the default is each command's own)
Space = Annotated[str, typer.Option("--space", help=SPACE_HELP)]
#: ProxylessNAS net.config files, one a network
Archs = Annotated[
    list[Path], typer.Option("--arch", help="ProxylessNAS net.config JSON; repeatable.")
]


def json_option(what: str) -> Any:
    """The `--json FILE` option, its help saying what is written: every command has one, and
    each writes something else."""
    return typer.Option("--json", help=f"Write {what} here.", callback=writable_file)
