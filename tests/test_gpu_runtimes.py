"""The GPU runtimes ``cuda`` and ``cuda-compile``: refused without a GPU (deterministically, by patching
``torch.cuda.is_available``), their copy-once rule (on a CPU buffer), and on a CUDA machine the same logits as eager."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

import ghostnets
import ghostnets.runtime.runtimes as runtimes
from ghostnets.cli import main
from ghostnets.runtime import RuntimeUnavailableError, build_runtime, check_runtimes, deploy_form
from ghostnets.transforms import randomize_batchnorm


@pytest.mark.parametrize("name", ["cuda", "cuda-compile"])
def test_without_a_gpu_the_cuda_runtimes_are_refused_before_any_work(monkeypatch, name):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    expected = (f"runtime {name} needs a CUDA GPU; torch.cuda.is_available() is False on this machine; measure on a "
                f"machine with one, e.g. `ghostnets blocks measure --target gpu-box --runtimes {name}` there")
    with pytest.raises(RuntimeUnavailableError) as info:
        check_runtimes(["eager", name])
    assert str(info.value) == expected
    # before any work: build_runtime refuses before prepare ever looks at the model (None would fail there)
    with pytest.raises(RuntimeUnavailableError, match="needs a CUDA GPU"):
        build_runtime(name, None, (1, 3, 8, 8), threads=1)
    assert [r.name for r in check_runtimes(["eager", "compile"])] == ["eager", "compile"]  # the CPU ones still run


def test_the_bench_command_refuses_cuda_without_a_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    out = tmp_path / "r.csv"
    assert main(["bench", "ghostnet_050", "--runtimes", "eager,cuda", "--out", str(out)]) == 2
    assert "runtime cuda needs a CUDA GPU" in capsys.readouterr().err and not out.exists()


def test_cuda_compile_without_triton_names_the_package(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    real = runtimes.importlib.util.find_spec
    monkeypatch.setattr(runtimes.importlib.util, "find_spec", lambda n, *a: None if n == "triton" else real(n, *a))
    with pytest.raises(RuntimeUnavailableError, match="cuda-compile needs the package triton"):
        check_runtimes(["cuda-compile"])
    assert [r.name for r in check_runtimes(["cuda"])] == ["cuda"]  # eager on the GPU needs no Triton


class _SumPerImage(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.sum(dim=(1, 2, 3)).unsqueeze(1)


def test_the_batch_is_copied_to_the_device_buffer_only_when_it_is_new():
    """CudaRunner's rule on a CPU buffer: the same unchanged array runs on the resident copy, a new one is copied."""
    runner = runtimes.CudaRunner(_SumPerImage(), (2, 1, 2, 2), channels_last=True, device="cpu")
    assert runner.buffer.is_contiguous(memory_format=torch.channels_last)
    x = np.arange(8, dtype=np.float32).reshape(2, 1, 2, 2)
    # image 0 holds 0..3: 0+1+2+3 = 6; image 1 holds 4..7: 4+5+6+7 = 22
    np.testing.assert_array_equal(runner(x), [[6.0], [22.0]])
    np.testing.assert_array_equal(runner(x), [[6.0], [22.0]])
    assert runner.copies == 1  # the second call ran on the resident copy
    y = np.ones((2, 1, 2, 2), dtype=np.float32)  # a new array: copied; each image sums four ones = 4
    np.testing.assert_array_equal(runner(y), [[4.0], [4.0]])
    assert runner.copies == 2
    y[...] = 2.0  # changed in place where the sample looks: copied again; 4 * 2 = 8
    np.testing.assert_array_equal(runner(y), [[8.0], [8.0]])
    assert runner.copies == 3
    with pytest.raises(ValueError, match=r"loaded for batches of shape \(2, 1, 2, 2\), not \(1, 1, 2, 2\)"):
        runner(np.zeros((1, 1, 2, 2), dtype=np.float32))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("name", ["cuda", "cuda-compile"])
def test_on_a_gpu_the_cuda_runtimes_give_eagers_logits(monkeypatch, name):
    monkeypatch.setattr(torch.backends.cudnn, "allow_tf32", False)  # compare float32 with float32, not TF32
    model = ghostnets.create_model("ghostnet_050", num_classes=10)
    randomize_batchnorm(model, seed=0)
    model = deploy_form(model)
    x = torch.randn(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)).numpy()
    with torch.inference_mode():
        reference = model(torch.from_numpy(x)).numpy()
    fn = build_runtime(name, model, x.shape, threads=1)
    out = fn(x)
    assert out.shape == (2, 10) and isinstance(out, np.ndarray)
    assert np.abs(out - reference).max() <= 1e-4 * max(1.0, np.abs(reference).max())
    np.testing.assert_array_equal(fn(x), out)  # the resident copy gives the same logits again
    assert next(model.parameters()).device.type == "cpu"  # the reference model stayed on the CPU
