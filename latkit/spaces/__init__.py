"""Search spaces and whole networks, as plain data: one module per space family.

`base` holds what every family shares (`Layer`, `Network`, `SearchSpace`), `layout` the YAML
layout of a space file (`Stage`, `Candidate`), `proxyless`, `fbnet` and `ofa` what their
families do differently (ProxylessNAS's net.config and names, FBNet's `irf` blocks and `skip`,
once-for-all's elastic depth and subnet choices), and `registry` the spaces by name and
architectures from files. This module only hands their names on, so that `from latkit.spaces
import ...` stays the one way in.
"""

from latkit.spaces.base import Layer, Network, SearchSpace, candidate_name
from latkit.spaces.layout import IDENTITIES, Candidate, Stage
from latkit.spaces.ofa import OFA_SPACE
from latkit.spaces.registry import builtin_spaces, load_arch, load_space

__all__ = [
    "IDENTITIES",
    "OFA_SPACE",
    "Candidate",
    "Layer",
    "Network",
    "SearchSpace",
    "Stage",
    "builtin_spaces",
    "candidate_name",
    "load_arch",
    "load_space",
]
