"""Architecture search with a binarized supernet (ProxylessNAS).

    supernet / mixed_op   every candidate of every layer, α, single- and two-path plans
    entangled             the candidates of a layer as slices of one weight set (--weights entangled)
    sampling              warmup paths: uniform or strictly fair
    strategies            the gradient (BinaryConnect) and REINFORCE architecture steps
    signal                how much of α's path was the cross-entropy's drift rather than noise
    loop                  SearchConfig and Searcher, on the resumable-run engine
    family                several latency targets on one supernet: an α (an Arm) per target
    objective / budget    the latency objective and the most probable net within a latency band
    hardware              LatencyTarget, the objective built from it, the latency report
    derive                path-level pruning (and the kept paths' weights)
    measured_derive       deriving again with the table corrected by timing the derived net
    pipeline              search_arch, search_family and derive_from_run: a whole search as a library call
    quality / scoring     scoring a supernet and a search against a table of true accuracies
"""

from proxyless.search.derive import argmax_rule, inherit_weights
from proxyless.search.hardware import LatencyTarget, latency_range
from proxyless.search.loop import SearchConfig, Searcher
from proxyless.search.pipeline import (
    DeriveResult,
    SearchResult,
    derive_from_run,
    load_search_data,
    search_arch,
    search_family,
)
from proxyless.search.quality import (
    GroundTruth,
    kendall_tau,
    load_ground_truth,
    ranking_report,
    recalibrate_bn,
    regret_report,
    sample_archs,
    spearman_rho,
    subnet_accuracy,
)
from proxyless.search.scoring import supernet_scores
from proxyless.search.strategies import ArchStrategy, GradientStrategy, ReinforceStrategy
from proxyless.search.supernet import SuperNet

__all__ = [
    "ArchStrategy",
    "DeriveResult",
    "GradientStrategy",
    "GroundTruth",
    "LatencyTarget",
    "ReinforceStrategy",
    "SearchConfig",
    "SearchResult",
    "Searcher",
    "SuperNet",
    "argmax_rule",
    "derive_from_run",
    "inherit_weights",
    "kendall_tau",
    "latency_range",
    "load_ground_truth",
    "load_search_data",
    "ranking_report",
    "recalibrate_bn",
    "regret_report",
    "sample_archs",
    "search_arch",
    "search_family",
    "spearman_rho",
    "subnet_accuracy",
    "supernet_scores",
]
