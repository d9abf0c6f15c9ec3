"""``ghostnets.measure.roofline`` and ``ghostnets profile --roofline``: ONNX scope names back to module paths (checked
against the weight each conv reads), bounds by hand, and a tiny model through the runtimes' own profilers."""

from __future__ import annotations

import json
import warnings

import pytest
import torch
from torch import nn

from ghostnets.cli import main
from ghostnets.counting import count_madds
from ghostnets.measure import profile_layers
from ghostnets.measure.machine import MachineLimits
from ghostnets.measure.roofline import UNATTRIBUTED, _OpenVinoProfiled, layer_bounds, module_path, roofline
from ghostnets.registry import build_model
from ghostnets.runtime.export import write_onnx_file
from ghostnets.runtime.runtimes import deploy_form

F32 = 4
LIMITS = MachineLimits(threads=2, gflops=10.0, bandwidth_gbs=5.0)


class Inner(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(4, 4, 1), nn.ReLU(), nn.Sequential(nn.Conv2d(4, 4, 3, padding=1,
                                                                                         groups=4)))
        self.proj = nn.Conv2d(4, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(self.body(x)) + x


class Nested(nn.Module):
    """Sequentials in Sequentials, a Sequential and a ModuleDict the forward iterates (their own forward never runs,
    so they leave no ONNX scope), attributes at every depth."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Conv2d(3, 4, 3, padding=1)
        self.stages = nn.Sequential(nn.Sequential(Inner(), Inner()), nn.Sequential(Inner()))
        self.heads = nn.ModuleDict({"first": nn.Conv2d(4, 4, 1), "second": nn.Conv2d(4, 4, 1)})

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for stage in self.stages:
            x = stage(x)
        for head in self.heads.values():
            x = head(x)
        return x


def _onnx_nodes(model: nn.Module, tmp_path, size: int = 8):
    onnx = pytest.importorskip("onnx")
    path = tmp_path / "nested.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # export_model's settings: the TorchScript exporter, opset 17
        torch.onnx.export(model.eval(), (torch.zeros(1, 3, size, size),), str(path), opset_version=17, dynamo=False)
    return onnx.load(str(path)).graph.node


def test_module_path_from_a_real_export(tmp_path):
    model = Nested()
    modules = {n for n, _ in model.named_modules()}
    convs = {n for n, m in model.named_modules() if isinstance(m, nn.Conv2d)}
    nodes = _onnx_nodes(model, tmp_path)
    found = set()
    for node in (n for n in nodes if n.op_type == "Conv"):
        owner = next(i for i in node.input if i.endswith(".weight")).removesuffix(".weight")  # the truth
        assert module_path(node.name, modules) == owner, node.name
        found.add(owner)
    assert found == convs and "stages.1.0.body.2.0" in found and "heads.second" in found
    adds = sorted(module_path(n.name, modules) for n in nodes if n.op_type == "Add")
    assert adds == ["stages.0.0", "stages.0.1", "stages.1.0"]  # the residual add: the module whose forward ran it
    relu = next(n.name for n in nodes if n.op_type == "Relu")
    assert module_path(relu, modules) == "stages.0.0.body.1"
    # without the module names: the syntactic rule, right wherever every container left a scope
    assert module_path(relu) == "stages.0.0.body.1"
    assert module_path("/heads/first/Conv") == "heads.first"  # (no module list: cannot know ``heads`` ran no forward)
    assert module_path("Identity_3") is None and module_path("/conv_stem/Conv/WithoutBiases", {"conv_stem"}) == \
        "conv_stem"


@pytest.mark.slow
def test_module_path_of_every_ghostnetv2_conv(tmp_path):
    """GhostNetV2's deploy form: blocks iterated by the model (no ``blocks`` scope), DFC's Sequential, SE."""
    model = deploy_form(build_model("ghostnetv2_100"))
    modules = {n for n, _ in model.named_modules()}
    nodes = _onnx_nodes(model, tmp_path, size=32)
    convs = [n for n in nodes if n.op_type in ("Conv", "Gemm")]
    owners = [next(i for i in n.input if i.endswith(".weight")).removesuffix(".weight") for n in convs]
    assert [module_path(n.name, modules) for n in convs] == owners
    assert len(owners) == sum(isinstance(m, (nn.Conv2d, nn.Linear)) for m in model.modules())
    assert "blocks.2.0.ghost1.short_conv.4" in owners  # DFC's last depthwise conv


def test_bound_of_a_layer_by_hand():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, stride=2, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 1))
    batch = 2
    bounds = layer_bounds(profile_layers(model, (32, 32), batch=batch), model, LIMITS)
    conv = bounds.layers["0"]
    madds = batch * 8 * 16 * 16 * 3 * 3 * 3
    nbytes = (batch * 3 * 32 * 32 + 8 * 27 + 8 + batch * 8 * 16 * 16) * F32  # input + weight + bias read, output
    assert (conv.madds, conv.bytes, conv.kind) == (madds, nbytes, "dense kxk")
    assert conv.bound_ms == pytest.approx(max(2 * madds / 10e9, nbytes / 5e9) * 1e3)
    assert 2 * madds / 10e9 > nbytes / 5e9  # this one is compute-bound; the 1x1 below is memory-bound
    relu = bounds.layers["1"]  # in place: taken as fused into the conv before it, no bytes
    assert (relu.bytes, relu.bound_ms, relu.kind) == (0, 0.0, "element-wise")
    pointwise = bounds.layers["2"]
    pw_bytes = (2 * batch * 8 * 16 * 16 + 64 + 8) * F32
    assert pointwise.kind == "conv 1x1" and pointwise.bound_ms == pytest.approx(pw_bytes / 5e9 * 1e3)
    assert sum(bounds.kind_bound_ms.values()) == pytest.approx(sum(r.bound_ms for r in bounds.layers.values()))


class SELike(nn.Module):
    """A conv with its activation as a separate module (ONNX Runtime names the fused node after the ReLU), a concat
    and an add outside modules."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.act = nn.ReLU(inplace=True)
        self.cheap = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.fc = nn.Conv2d(16, 16, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.act(self.conv(x))
        z = torch.cat([y, self.cheap(y)], 1)
        return self.fc(z) + z


@pytest.mark.runtimes
@pytest.mark.parametrize("runtime", ["openvino", "onnxruntime"])
def test_tiny_model_through_the_runtime(runtime):
    pytest.importorskip(runtime)
    model = SELike().eval()
    report = roofline(model, (32, 32), batch=2, runtime=runtime, runs=3, warmup=1, limits=LIMITS)
    layers = {r.name: r for r in report.layers}
    assert all(r.measured_ms >= 0 for r in report.layers)
    for conv in ("conv", "cheap", "fc"):  # every conv is attributed to its own module
        assert layers[conv].nodes + layers[conv].fused >= 1, (conv, layers)
    assert layers["act"].nodes == 0  # fused into the conv before it
    assert layers["(model)"].types == ["aten.cat", "aten.add"]
    deployed = deploy_form(model)
    assert sum(r.madds for r in report.layers) == count_madds(deployed, (32, 32)) * 2
    assert report.measured_ms == pytest.approx(sum(report.kind_measured_ms.values()))
    assert report.bound_ms == pytest.approx(sum(report.kind_bound_ms.values())) and report.bound_ms > 0
    assert sum(s for *_, s in report.by_kind()) == pytest.approx(1.0)
    assert len(report.end_to_end_ms) == 3 and report.gap > 0
    assert all(r.name == UNATTRIBUTED or r.bound_ms >= 0 for r in report.layers)


@pytest.mark.runtimes
def test_openvino_profile_names_the_kernel_each_node_ran(tmp_path):
    """The per-node profile keeps OpenVINO's exec_type (int8_by_kind.py reads it): a float32 file's convolutions
    run float32 kernels, and a node that did not run names none."""
    pytest.importorskip("openvino")
    x = torch.randn(1, 3, 32, 32)
    write_onnx_file(deploy_form(SELike().eval()), x, tmp_path / "m.onnx", False, {})
    profiled = _OpenVinoProfiled(tmp_path / "m.onnx", x.numpy(), 1)
    profiled(), profiled()
    nodes = profiled.nodes(skip=1)
    convs = [n for n in nodes if n.executed and n.type in ("Convolution", "GroupConvolution")]
    assert len(convs) == 3, nodes
    assert all("f32" in n.kernel.lower() for n in convs), [n.kernel for n in convs]
    assert all(n.kernel == "" for n in nodes if not n.executed)


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="choose one of openvino, onnxruntime"):
        roofline(SELike(), (32, 32), runtime="tensorrt", limits=LIMITS)
    with pytest.raises(ValueError, match="batch must be >= 1"):
        roofline(SELike(), (32, 32), batch=0, limits=LIMITS)


@pytest.mark.runtimes
@pytest.mark.slow
def test_cli_roofline(capsys, monkeypatch):
    pytest.importorskip("openvino")
    import ghostnets.measure.roofline as module

    made, real = [], module.roofline

    def once(*args, **kwargs):  # measure once; the second format prints the same report
        if not made:
            made.append(real(*args, **kwargs))
        return made[0]

    monkeypatch.setattr(module, "roofline", once)
    args = ["profile", "ghostnet_050", "--input-size", "32", "32", "--roofline", "--runs", "2",
            "--peak-gflops", "100", "--bandwidth-gbs", "10", "--top", "5"]
    assert main(args + ["--format", "json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["runtime"] == "openvino" and data["batch"] == 1 and len(data["layers"]) == 5
    assert data["machine"]["gflops"] == 100 and data["bound_ms"] > 0 and data["gap"] > 0
    measured = [r["measured_ms"] for r in data["layers"]]
    assert measured == sorted(measured, reverse=True)  # the top layers by measured time
    assert {k["kind"] for k in data["by_kind"]} >= {"conv 1x1", "depthwise", "concat"}
    assert main(args + ["--format", "markdown"]) == 0  # the same report (measured once), as markdown
    out = capsys.readouterr().out
    assert "### where the time goes, by kind" in out and "gap: end-to-end / bound" in out
    assert "given by --peak-gflops / --bandwidth-gbs" in out


@pytest.mark.parametrize("extra, message", [
    (["--batch", "0"], "--batch must be >= 1"),
    (["--peak-gflops", "100"], "pass both --peak-gflops and --bandwidth-gbs"),
    (["--peak-gflops", "0", "--bandwidth-gbs", "1"], "must be > 0"),
])
def test_cli_refuses_bad_input(capsys, extra, message):
    assert main(["profile", "ghostnet_050", "--roofline", *extra]) == 2
    assert message in capsys.readouterr().err


def test_cli_refuses_unknown_runtime(capsys):
    with pytest.raises(SystemExit):
        main(["profile", "ghostnet_050", "--roofline", "--runtime", "tensorrt"])
    assert "invalid choice: 'tensorrt'" in capsys.readouterr().err


def test_cli_names_a_missing_runtime(capsys, monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    assert main(["profile", "ghostnet_050", "--roofline", "--runtime", "onnxruntime"]) == 2
    assert "needs the package 'onnxruntime'" in capsys.readouterr().err
