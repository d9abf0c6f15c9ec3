"""The machine's limit, per layer: each layer's roofline lower bound against the time the runtime itself measures.

The roofline (Williams, Waterman and Patterson, CACM 2009): a kernel takes at least ``max(2 * MAdds / peak FLOP/s,
bytes / bandwidth)``, with the peaks of :class:`~ghostnets.measure.machine.MachineLimits`. A layer is a module path
of the deploy form; its kernels are the :func:`~ghostnets.measure.layers.profile_layers` rows of that module (a leaf
module's one row, or a container's ``<path>.<aten op>`` rows: residual add, Ghost concat, SE gate, DFC pooling), and
its bound is the sum of its kernels' bounds (for a one-kernel layer exactly the formula above). Bytes are
``profile_layers``' (inputs + weights read, output written once, float32), with one convention: **in-place activation
modules** (``LayerProfile.in_place`` rows of leaf modules, e.g. SE's ``ReLU(inplace=True)``) are taken as fused into
the conv that produced their input, as oneDNN and ONNX Runtime fuse them, and their bytes are left out of the bound;
in-place tensor ops outside modules (``add_``, ``mul_``) are counted, they read two tensors.

The measured time is the runtime's *own* per-node profile, averaged over the runs after ``warmup`` (taking turns in
blocks with an unprofiled session, whose median is the end-to-end latency; runtime/timing.py): OpenVINO's
``PERF_COUNT`` (``InferRequest.get_profiling_info()``: ``real_time`` per executed node; nodes fused into another are
``NOT_RUN``; docs.openvino.ai ``ov::ProfilingInfo``) or ONNX Runtime's ``SessionOptions.enable_profiling`` trace
(``Node`` events ``<name>_kernel_time``, ``dur`` in microseconds; onnxruntime.ai, "Profiling tools"). Each runtime
node is mapped to the module it came from through its name: the TorchScript ONNX exporter names a node
``/<scope>/.../<op>``, one scope per module whose ``forward`` ran, each the module's qualified name from its last
non-numeric atom on (``torch.onnx`` ``_setup_trace_module_map``: ``blocks.0.0`` stays ``blocks.0.0``,
``...ghost1.primary_conv.0`` becomes ``primary_conv.0``; a container its parent iterates, like ``blocks``, has no
scope); OpenVINO keeps the ONNX names as friendly names (with suffixes such as ``/WithoutBiases``), ONNX Runtime names
a fused node after its last output (``<node>_output_0_nchwc``), resolved here through the exported graph. Layout
conversions the runtimes insert (``Reorder``, ``ReorderInput``/``ReorderOutput``) and nodes of no layer go to one
``(unattributed)`` row.
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
from collections import defaultdict
from collections.abc import Collection
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from torch import nn

from .layers import ModelProfile, profile_layers
from .machine import FLOOR, MachineLimits, activation_bytes

RUNTIMES = ("openvino", "onnxruntime")
UNATTRIBUTED = "(unattributed)"
MODEL = "(model)"  # ops the model's own forward runs (e.g. the input's channels_last copy)
KINDS = ("conv 1x1", "depthwise", "dense kxk", "linear", "concat", "element-wise", "pooling", "other", UNATTRIBUTED)
NOTE = ("bound: sum over a layer's kernels of max(2 MAdds / peak FLOP/s, bytes / copy bandwidth); bytes: "
        "profile_layers' (inputs + weights read, output written, float32), in-place activation modules taken as fused "
        "into the conv before them (their bytes excluded). measured: the runtime's own per-node profile, mean of the "
        "runs after warm-up; 'fused' nodes were folded into another node, whose time they share. gap: end-to-end "
        "median / bound. Small activations stay in the caches, faster than the copy bandwidth: a layer can beat its "
        "bound. fused floor: the whole model's max(2 MAdds / peak, bytes / bandwidth) with bytes = " + FLOOR + ".")

_LAYOUT = {"Reorder", "ReorderInput", "ReorderOutput"}  # layout conversions the runtimes insert
_CONV_RUNTIME = {"Convolution", "GroupConvolution", "Deconvolution", "FullyConnected", "MatMul", "Conv", "FusedConv",
                 "NhwcFusedConv", "Gemm", "FusedGemm", "FusedMatMul", "ConvTranspose"}
_CONV_GRAPH = {"Conv", "ConvTranspose", "Gemm", "MatMul", "Convolution", "GroupConvolution", "FullyConnected"}
_POOL = {"AvgPool", "AveragePool", "MaxPool", "Pooling", "ReduceMean", "GlobalAveragePool", "GlobalMaxPool", "Reduce",
         "AdaptiveAvgPool2d", "AvgPool2d", "MaxPool2d", "AdaptiveMaxPool2d", "mean", "avg_pool2d", "max_pool2d",
         "adaptive_avg_pool2d", "_adaptive_avg_pool2d", "amax"}
_ELTWISE = {"Add", "Mul", "Multiply", "Subtract", "Sub", "Div", "Divide", "Eltwise", "Subgraph", "Sigmoid",
            "HardSigmoid", "HSigmoid", "HSwish", "HardSwish", "Relu", "Clamp", "Clip", "Swish", "Math", "Exp",
            "ReLU", "ReLU6", "Hardswish", "Hardsigmoid", "SiLU", "GELU", "Tanh", "BatchNorm2d", "BatchNorm1d",
            "add", "add_", "mul", "mul_", "sub", "div", "sigmoid", "sigmoid_", "hardsigmoid", "hardswish", "relu",
            "relu_", "clamp", "clamp_", "silu", "gelu", "tanh", "hardtanh", "hardtanh_", "where"}


def module_path(node_name: str, modules: Collection[str] | None = None) -> str | None:
    """The module path an ONNX node name ``/<scope>/.../<op>`` came from (``None``: a name with no scope).

    Each scope segment is a module's name from its last non-numeric atom on. A segment that starts with the previous
    one + ``.`` extends it (a Sequential child: ``blocks.0`` -> ``blocks.0.0``, ``primary_conv`` -> ``primary_conv.0``),
    any other is an attribute appended with ``.``. With ``modules`` (the model's ``named_modules`` names) each step
    must name a module: the first segment that names none ends the path (runtime suffixes such as OpenVINO's
    ``/Conv/WithoutBiases``), and a module under a container whose ``forward`` never ran is found by its suffix.
    """
    if not node_name.startswith("/"):
        return None
    segments = node_name.split("/")[1:]
    if modules is None:
        segments = segments[:-1]  # the last one is the op's name
    path = last = ""
    for seg in segments:
        candidates = [path[: len(path) - len(last)] + seg] if last and seg.startswith(last + ".") else []
        candidates.append(f"{path}.{seg}" if path else seg)
        if modules is None:
            nxt = candidates[0]
        else:
            nxt = next((c for c in candidates if c in modules), None)
            if nxt is None:  # an ancestor with no scope of its own (a container its parent iterated)
                prefix = f"{path}." if path else ""
                below = [m for m in modules if m.startswith(prefix) and m.endswith("." + seg)]
                if len(below) != 1:
                    break
                nxt = below[0]
        path, last = nxt, seg
    return path


@dataclass
class NodeTime:
    """One node of the runtime's compiled graph: its name and type, mean milliseconds per run, whether it ran, and
    the kernel that ran it where the runtime names one (OpenVINO's ``exec_type``, e.g. ``brgconv_avx512_1x1_I8``)."""

    name: str
    type: str
    ms: float
    executed: bool = True
    kernel: str = ""


@dataclass
class RooflineLayer:
    """One module path (or :data:`MODEL`, :data:`UNATTRIBUTED`): its bound against what the runtime measured."""

    name: str
    kind: str
    types: list[str]  # profile_layers row types; runtime node types for the unattributed row
    madds: int
    bytes: int  # in the bound (in-place activation modules excluded)
    bound_ms: float
    measured_ms: float = 0.0
    nodes: int = 0  # runtime nodes executed
    fused: int = 0  # runtime nodes fused into another (OpenVINO NOT_RUN)

    @property
    def ratio(self) -> float | None:
        """measured / bound (``None`` where the bound is 0)."""
        return self.measured_ms / self.bound_ms if self.bound_ms > 0 else None

    def as_dict(self) -> dict:
        return {"name": self.name, "kind": self.kind, "types": self.types, "madds": self.madds, "bytes": self.bytes,
                "bound_ms": self.bound_ms, "measured_ms": self.measured_ms, "ratio": self.ratio,
                "nodes": self.nodes, "fused": self.fused}


@dataclass
class RooflineReport:
    """Every layer, the same by kind, and the totals of one model on one runtime at one batch."""

    model: str
    runtime: str
    input_size: tuple[int, int]
    batch: int
    threads: int
    runs: int
    limits: MachineLimits
    layers: list[RooflineLayer]
    kind_measured_ms: dict[str, float]  # runtime node time by kind (a container's nodes split by their own type)
    kind_bound_ms: dict[str, float]
    end_to_end_ms: list[float] = field(default_factory=list)  # timed runs without profiling
    floor_bound_ms: float | None = None  # the whole model under machine.FLOOR bytes (every element-wise op fused)

    @property
    def bound_ms(self) -> float:
        return sum(r.bound_ms for r in self.layers)

    @property
    def measured_ms(self) -> float:
        return sum(r.measured_ms for r in self.layers)

    @property
    def end_to_end_median_ms(self) -> float:
        return statistics.median(self.end_to_end_ms)

    @property
    def gap(self) -> float:
        """End-to-end median / bound: how far the runtime is from the machine's limit."""
        return self.end_to_end_median_ms / self.bound_ms

    @property
    def floor_gap(self) -> float | None:
        """End-to-end median / the fused floor's bound."""
        return self.end_to_end_median_ms / self.floor_bound_ms if self.floor_bound_ms else None

    def by_kind(self) -> list[tuple[str, float, float, float]]:
        """``(kind, bound ms, measured ms, share of the measured time)`` in :data:`KINDS` order."""
        total = self.measured_ms or 1.0
        return [(k, self.kind_bound_ms.get(k, 0.0), self.kind_measured_ms.get(k, 0.0),
                 self.kind_measured_ms.get(k, 0.0) / total) for k in KINDS
                if k in self.kind_bound_ms or k in self.kind_measured_ms]

    def top(self, n: int) -> list[RooflineLayer]:
        return sorted(self.layers, key=lambda r: r.measured_ms, reverse=True)[:n]

    def as_dict(self, top: int | None = None) -> dict:
        return {"model": self.model, "runtime": self.runtime, "input_size": list(self.input_size),
                "batch": self.batch, "threads": self.threads, "runs": self.runs,
                "machine": {"threads": self.limits.threads, "gflops": self.limits.gflops,
                            "bandwidth_gbs": self.limits.bandwidth_gbs, "description": self.limits.describe()},
                "bound_ms": self.bound_ms, "measured_ms": self.measured_ms,
                "end_to_end_median_ms": self.end_to_end_median_ms, "gap": self.gap,
                "floor_bound_ms": self.floor_bound_ms, "floor_gap": self.floor_gap,
                "by_kind": [{"kind": k, "bound_ms": b, "measured_ms": m, "share": s} for k, b, m, s in self.by_kind()],
                "layers": [r.as_dict() for r in (self.top(top) if top else self.layers)]}


# ------------------------------------------------------------------------------------------ kinds of layers


def _op(row_type: str) -> str:
    return row_type.removeprefix("aten.")


def row_kind(row_type: str, module: nn.Module | None) -> str:
    """The kind of one ``profile_layers`` row: its module's conv geometry, else its type."""
    if isinstance(module, nn.Linear):
        return "linear"
    if isinstance(module, nn.modules.conv._ConvNd):
        if module.groups > 1 and module.groups == module.in_channels:
            return "depthwise"
        return "conv 1x1" if all(k == 1 for k in module.kernel_size) else "dense kxk"
    op = _op(row_type)
    if op == "cat":
        return "concat"
    if op in _POOL:
        return "pooling"
    return "element-wise" if op in _ELTWISE else "other"


def _node_kind(node_type: str) -> str:
    """The kind of a runtime node in a layer of several kinds (a container's ops), by the node's own type."""
    if node_type == "Concat":
        return "concat"
    if node_type in _POOL:
        return "pooling"
    return "element-wise" if node_type in _ELTWISE else "other"


# ------------------------------------------------------------------------------------------ runtime profiles


class _Graph:
    """The exported graph as ``name -> (op type, producers of its inputs)`` plus ``tensor name -> producer``."""

    def __init__(self) -> None:
        self.ops: dict[str, tuple[str, list[str]]] = {}
        self.producers: dict[str, str] = {}

    @classmethod
    def from_onnx(cls, path: Path) -> _Graph:
        import onnx

        graph = cls()
        nodes = onnx.load(str(path), load_external_data=False).graph.node
        for node in nodes:
            for out in node.output:
                graph.producers[out] = node.name
        for node in nodes:
            graph.ops[node.name] = (node.op_type, [graph.producers[i] for i in node.input if i in graph.producers])
        return graph

    @classmethod
    def from_openvino(cls, path: Path) -> _Graph:
        from ..runtime.sessions import openvino_core

        graph = cls()
        for op in openvino_core().read_model(str(path)).get_ordered_ops():
            name = op.get_friendly_name()
            for out in op.outputs():
                for tensor in out.get_names():
                    graph.producers[tensor] = name
            graph.ops[name] = (op.get_type_name(),
                               [i.get_source_output().get_node().get_friendly_name() for i in op.inputs()])
        return graph

    def resolve(self, runtime_name: str, runtime_type: str) -> str | None:
        """The graph node a runtime node stands for: its name or the longest prefix (cut at ``/`` or ``_``) that
        names a node or a tensor; a conv-like runtime node named after an activation fused into it: that conv."""
        name = runtime_name
        while name and name not in self.ops and name not in self.producers:
            cut = max(name.rfind("/"), name.rfind("_"))
            name = name[:cut] if cut > 0 else ""
        if not name:
            return None
        node = name if name in self.ops else self.producers[name]
        if runtime_type in _CONV_RUNTIME and self.ops[node][0] not in _CONV_GRAPH:
            frontier = [node]
            for _ in range(4):  # walk back through the element-wise ops the runtime fused into the conv
                frontier = [p for n in frontier for p in self.ops.get(n, ("", []))[1]]
                conv = next((n for n in frontier if self.ops.get(n, ("", []))[0] in _CONV_GRAPH), None)
                if conv is not None:
                    return conv
        return node

    def module_of(self, runtime_name: str, runtime_type: str, modules: Collection[str]) -> str | None:
        """The module a runtime node came from: its graph node's scope, else the module whose ``.weight`` it reads
        (OpenVINO names the node that writes a graph output after the output, losing its scope)."""
        node = self.resolve(runtime_name, runtime_type)
        if node is None:
            return None
        path = module_path(node, modules)
        if path is None:
            owners = [p.removesuffix(".weight") for p in self.ops[node][1] if p.endswith(".weight")]
            path = next((o for o in owners if o in modules), None)
        return path


class _OpenVinoProfiled:
    """An OpenVINO compiled model with ``PERF_COUNT`` on: each call runs one batch and keeps every node's
    ``real_time`` and status; :meth:`nodes` averages the calls after the first ``skip``."""

    def __init__(self, path: Path, x: np.ndarray, threads: int) -> None:
        from ..runtime.sessions import openvino_compiled, require

        self.ov = require("openvino", "the OpenVINO roofline")
        compiled = openvino_compiled(path, shape=tuple(x.shape), threads=threads, profiling=True)
        self.request, self.x = compiled.create_infer_request(), x
        self.calls: list[list[tuple[str, str, float, bool, str]]] = []

    def __call__(self) -> None:
        self.request.infer([self.x], share_inputs=True)
        executed = self.ov.ProfilingInfo.Status.EXECUTED
        self.calls.append([(i.node_name, i.node_type, i.real_time.total_seconds() * 1e3, i.status == executed,
                            i.exec_type) for i in self.request.get_profiling_info()])

    def nodes(self, skip: int) -> list[NodeTime]:
        kept = self.calls[skip:]
        nodes: dict[str, NodeTime] = {}
        for call in kept:
            for name, kind, ms, executed, kernel in call:
                node = nodes.setdefault(name, NodeTime(name, kind, 0.0, False))
                node.ms += ms / len(kept)
                if executed:
                    node.executed, node.kernel = True, kernel
        return list(nodes.values())


class _OnnxRuntimeProfiled:
    """An ONNX Runtime session with ``enable_profiling`` (``onnx_session``'s options otherwise): each call runs one
    batch; :meth:`nodes` ends the trace and averages each node's kernel time over the calls after the first
    ``skip``."""

    def __init__(self, path: Path, x: np.ndarray, threads: int, folder: Path) -> None:
        from ..runtime.sessions import require

        ort = require("onnxruntime", "the onnxruntime roofline")
        options = ort.SessionOptions()  # as runtime/sessions.py onnx_session, plus the profiler
        options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.enable_profiling, options.profile_file_prefix = True, str(folder / "ort-profile")
        self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        self.feed = {self.session.get_inputs()[0].name: x}

    def __call__(self) -> None:
        self.session.run(None, self.feed)

    def nodes(self, skip: int) -> list[NodeTime]:
        events = json.loads(Path(self.session.end_profiling()).read_text())
        durations: dict[str, list[float]] = defaultdict(list)
        types: dict[str, str] = {}
        for e in events:
            if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time"):
                name = e["name"].removesuffix("_kernel_time")
                durations[name].append(e["dur"] / 1e3)  # microseconds
                types[name] = e.get("args", {}).get("op_name", "")
        return [NodeTime(n, types[n], sum(d[skip:]) / max(len(d) - skip, 1)) for n, d in durations.items()]


def _profile(path: Path, runtime: str, x: np.ndarray, threads: int, runs: int, warmup: int, folder: Path) \
        -> tuple[list[NodeTime], list[float]]:
    """The runtime's per-node profile and the end-to-end milliseconds of a session without profiling, the two
    taking turns in blocks (:func:`~ghostnets.runtime.timing.time_interleaved`), so a shared machine's drift hits
    both alike."""
    from ..runtime.sessions import onnx_runner, openvino_runner
    from ..runtime.timing import time_interleaved

    if runtime == "openvino":
        profiled = _OpenVinoProfiled(path, x, threads)
        plain = openvino_runner(path, shape=tuple(x.shape), threads=threads)
    else:
        profiled = _OnnxRuntimeProfiled(path, x, threads, folder)
        plain = onnx_runner(path, threads, batch=len(x), stop_spinning=True)
    times = time_interleaved({"profiled": profiled, "plain": lambda: plain(x)}, runs, warmup)
    return profiled.nodes(skip=warmup), times["plain"]


# ------------------------------------------------------------------------------------------ the report


def _layer_of(row_name: str, row_type: str) -> str:
    name = re.sub(r"#\d+$", "", row_name)  # a module or op run twice in one forward
    if row_type.startswith("aten."):
        return name.rsplit(".", 1)[0] if "." in name else ""
    return name


@dataclass
class LayerBounds:
    """The layers of a profile with their bounds, before any runtime: module path -> layer, the kinds of each
    layer's kernels, and the bound by kind."""

    layers: dict[str, RooflineLayer]
    kinds: dict[str, set[str]]
    kind_bound_ms: dict[str, float]


def layer_bounds(profile: ModelProfile, model: nn.Module, limits: MachineLimits) -> LayerBounds:
    """Group ``profile``'s rows by module path and bound each row's kernel (in-place activation modules: fused, no
    bytes); ``model``: the profiled module, for the conv geometry of each row."""
    modules = dict(model.named_modules())
    layers: dict[str, RooflineLayer] = {}
    kinds: dict[str, set[str]] = defaultdict(set)
    kind_bound: dict[str, float] = defaultdict(float)
    for row in profile.layers:
        path = _layer_of(row.name, row.type)
        op_row = row.type.startswith("aten.")
        nbytes = 0 if row.in_place and not op_row else row.bytes_moved
        kind = row_kind(row.type, None if op_row else modules.get(path))
        bound = limits.bound_ms(row.madds, nbytes)
        layer = layers.setdefault(path, RooflineLayer(path or MODEL, kind, [], 0, 0, 0.0))
        if row.type not in layer.types:
            layer.types.append(row.type)
        layer.madds += row.madds
        layer.bytes += nbytes
        layer.bound_ms += bound
        kind_bound[kind] += bound
        kinds[path].add(kind)
    for path, found in kinds.items():
        if len(found) > 1:
            layers[path].kind = "mixed"
    return LayerBounds(layers, dict(kinds), dict(kind_bound))


def attribute(bounds: LayerBounds, nodes: list[NodeTime], graph: _Graph, modules: Collection[str]) \
        -> tuple[list[RooflineLayer], dict[str, float]]:
    """Add each runtime node's time to its layer (or to :data:`UNATTRIBUTED`): the layers, and the time by kind
    (a layer of several kinds splits its nodes by their own type)."""
    layers = bounds.layers
    other = RooflineLayer(UNATTRIBUTED, UNATTRIBUTED, [], 0, 0, 0.0)
    kind_measured: dict[str, float] = defaultdict(float)
    for node in nodes:
        target = None if node.type in _LAYOUT else graph.module_of(node.name, node.type, modules)
        layer = layers.get(target, other)
        if layer is other:
            kind = UNATTRIBUTED
            if node.type not in other.types:
                other.types.append(node.type)
        else:
            found = bounds.kinds[target]
            kind = next(iter(found)) if len(found) == 1 else _node_kind(node.type)
        layer.measured_ms += node.ms
        layer.nodes += node.executed
        layer.fused += not node.executed
        kind_measured[kind] += node.ms
    return [*layers.values()] + ([other] if other.nodes or other.fused else []), dict(kind_measured)


def roofline(model: nn.Module, input_size: int | tuple[int, int] = (224, 224), *, batch: int = 1, threads: int = 2,
             runtime: str = "openvino", runs: int = 20, warmup: int = 5,
             limits: MachineLimits | None = None) -> RooflineReport:
    """Export ``model``'s deploy form (verified), profile it on ``runtime`` at ``batch`` and set each layer's
    measured time beside its roofline bound under ``limits`` (default: :meth:`MachineLimits.measure` at
    ``threads``). The exported file lives in a temporary folder, removed at the end."""
    from ..record import in_chans_of, model_name
    from ..runtime.runtimes import RuntimeContext, deploy_form, export_for_runtime
    from ..runtime.sessions import RuntimeUnavailableError, require
    from ..transforms.shuffle_free import without_channel_shuffles


    if runtime not in RUNTIMES:
        raise RuntimeUnavailableError(f"unknown runtime {runtime!r} for the roofline; choose one of "
                                      f"{', '.join(RUNTIMES)}")
    require("onnx", f"the {runtime} roofline")
    require(runtime, f"the {runtime} roofline")
    for label, value, least in (("batch", batch, 1), ("threads", threads, 1), ("runs", runs, 1), ("warmup", warmup, 0)):
        if value < least:
            raise ValueError(f"{label} must be >= {least}, got {value}")
    size = (input_size, input_size) if isinstance(input_size, int) else tuple(input_size)
    deployed = without_channel_shuffles(deploy_form(model))  # the graph the runtimes get, so node names match layers
    in_chans = in_chans_of(deployed)
    limits = limits or MachineLimits.measure(threads)
    profile = profile_layers(deployed, size, in_chans=in_chans, batch=batch)
    bounds = layer_bounds(profile, deployed, limits)
    floor = limits.bound_ms(profile.madds, activation_bytes(deployed, size, in_chans, batch))
    x = np.random.default_rng(0).standard_normal((batch, in_chans, *size)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="ghostnets-roofline-") as tmp:
        fmt = "openvino" if runtime == "openvino" else "onnx"
        path = export_for_runtime(deployed, size, RuntimeContext(Path(tmp)), fmt)
        graph = _Graph.from_openvino(path) if runtime == "openvino" else _Graph.from_onnx(path)
        nodes, end_to_end = _profile(path, runtime, x, threads, runs, warmup, Path(tmp))
    layers, kind_measured = attribute(bounds, nodes, graph, {n for n, _ in deployed.named_modules()})
    return RooflineReport(model_name(deployed), runtime, size, batch, threads, runs, limits, layers, kind_measured,
                          bounds.kind_bound_ms, end_to_end, floor)
