"""The quantizers a quantization-aware run keeps off (``qat_float_layers``): those whose int8 rounding costs most.

Where a few tensors carry most of the quantization error, keeping them in float buys agreement for little time (the
issue's "keep the few worst layers in float"; NNCF's accuracy control does the same after training, by reverting
layers until a bar is met). Here the choice is made once, before training, on training images, never on the
held-out ones: the cost of a quantizer is how far the fake-quantized model's class distribution is from the float
model's, ``KL(float || int8)`` summed over the calibration images, and what disabling it alone would take off.

Two steps keep it cheap. A first-order (Taylor) estimate for every quantizer from one backward pass (as Molchanov et
al. rank units to prune, ICLR 2017, arXiv 1611.06440): with ``y`` the quantizer's input, ``q(y)`` its output and
``g = dKL/dq(y)``, disabling it changes the KL by about ``-<g, q(y) - y>``. Then the ``3 * count`` best estimates are
measured exactly (each disabled alone, the KL recomputed) and the ``count`` largest measured reductions are kept off.

A disabled NNCF quantizer is the identity in training and writes no QuantizeLinear/DequantizeLinear pair on export,
so the runtimes run what it fed in float; its ``enabled`` buffer is saved with the run and survives a resume.
"""

from __future__ import annotations

import re
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

_HOOK = re.compile(r"__nncf_hooks\.(pre|post)_hooks\.(.+)__(\d+)\.\d+$")


def _what(path: str, module: str) -> str:
    """What the quantizer at NNCF module ``path`` quantizes, inside the model's module ``module``: NNCF's own names
    (``pre_hooks.0/ghost1/cheap_operation/conv2d/3__1.0``) drop the outer scopes and count calls instead."""
    found = _HOOK.match(path)
    if found is None:
        return path
    kind, node, port = found.groups()
    op = node.split("/")[-2] if node.count("/") >= 1 else node
    where = module or "the model"
    if kind == "post":
        return f"output of {where} ({op})"
    return f"weight of {where}" if port == "1" else f"input of {where} ({op})"


def quantizers(model: nn.Module) -> list[nn.Module]:
    """``model``'s NNCF quantizers (weights and activations), in module order."""
    from nncf.torch.quantization.layers import BaseQuantizer

    return [m for m in model.modules() if isinstance(m, BaseQuantizer)]


def quantizer_names(model: nn.Module, x: torch.Tensor) -> dict[nn.Module, str]:
    """Each NNCF quantizer of ``model`` and what it quantizes, in the model's own module names (``output of
    blocks.3.0.ghost1.cheap_operation (relu)``, ``weight of blocks.1.0.conv_dw``): found by running ``x`` (one image
    does) with every module's name on a stack while the quantizers run."""
    from nncf.torch.quantization.layers import BaseQuantizer

    paths = {m: name for name, m in model.named_modules() if isinstance(m, BaseQuantizer)}
    stack: list[str] = []
    inside: dict[nn.Module, str] = {}

    # hooks return None: a forward pre-hook's value would replace the module's input, a forward hook's its output
    def enter(module: nn.Module, args: tuple, name: str) -> None:
        stack.append(name)

    def leave(module: nn.Module, args: tuple, output) -> None:
        stack.pop()

    def locate(quantizer: nn.Module, args: tuple) -> None:
        inside.setdefault(quantizer, stack[-1] if stack else "")

    hooks = []
    for name, m in model.named_modules():
        if isinstance(m, BaseQuantizer):
            hooks.append(m.register_forward_pre_hook(locate))
        elif name and "__nncf_hooks" not in name:
            hooks.append(m.register_forward_pre_hook(partial(enter, name=name)))
            hooks.append(m.register_forward_hook(leave))
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(x[:1].to(next(model.parameters()).device))
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return {q: _what(path, inside.get(q, "")) for q, path in paths.items()}


def disabled_quantizers(model: nn.Module, x: torch.Tensor) -> list[str]:
    """What ``model``'s switched-off quantizers quantize (:func:`quantizer_names`): what stays in float."""
    return [name for q, name in quantizer_names(model, x).items() if not q.is_enabled_quantization()]


def _kl_sum(model: nn.Module, reference: list[torch.Tensor], images: list[torch.Tensor]) -> torch.Tensor:
    total = torch.zeros(())
    for x, p in zip(images, reference):
        total = total + F.kl_div(F.log_softmax(model(x).float(), 1), p, log_target=True, reduction="sum")
    return total


def keep_in_float(quantized: nn.Module, deployed: nn.Module, images: list[torch.Tensor], count: int) -> list[str]:
    """Disable the ``count`` quantizers of ``quantized`` whose rounding costs most on ``images`` (batches; see the
    module's note) against the float ``deployed``; return what they quantize, costliest first."""
    if count <= 0:
        return []
    names = quantizer_names(quantized, images[0])
    was_training = quantized.training
    quantized.eval()
    with torch.no_grad():
        reference = [F.log_softmax(deployed(x).float(), 1) for x in images]
    estimate = dict.fromkeys(names, 0.0)
    for x, p in zip(images, reference):
        seen: dict[nn.Module, tuple[torch.Tensor, torch.Tensor]] = {}

        def note(quantizer: nn.Module, args: tuple, output: torch.Tensor, seen: dict = seen) -> None:
            if isinstance(output, torch.Tensor) and output.requires_grad and quantizer not in seen:
                output.retain_grad()
                seen[quantizer] = (args[0].detach(), output)

        hooks = [q.register_forward_hook(note) for q in names]
        try:
            with torch.enable_grad():  # also where the caller turned gradients off
                x = x.clone().requires_grad_(True)  # so every activation quantizer's output takes a gradient
                loss = F.kl_div(F.log_softmax(quantized(x).float(), 1), p, log_target=True, reduction="sum")
                loss.backward()
        finally:
            for hook in hooks:
                hook.remove()
        for quantizer, (y, out) in seen.items():
            if out.grad is not None:
                estimate[quantizer] += float((out.grad * (out.detach() - y)).sum())
        quantized.zero_grad(set_to_none=True)
    shortlist = sorted(names, key=lambda q: -estimate[q])[:3 * count]
    with torch.no_grad():
        base = float(_kl_sum(quantized, reference, images))
        measured = {}
        for quantizer in shortlist:
            quantizer.disable_quantization()
            measured[quantizer] = base - float(_kl_sum(quantized, reference, images))
            quantizer.enable_quantization()
    chosen = sorted(shortlist, key=lambda q: -measured[q])[:count]
    for quantizer in chosen:
        quantizer.disable_quantization()
    quantized.train(was_training)
    return [names[q] for q in chosen]
