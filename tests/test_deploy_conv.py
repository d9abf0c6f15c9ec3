"""DeployConv2d: the packed-weight oneDNN path must equal F.conv2d, and must step aside wherever it cannot apply."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile

import ghostnets
from ghostnets.layers.deploy_conv import DeployConv2d, plain_convolutions

CASES = [  # in, out, kernel, stride, groups
    (16, 8, 1, 1, 1),
    (24, 24, 3, 1, 24),
    (48, 48, 5, 2, 48),
    (12, 12, (1, 5), 1, 12),
    (20, 36, 3, 2, 1),
]


def _conv(cin, cout, k, s, g, fused_act):
    pad = tuple(x // 2 for x in k) if isinstance(k, tuple) else k // 2
    conv = DeployConv2d(cin, cout, k, s, pad, groups=g, bias=True, fused_act=fused_act)
    with torch.no_grad():
        conv.bias.uniform_(-1, 1)
    return conv


def _reference(conv, x):
    y = F.conv2d(x, conv.weight, conv.bias, conv.stride, conv.padding, conv.dilation, conv.groups)
    return {None: y, "relu": F.relu(y), "sigmoid": torch.sigmoid(y)}[conv.fused_act]


def _ran_packed(fn) -> bool:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return any("_convolution_pointwise" in e.key for e in prof.key_averages())


@pytest.mark.parametrize("fused_act", [None, "relu", "sigmoid"])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("channels_last", [False, True])
def test_fast_path_equals_conv2d(case, fused_act, channels_last):
    conv = _conv(*case, fused_act)
    for shape in [(1, case[0], 28, 28), (3, case[0], 17, 30)]:  # one packed weight serves every input size
        x = torch.randn(shape)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with torch.no_grad():
            fast = conv(x)
            expected = _reference(conv, x)
        assert fast.shape == expected.shape
        assert (fast - expected).abs().max().item() <= 1e-5 * max(1.0, expected.abs().max().item())
        if fused_act:
            assert fast.min().item() >= 0


def test_fast_path_is_taken_only_for_inference():
    conv = _conv(16, 8, 3, 1, 1, "relu")
    x = torch.randn(1, 16, 20, 20)
    with torch.no_grad():
        assert _ran_packed(lambda: conv(x))
    with torch.inference_mode():
        assert _ran_packed(lambda: conv(x))
    assert not _ran_packed(lambda: conv(x))  # grad enabled and weights require grad: autograd must see conv2d
    with torch.no_grad(), plain_convolutions():
        assert not _ran_packed(lambda: conv(x))
    y = conv(x)
    y.sum().backward()  # gradients flow through the plain path
    assert conv.weight.grad is not None and conv.weight.grad.abs().sum() > 0


def test_packed_weight_follows_weight_updates():
    conv = _conv(8, 8, 3, 1, 8, None)
    x = torch.randn(1, 8, 16, 16)
    with torch.no_grad():
        before = conv(x)
        conv.load_state_dict({"weight": conv.weight * 2, "bias": conv.bias})  # in-place copy: same storage
        after = conv(x)
        expected = _reference(conv, x)
    assert not torch.allclose(before, after)
    assert torch.allclose(after, expected, atol=1e-5)


def test_deploy_model_survives_deepcopy_and_pickle_after_use():
    model = ghostnets.create_model("repghostnet_050", deploy=True).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        y = model(x)  # fills the packed-weight caches
        for clone in (copy.deepcopy(model), pickle.loads(pickle.dumps(model))):
            assert torch.equal(clone(x), y)


def test_deploy_model_fast_and_plain_agree_and_train_by_autograd():
    train = ghostnets.create_model("ghostnetv2_100").eval()
    deploy = ghostnets.reparameterize(train)
    fused = [m.fused_act for m in deploy.modules() if isinstance(m, DeployConv2d)]
    assert "relu" in fused and "sigmoid" in fused
    x = torch.randn(2, 3, 96, 128)
    with torch.no_grad():
        fast = deploy(x)
        with plain_convolutions():
            plain = deploy(x)
    assert (fast - plain).abs().max().item() <= 1e-5 * max(1.0, plain.abs().max().item())
    deploy.train()
    deploy(x).logsumexp(1).sum().backward()  # a deploy model can still be fine-tuned
    assert deploy.conv_stem.weight.grad is not None


def test_channels_last_is_the_default_and_optional():
    model = ghostnets.create_model("ghostnet_050").eval()
    assert model.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    plain = ghostnets.create_model("ghostnet_050", channels_last=False).eval()
    plain.load_state_dict(model.state_dict())
    assert plain.conv_stem.weight.is_contiguous()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert (model(x) - plain(x)).abs().max().item() < 1e-4
        assert model.forward_features(x).is_contiguous(memory_format=torch.channels_last)
    assert not ghostnets.reparameterize(plain).channels_last  # the deploy form keeps the model's choice


def test_unknown_fused_activation_is_refused():
    with pytest.raises(ValueError, match="fused_act"):
        DeployConv2d(4, 4, 3, fused_act="gelu")


def test_frozen_weights_trainable_bias_still_get_gradients():
    conv = _conv(8, 8, 3, 1, 1, "relu")
    conv.weight.requires_grad_(False)  # BitFit-style: only biases train
    conv(torch.randn(2, 8, 16, 16)).sum().backward()
    assert conv.bias.grad is not None and conv.bias.grad.abs().sum() > 0


def test_packed_weight_is_not_reused_after_the_weight_is_replaced():
    conv = _conv(64, 64, 1, 1, 1, None)
    x = torch.randn(1, 64, 8, 8)
    with torch.no_grad():
        conv(x)
        conv.weight.data = torch.zeros(64, 64, 1, 1)  # same Parameter, new storage
        assert torch.allclose(conv(x), conv.bias.view(1, -1, 1, 1).expand(1, 64, 8, 8))
        conv.half().float()  # round-trips through another dtype: values change slightly, the pack must follow
        assert torch.allclose(conv(x), _reference(conv, x), atol=1e-6)


def test_autocast_is_left_to_plain_convolutions():
    model = ghostnets.create_model("repghostnet_050", deploy=True).eval()
    with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16):
        assert model(torch.randn(1, 3, 64, 64)).dtype == torch.bfloat16


def test_count_madds_counts_deploy_convs_in_any_dtype():
    deploy = ghostnets.create_model("ghostnet_050", deploy=True)
    expected = ghostnets.count_madds(ghostnets.create_model("ghostnet_050"), 224)
    assert ghostnets.count_madds(deploy) == expected
    assert ghostnets.count_madds(deploy.to(torch.bfloat16), 224) == expected


def test_function_modes_see_conv2d():
    """A TorchFunctionMode (NNCF's quantizer hooks are one) must see every deploy conv as a conv2d call: the packed
    path would hide it (NNCF then quantized no conv weights of a deploy model)."""
    from torch.overrides import TorchFunctionMode

    class Calls(TorchFunctionMode):
        def __init__(self) -> None:
            super().__init__()
            self.conv2d = 0

        def __torch_function__(self, func, types, args=(), kwargs=None):
            self.conv2d += func is F.conv2d
            return func(*args, **(kwargs or {}))

    model = ghostnets.create_model("ghostnet_050", num_classes=10, deploy=True).eval()
    deploy_convs = sum(isinstance(m, DeployConv2d) for m in model.modules())
    convs = sum(isinstance(m, torch.nn.Conv2d) for m in model.modules())  # DeployConv2d and the plain ones
    x = torch.randn(1, 3, 32, 32)
    with torch.no_grad():
        assert _ran_packed(lambda: model(x))  # outside a mode the fast path runs
        with Calls() as calls:
            assert not _ran_packed(lambda: model(x))
    assert deploy_convs > 20 and calls.conv2d == convs
