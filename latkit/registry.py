"""Registries by name, as timm keeps its models: register, look up, create, list.

An entry is the object itself, or a `"module:attribute"` string imported on first use, so listing
what exists never imports an optional dependency (the GPU path never loads the Android code).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Hashable, Iterator
from typing import Any, Generic, TypeVar

from latkit.errors import LatkitError

T = TypeVar("T")


class Registry(Generic[T]):
    """Named entries of one kind. `what` is how errors name a key, e.g. "--loss" or "op type"."""

    def __init__(self, what: str) -> None:
        self.what = what
        self._entries: dict[Hashable, T | str] = {}
        self._usage: dict[Hashable, str] = {}

    def register(
        self, name: Hashable, target: T | str | None = None, *, usage: str | None = None
    ) -> Any:
        """Add `target` under `name`; without a target, return a decorator that adds its argument.

        A string target is `"module:attribute"`, imported when first asked for. `usage` is how
        error messages spell the entry for a user (e.g. "cifar10:DIR"), if not by its name.
        """
        if target is None:

            def decorator(obj: T) -> T:
                self.register(name, obj, usage=usage)
                return obj

            return decorator
        if name in self._entries:
            raise ValueError(f"{self.what} {name!r} is registered twice")
        self._entries[name] = target
        self._usage[name] = usage or str(name)
        return target

    def names(self) -> tuple[Hashable, ...]:
        return tuple(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    def check(self, name: Hashable) -> None:
        """Raise one clear error when `name` is not registered (without importing anything)."""
        if name not in self._entries:
            known = ", ".join(self._usage.values())
            raise LatkitError(f"{self.what} {name!r} is not one of {known}")

    def get(self, name: Hashable) -> T:
        """The entry called `name` (imported if lazy); an unknown name is one clear error.

        A lazy entry whose module cannot be imported raises ModuleNotFoundError, so the caller
        can say which package is missing.
        """
        self.check(name)
        entry = self._entries[name]
        if isinstance(entry, str):
            module, _, attribute = entry.partition(":")
            entry = getattr(importlib.import_module(module), attribute)
            self._entries[name] = entry
        return entry  # type: ignore[return-value]

    def create(self, name: Hashable, *args: Any, **kwargs: Any) -> Any:
        """Call the entry `name` (a class or factory) with the given arguments."""
        factory: Callable[..., Any] = self.get(name)  # type: ignore[assignment]
        return factory(*args, **kwargs)
