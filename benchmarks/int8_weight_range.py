"""All-int8 post-training quantization at 224 px with full-range (8-bit) and half-range (7-bit) weights.

x86 int8 kernels without VNNI (AVX2) add pairs of u8 x s8 products in saturating int16, which full-range weights can
overflow (NNCF docs, ``OverflowFix``; onnxruntime's ``reduce_range``). This measures what that costs on this machine:
each model of benchmarks/trained_224.py is quantized without accuracy control, calibrated on 300 evenly spaced
training images, by NNCF for OpenVINO (``OverflowFix.DISABLE``, ghostnets' 8-bit weights; ``FIRST_LAYER``, NNCF's
default; ``ENABLE``, ghostnets' 7-bit weights) and by onnxruntime's ``quantize_static`` (``reduce_range`` False vs
True). It reports the top-1 agreement with float32 and both top-1s on all 2,000 held-out test images. Writes the
``int8_weight_range`` section of BENCHMARKS.md on a CPU without int8 dot products, ``int8_weight_range_vnni`` on one
with them (``ghostnets.runtime.quantize.default_weight_bits``).

    python benchmarks/int8_weight_range.py [--models ghostnet_100,...] [--threads 2] [--no-write]
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

import ghostnets
from ghostnets.data import FashionMNIST
from ghostnets.measure.machine import cpu_flags
from ghostnets.runtime.export import write_onnx_file
from ghostnets.runtime.quantize import INT8_DOT_PRODUCT_FLAGS, import_nncf, quiet_nncf
from ghostnets.runtime.sessions import on_own_thread, onnx_runner, openvino_runner
from trained_224 import checkpoint, data_file, trained

from common import command_line, environment, int8_section, write_section

CALIBRATION_IMAGES = 300


def cpu_has_vnni() -> str:
    found = sorted(cpu_flags() & INT8_DOT_PRODUCT_FLAGS)
    return ", ".join(found) if found else f"none (no {', '.join(sorted(INT8_DOT_PRODUCT_FLAGS))} in /proc/cpuinfo)"


def openvino_int8(float_onnx: Path, calib: torch.Tensor, fix: str, out: Path) -> Path:
    import openvino as ov

    nncf = import_nncf()
    from nncf.quantization.advanced_parameters import AdvancedQuantizationParameters, OverflowFix

    def quantize():
        with quiet_nncf():
            return nncf.quantize(ov.convert_model(str(float_onnx)), nncf.Dataset([b.numpy() for b in calib.split(1)]),
                                 preset=nncf.QuantizationPreset.MIXED, subset_size=len(calib),
                                 advanced_parameters=AdvancedQuantizationParameters(overflow_fix=OverflowFix(fix)))

    ov.save_model(on_own_thread(quantize), str(out), compress_to_fp16=False)
    return out


def onnxruntime_int8(float_onnx: Path, calib: torch.Tensor, reduce_range: bool, out: Path) -> Path:
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = out.with_name("prepared.onnx")
    if not prepared.exists():
        quant_pre_process(str(float_onnx), str(prepared))

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self.batches = iter(calib.split(1))

        def get_next(self):
            batch = next(self.batches, None)
            return None if batch is None else {"input": batch.numpy()}

    logging.getLogger().setLevel(logging.ERROR)  # quantize_static's advice goes to the root logger
    quantize_static(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
                    reduce_range=reduce_range, weight_type=QuantType.QInt8, activation_type=QuantType.QUInt8)
    return out


def measure(name: str, threads: int) -> list[str]:
    model = ghostnets.create_model(None, checkpoint_path=checkpoint(name)).eval()
    transform = model.record.input.transform()
    test, train = FashionMNIST("test", file=data_file()), FashionMNIST("train", file=data_file())
    picks = np.linspace(0, len(train) - 1, CALIBRATION_IMAGES).astype(int)
    calib = torch.stack([transform(train[int(i)][0]) for i in picks])
    x = torch.stack([transform(test[i][0]) for i in range(len(test))])
    labels = np.array([test[i][1] for i in range(len(test))])
    deployed = ghostnets.reparameterize(model).eval()
    with torch.inference_mode():
        reference = torch.cat([deployed(b) for b in x.split(50)]).argmax(1).numpy()
    float_top1 = 100 * float((reference == labels).mean())

    def row(runtime: str, weights: str, run) -> str:
        top1 = np.concatenate([run(x[i:i + 20].numpy()) for i in range(0, len(x), 20)]).argmax(1)
        agreement, int8_top1 = 100 * float((top1 == reference).mean()), 100 * float((top1 == labels).mean())
        line = f"| {name} | {runtime} | {weights} | **{agreement:.2f} %** | {float_top1:.2f} % | {int8_top1:.2f} % |"
        print(line, flush=True)
        return line

    rows = []
    with tempfile.TemporaryDirectory(prefix="int8-range-") as work:
        float_onnx = Path(work) / "float.onnx"
        write_onnx_file(deployed, x[:1], float_onnx, True, {})
        for fix, weights in (("disable", "8-bit (ghostnets, weight_bits=8)"),
                             ("first_layer_only", "8-bit (7-bit first conv; NNCF's default)"),
                             ("enable", "7-bit dense, 8-bit depthwise (ghostnets, weight_bits=7)")):
            path = openvino_int8(float_onnx, calib, fix, Path(work) / f"ov-{fix}.xml")
            rows.append(row("openvino", weights, openvino_runner(path, threads=threads)))
        for reduce_range, weights in ((False, "8-bit (onnxruntime's default; ghostnets, weight_bits=8)"),
                                      (True, "7-bit (ghostnets, weight_bits=7)")):
            path = onnxruntime_int8(float_onnx, calib, reduce_range, Path(work) / f"ort-{int(reduce_range)}.onnx")
            rows.append(row("onnxruntime", weights, onnx_runner(path, threads)))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", default="ghostnet_100")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    rows = ["| model | runtime | weights | agreement with float32 | float32 top-1 | int8 top-1 |",
            "|---|---|---|---|---|---|"]
    for name in trained(args.models):
        rows += measure(name, args.threads)
    body = ("## INT8 with full-range and half-range weights (all-int8 post-training quantization, 224 px)\n\n"
            f"Machine: {environment(args.threads)}. VNNI: {cpu_has_vnni()}.\n\nRegenerate: `{command_line()}`\n\n"
            f"All-int8 post-training quantization (no accuracy control), calibrated on {CALIBRATION_IMAGES} training "
            "images; agreement and top-1 on all 2,000 held-out test images.\n\n" + "\n".join(rows))
    print(body)
    if not args.no_write:
        write_section(int8_section("int8_weight_range"), body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
