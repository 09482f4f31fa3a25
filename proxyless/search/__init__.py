"""Architecture search with a binarized supernet (ProxylessNAS).

    supernet / mixed_op   every candidate of every layer, α, single- and two-path plans
    strategies            the gradient (BinaryConnect) and REINFORCE architecture steps
    loop                  SearchConfig and Searcher, on the resumable-run engine
    objective / budget    the latency objective and the most probable net within a latency band
    hardware              LatencyTarget, the objective built from it, the latency report
    derive                path-level pruning (and the kept paths' weights)
    measured_derive       deriving again with the table corrected by timing the derived net
    pipeline              search_arch and derive_from_run: a whole search as a library call
"""

from proxyless.search.derive import argmax_rule, inherit_weights
from proxyless.search.hardware import LatencyTarget, latency_range
from proxyless.search.loop import SearchConfig, Searcher
from proxyless.search.pipeline import DeriveResult, SearchResult, derive_from_run, load_search_data, search_arch
from proxyless.search.strategies import ArchStrategy, GradientStrategy, ReinforceStrategy
from proxyless.search.supernet import SuperNet

__all__ = [
    "ArchStrategy",
    "DeriveResult",
    "GradientStrategy",
    "LatencyTarget",
    "ReinforceStrategy",
    "SearchConfig",
    "SearchResult",
    "Searcher",
    "SuperNet",
    "argmax_rule",
    "derive_from_run",
    "inherit_weights",
    "latency_range",
    "load_search_data",
    "search_arch",
]
