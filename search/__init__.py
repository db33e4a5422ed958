"""Hardware-aware search: ProxylessNAS's binary-gate supernet with the device's F in the loss.

The parts: the mixed op (`mixed_op`), the supernet (`supernet`), the expected-latency table
(`latency`), the losses (`losses`), the trainers (`trainer`, `reinforce`), the datasets
(`datasets`), the architecture export (`export`) and the defaults (`defaults`). The whole job, with the device in the loop,
is `latkit.workflows.search.run_search`.
"""

from __future__ import annotations

from typing import Any

__all__ = ["SearchConfig"]


def __getattr__(name: str) -> Any:
    """`SearchConfig` on first use: importing a light module of the package (its `defaults`,
    which the command line reads) must not import torch with the trainer."""
    if name == "SearchConfig":
        from latkit.search.trainer import SearchConfig

        return SearchConfig
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
