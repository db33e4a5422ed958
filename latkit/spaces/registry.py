"""The registry of spaces by name, and architectures from files.

The built-in spaces are the YAML files shipped in this folder, one per space; a family module
(`proxyless`, `fbnet`, `ofa`) holds what its spaces do differently, and adding a space of a
known family is adding a file. `load_space` takes a built-in's name or a file in the same
layout; `load_arch` reads a network in any of the formats the families publish.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from latkit.errors import LatkitError
from latkit.files import read_json, read_yaml
from latkit.spaces.base import Network, SearchSpace
from latkit.spaces.ofa import OFA_SPACE, is_subnet


def _builtin_files() -> dict[str, Any]:
    folder = resources.files("latkit.spaces")
    return {p.name.removesuffix(".yaml"): p for p in folder.iterdir() if p.name.endswith(".yaml")}


def builtin_spaces() -> dict[str, SearchSpace]:
    """Built-in spaces by name, read from the YAML files shipped in `latkit/spaces/`."""
    spaces = {}
    for name, path in sorted(_builtin_files().items()):
        spaces[name] = SearchSpace.from_dict(yaml.safe_load(path.read_text()), source=name)
    return spaces


def load_space(name_or_path: str | Path) -> SearchSpace:
    """A built-in space by name, or a YAML file in the same layout."""
    builtins = builtin_spaces()
    if str(name_or_path) in builtins:
        return builtins[str(name_or_path)]
    path = Path(name_or_path)
    if not path.exists():
        raise LatkitError(
            f"space {name_or_path!r} is neither a built-in ({', '.join(builtins)}) nor a file"
        )
    data = read_yaml(path, "space file")
    if not isinstance(data, dict):
        raise LatkitError(f"{path}: a space file must be a YAML mapping")
    return SearchSpace.from_dict(data, source=str(path))


def load_arch(
    path: str | Path,
    batch: int = 1,
    space: SearchSpace | str | None = None,
    input_hw: int | None = None,
) -> Network:
    """A network from a file: ProxylessNAS `net.config`, once-for-all MobileNetV3 config, or
    once-for-all subnet choices (`{"ks": [...], "e": [...], "d": [...], "r": [224]}`, read in
    `space`, by default the built-in `ofa-mbv3`). `input_hw` overrides a config's input size."""
    path = Path(path)
    config = read_json(path, "architecture")
    try:
        if is_subnet(config):
            chosen = load_space(space or OFA_SPACE) if not isinstance(space, SearchSpace) else space
            if input_hw is not None:
                config = {**config, "r": [input_hw]}
            return chosen.ofa_network(config, batch=batch, name=path.stem)
        if not isinstance(config, dict):
            raise LatkitError("an architecture file holds one JSON object")
        return Network.from_config(config, input_hw=input_hw, batch=batch, name=path.stem)
    except LatkitError as exc:
        raise LatkitError(f"{path}: {exc}") from None
