"""Deploy: re-parameterize / fold BatchNorm, export to ONNX and OpenVINO, and prove each step equivalent."""

from .export import ExportError, ExportReport, export_model
from .reparameterize import reparameterize
from .verify import is_equivalent, max_output_difference, randomize_batchnorm

__all__ = ["ExportError", "ExportReport", "export_model", "is_equivalent", "max_output_difference",
           "randomize_batchnorm", "reparameterize"]
