"""Runtime: export the deploy form (ONNX, OpenVINO), quantize it (INT8), run it (one session factory, one registry
of runtimes) and time it (one harness)."""

from .export import ExportError, ExportReport, export_model
from .runtimes import RUNTIMES, RuntimeContext, build_runtime, check_runtimes, deploy_form
from .sessions import RuntimeUnavailableError, onnx_runner, onnx_session, openvino_compiled, openvino_runner
from .timing import measure, p90, summarize, time_interleaved

__all__ = ["RUNTIMES", "ExportError", "ExportReport", "RuntimeContext", "RuntimeUnavailableError", "build_runtime",
           "check_runtimes", "deploy_form", "export_model", "measure", "onnx_runner", "onnx_session",
           "openvino_compiled", "openvino_runner", "p90", "summarize", "time_interleaved"]
