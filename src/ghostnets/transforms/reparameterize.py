"""``reparameterize``: the one deploy protocol. Every module that can become cheaper at inference has ``fuse()``.

Folding BatchNorm into the conv before it (and RepGhost's branches into one depthwise conv, arXiv 2211.06088 Sec. 3.3)
turns the training form into the deploy form: same function in eval mode, fewer kernels, no BatchNorm.
"""

from __future__ import annotations

import copy
import warnings
from collections import Counter

from torch import fx, nn

from ..layers.conv_bn_act import absorbs_batchnorm, fold_bn, fuse_tree
from ..models.base import ClassifierNet
from ..models.features import FeatureListNet
from ..record import attach_record, record_of


class _ConvLeafTracer(fx.Tracer):
    """Traces down to convolutions and to modules that absorb a BatchNorm, which stay single call sites."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return absorbs_batchnorm(m) or super().is_leaf_module(m, qualname)


def _fold_traced_batchnorms(model: nn.Module) -> None:
    """Fold each BatchNorm whose input is a conv's (or Ghost module's) only output, in any model ``torch.fx`` traces
    (torchvision's ResNet/VGG/MobileNet, ghostified models, most user models). Raises if FX cannot trace it."""
    graph = _ConvLeafTracer().trace(model)
    calls = Counter(n.target for n in graph.nodes if n.op == "call_module")
    for node in graph.nodes:
        if node.op != "call_module" or not isinstance(model.get_submodule(node.target), nn.BatchNorm2d):
            continue
        source = node.args[0] if node.args else None
        if not (isinstance(source, fx.Node) and source.op == "call_module" and len(source.users) == 1
                and calls[source.target] == 1 and calls[node.target] == 1):
            continue
        producer = model.get_submodule(source.target)
        if absorbs_batchnorm(producer):
            model.set_submodule(source.target, fold_bn(producer, model.get_submodule(node.target)))
            model.set_submodule(node.target, nn.Identity())


def _batchnorms(model: nn.Module) -> list[str]:
    return [name for name, m in model.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]


def reparameterize(model: nn.Module) -> nn.Module:
    """Return a new model in deploy form (eval mode); ``model`` itself is left untouched.

    The tree is walked once, children before parents; ``fuse()`` may rebuild its module in place because it works on
    a deep copy. BatchNorms left after that (models without ``fuse()``: torchvision's, ghostified ones, your own) are
    folded into the conv that feeds them, found by tracing with ``torch.fx``. A BatchNorm that no conv feeds (a
    BN-ReLU-conv order, as in DenseNet) stays as it is, in eval mode the same per-channel affine, and a warning names
    it. ghostnets' own models end with none: one left there raises ``TypeError``.
    """
    deployed = fuse_tree(copy.deepcopy(model).eval())
    traced_error = ""
    if _batchnorms(deployed):  # modules without fuse(): torchvision models, ghostified models, user models
        try:
            _fold_traced_batchnorms(deployed)
        except Exception as e:  # FX cannot trace data-dependent control flow
            traced_error = f" (torch.fx could not trace the model to find conv -> BatchNorm pairs: {e})"
    left = _batchnorms(deployed)
    if left:
        shown = ", ".join(left[:5]) + (f", ... ({len(left) - 5} more)" if len(left) > 5 else "")
        if isinstance(deployed, (ClassifierNet, FeatureListNet)):
            raise TypeError(f"reparameterize: nothing folds the BatchNorm layers {shown} of a ghostnets model: they "
                            f"do not follow a convolution directly{traced_error}; give their parent module a fuse() "
                            "method")
        warnings.warn(f"reparameterize: {len(left)} BatchNorm layer(s) kept, as nothing feeds them a convolution to "
                      f"fold into (they come before their conv, or FX could not trace the model): {shown}"
                      f"{traced_error}", stacklevel=2)
    record = record_of(deployed)
    if record.name is not None:
        attach_record(deployed, record.updated(deploy=True))
    if hasattr(deployed, "deploy"):
        deployed.deploy = True
    return deployed
