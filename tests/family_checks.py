"""Checks every model family's tests make the same way (one copy, not one per family file)."""

from __future__ import annotations

import torch
from torch import nn

import ghostnets


def relative_error(a: torch.Tensor, b: torch.Tensor) -> float:
    """max |a - b| / max |b|."""
    return ((a - b).abs().max() / b.abs().max()).item()


def has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def assert_deploy_form(name: str, model: nn.Module, x: torch.Tensor, tol: float = 1e-4, **build_kwargs) -> nn.Module:
    """``reparameterize(model)`` (eval mode) folds every BatchNorm and computes what ``model`` does (relative error
    below ``tol``); ``create_model(name, deploy=True)`` has no BatchNorm either, loads the deployed state dict
    strictly and computes the same. Returns the deployed model."""
    deployed = ghostnets.reparameterize(model)
    assert not has_batchnorm(deployed)
    with torch.no_grad():
        assert relative_error(deployed(x), model(x)) < tol
    built = ghostnets.create_model(name, deploy=True, **build_kwargs).eval()
    assert not has_batchnorm(built)
    built.load_state_dict(deployed.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(built(x), deployed(x))
    return deployed
