"""The `latkit` command: each module below registers its commands on one typer app."""

from latkit.cli import core  # noqa: F401  (registers commands)
from latkit.cli.app import app, main

__all__ = ["app", "main"]
