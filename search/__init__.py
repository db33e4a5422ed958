"""Hardware-aware search: ProxylessNAS's binary-gate supernet with the device's F in the loss.

`run_search` is the whole job (what `latkit search` runs); the parts are the mixed op
(`search.mixed_op`), the supernet (`search.supernet`), the expected-latency table
(`search.latency`), the losses (`search.losses`), the trainers (`search.trainer`,
`search.reinforce`), the datasets (`search.datasets`) and the architecture export
(`search.export`).
"""

from search.run import SearchResult, run_search
from search.trainer import SearchConfig

__all__ = ["SearchConfig", "SearchResult", "run_search"]
