"""The latency model: tables of per-op latencies measured on a device, and predictions from them.

    keys       OpKey: an op and its input shape, batch, dtype and backend (what a table is keyed by)
    lut        LatencyTable: a header describing the device and {key: Stat} in ms, as JSON
    runners    backends that time a module (torch-cpu, onnxruntime, torch-cuda)
    measure    build_lut (every key a space needs, resumable) and measure_archs (whole networks)
    validate   calibration on random networks and the error report on others
    predict    predict_latency(arch, lut), LatencyModel (expected latency, differentiable in α)
    band       archs_in_band: random nets drawn uniformly from those predicted in a latency band
    loss       the latency loss forms of a search and the adaptive weight
    mobile     the Pixel 1 table published with ProxylessNAS
"""

from proxyless.latency.band import archs_in_band
from proxyless.latency.keys import Context, OpKey, all_keys
from proxyless.latency.loss import KINDS, LatencyLoss
from proxyless.latency.lut import LatencyTable, LatencyTableError, Stat, load_lut, save_lut
from proxyless.latency.measure import MeasureConfig, build_lut, measure_archs
from proxyless.latency.predict import LatencyModel, expected_latency, predict_latency, reachable
from proxyless.latency.runners import BACKENDS, BackendUnavailable, check_backend
from proxyless.latency.validate import ValidationReport, validate_lut

__all__ = [
    "BACKENDS",
    "KINDS",
    "BackendUnavailable",
    "Context",
    "LatencyLoss",
    "LatencyModel",
    "LatencyTable",
    "LatencyTableError",
    "MeasureConfig",
    "OpKey",
    "Stat",
    "ValidationReport",
    "all_keys",
    "archs_in_band",
    "build_lut",
    "check_backend",
    "expected_latency",
    "load_lut",
    "measure_archs",
    "predict_latency",
    "reachable",
    "save_lut",
    "validate_lut",
]
