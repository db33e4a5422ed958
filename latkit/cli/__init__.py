"""The `latkit` command: each module below registers its commands on one typer app."""

from importlib import import_module

from latkit.cli.app import app, main

# registration order is the order of `latkit --help`: measure, then fit, then search
for _module in ("core", "export", "android", "predict", "search"):
    import_module(f"latkit.cli.{_module}")

__all__ = ["app", "main"]
