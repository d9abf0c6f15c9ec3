"""``reparameterize``: the one deploy protocol. Every module that can become cheaper at inference has ``fuse()``.

Folding BatchNorm into the conv before it (and RepGhost's branches into one depthwise conv, arXiv 2211.06088 Sec. 3.3)
turns the training form into the deploy form: same function in eval mode, fewer kernels, no BatchNorm.
"""

from __future__ import annotations

import copy

from torch import nn


def _fuse_tree(module: nn.Module) -> nn.Module:
    for name, child in list(module.named_children()):
        fused = _fuse_tree(child)
        if fused is not child:
            setattr(module, name, fused)
    fuse = getattr(module, "fuse", None)
    return fuse() if callable(fuse) else module


def reparameterize(model: nn.Module) -> nn.Module:
    """Return a new model in deploy form (eval mode); ``model`` itself is left untouched.

    The tree is walked once, children before parents; ``fuse()`` may rebuild its module in place because it works on
    a deep copy. Raises ``TypeError`` if a BatchNorm is left that no ``fuse()`` knows how to fold.
    """
    deployed = _fuse_tree(copy.deepcopy(model).eval())
    left = [name for name, m in deployed.named_modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if left:
        more = "..." if len(left) > 5 else ""
        raise TypeError(f"reparameterize: no fuse() folds the BatchNorm layers {left[:5]}{more}; "
                        "give their parent module a fuse() method")
    if hasattr(deployed, "model_kwargs"):
        deployed.model_kwargs = {**deployed.model_kwargs, "deploy": True}
    return deployed
