"""Latency predictors: F(op) in ms for one device, fitted from op tables or whole networks.

`LatencyPredictor` is the estimator; `fit_device` fits and saves one from the measurement store,
`fit_networks` from whole-network timings, `validate_device` checks one on whole networks timed
end to end, and `predictors.lut` reads and writes the ProxylessNAS and once-for-all LUT formats.
"""

from predictors.fit import FitReport, fit_device, load_predictor, predictor_path
from predictors.lut import export_lut, import_lut, import_measurements, read_lut
from predictors.models import MODELS
from predictors.networks import fit_networks, load_network_samples
from predictors.predictor import LatencyPredictor, PredictorMismatchWarning
from predictors.validate import ValidationReport, validate_device

__all__ = [
    "MODELS",
    "FitReport",
    "LatencyPredictor",
    "PredictorMismatchWarning",
    "ValidationReport",
    "export_lut",
    "fit_device",
    "fit_networks",
    "import_lut",
    "import_measurements",
    "load_network_samples",
    "load_predictor",
    "predictor_path",
    "read_lut",
    "validate_device",
]
