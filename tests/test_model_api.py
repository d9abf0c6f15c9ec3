"""The timm model API every family shares (one classifier base), the model record, and two transforms' edge cases."""

from __future__ import annotations

import re
import warnings

import pytest
import torch
import torchvision
from torch import nn

import ghostnets
from conftest import randomize_bn
from ghostnets.models import ClassifierNet

ONE_PER_FAMILY = ["ghostnet_050", "ghostnetv2_100", "ghostnetv3_050", "repghostnet_050", "resnet56_cifar",
                  "vgg16_cifar", "resnet50"]


def _input(name: str, batch: int = 2) -> torch.Tensor:
    size = ghostnets.model_info(name).eval_transform.size
    return torch.randn(batch, 3, min(size, 64), min(size, 64), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_every_family_has_the_one_base(name):
    assert isinstance(ghostnets.create_model(name), ClassifierNet)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "resnet56_cifar", "vgg16_cifar"])
def test_grad_checkpointing_gives_the_same_gradients(name):
    """Stages recomputed in the backward pass: the same loss and gradients, drop path's random draws included."""
    kwargs = {} if name == "vgg16_cifar" else {"drop_path_rate": 0.2}
    model = randomize_bn(ghostnets.create_model(name, **kwargs)).train()
    x = _input(name)

    def grads(checkpointing: bool):
        model.zero_grad()
        model.set_grad_checkpointing(checkpointing)
        torch.manual_seed(3)
        loss = model(x).square().mean()
        loss.backward()
        return loss.detach(), {k: p.grad.clone() for k, p in model.named_parameters()}

    with torch.no_grad():
        saved = {k: v.clone() for k, v in model.state_dict().items()}
    plain_loss, plain = grads(False)
    model.load_state_dict(saved)  # BN running statistics moved: start the second pass from the same state
    ckpt_loss, checkpointed = grads(True)
    assert model.grad_checkpointing
    torch.testing.assert_close(ckpt_loss, plain_loss, rtol=1e-5, atol=1e-6)
    for key, grad in plain.items():
        torch.testing.assert_close(checkpointed[key], grad, rtol=1e-4, atol=1e-6, msg=key)


@pytest.mark.parametrize("name", ONE_PER_FAMILY)
def test_group_matcher_covers_every_parameter_in_stage_order(name):
    model = ghostnets.create_model(name)
    for coarse in (True, False):
        matcher = model.group_matcher(coarse=coarse)
        head = model.head_name
        for key, _ in model.named_parameters():
            if key.startswith(head + "."):
                continue
            hits = [g for g, pattern in matcher.items() if re.match(pattern, key)]
            assert len(hits) == 1, (key, hits)
    fine = model.group_matcher()["blocks"]
    ids = [tuple(map(int, re.match(fine, k).groups())) for k, _ in model.named_parameters()
           if re.match(fine, k)]
    assert ids == sorted(ids)  # parameters come stage by stage, block by block


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "repghostnet_050"])
def test_forward_intermediates_are_the_feature_maps(name):
    model = ghostnets.create_model(name).eval()
    features = ghostnets.create_model(name, features_only=True)
    features.load_state_dict(model.state_dict(), strict=False)
    x = _input(name)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        expected = features.eval()(x)
        assert [m.shape[1] for m in maps] == [f["num_chs"] for f in model.feature_info]
        for got, want in zip(maps, expected):
            torch.testing.assert_close(got, want)
        torch.testing.assert_close(final, model.forward_features(x))
        last_two = model.forward_intermediates(x, indices=2, intermediates_only=True)
        torch.testing.assert_close(last_two[0], expected[-2])
        early = model.forward_intermediates(x, indices=[1], stop_early=True)
        assert early[0].shape == expected[1].shape  # stopped at the stride-4 tap
    with pytest.raises(ValueError, match="indices must be taken from 0..4"):
        model.forward_intermediates(x, indices=[7])


@pytest.mark.parametrize("name", ["resnet56_cifar", "vgg16_cifar", "resnet50"])
def test_forward_intermediates_of_the_plain_nets(name):
    model = ghostnets.create_model(name).eval()
    x = _input(name, 1)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x)
        torch.testing.assert_close(final, model.forward_features(x))
    size = x.shape[-1]
    assert [(m.shape[1], size // m.shape[-1]) for m in maps] == [(f["num_chs"], f["reduction"])
                                                                 for f in model.feature_info]


def test_resnet50_intermediates_equal_torchvisions_stages():
    """torchvision's ResNet-50 with the same weights, run stage by stage: an independent build of every tap."""
    model = ghostnets.create_model("resnet50").eval()
    reference = torchvision.models.resnet50().eval()
    reference.load_state_dict(model.state_dict())
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = model.forward_intermediates(x, intermediates_only=True)
        y = reference.maxpool(reference.relu(reference.bn1(reference.conv1(x))))
        for stage, got in zip((reference.layer1, reference.layer2, reference.layer3, reference.layer4), maps):
            y = stage(y)
            assert (got - y).abs().max() <= 1e-5 * max(1.0, y.abs().max())  # float rounding of the layouts


def test_the_record_follows_the_model_through_reset_reparameterize_and_a_checkpoint(tmp_path):
    model = ghostnets.create_model("ghostnet_050", width=0.75)
    record = model.record
    assert (record.name, record.kwargs["width"], record.deploy, record.input.size) == ("ghostnet_050", 0.75, False, 224)
    model.reset_classifier(7)
    assert model.record.kwargs["num_classes"] == 7
    deployed = ghostnets.reparameterize(model)
    assert deployed.record.deploy and not model.record.deploy
    path = ghostnets.save_checkpoint(deployed, tmp_path / "m.safetensors", class_names=list("abcdefg"))
    rebuilt = ghostnets.create_model(checkpoint_path=path)
    assert rebuilt.record.name == "ghostnet_050" and rebuilt.record.deploy and rebuilt.deploy
    assert rebuilt.record.class_names == list("abcdefg") and rebuilt.num_classes == 7
    assert rebuilt.record.kwargs["width"] == 0.75
    assert not any(k in vars(rebuilt) for k in ("model_name", "model_kwargs", "class_names"))  # one record only


def test_ghostify_takes_a_name_or_says_what_it_takes():
    ghosted = ghostnets.ghostify("resnet56_cifar")
    assert ghosted.record.name == "resnet56_cifar" and ghosted.record.edits[0].op == "ghostify"
    assert ghosted.record.report.replaced
    from ghostnets.transforms import ghostify

    with pytest.raises(TypeError, match="ghostify takes an nn.Module, got str 'resnet50'.*takes a model name too"):
        ghostify("resnet50")


def test_densenet_batchnorms_before_their_convs_are_kept_and_named():
    """DenseNet runs BN-ReLU-conv: those BatchNorms have no conv before them to fold into; the rest fold."""
    model = randomize_bn(torchvision.models.densenet121(num_classes=10)).eval()
    ghosted = randomize_bn(ghostnets.ghostify(model, input_size=64)).eval()
    with pytest.warns(UserWarning, match=r"62 BatchNorm layer\(s\) kept.*denselayer1\.norm1"):
        deployed = ghostnets.reparameterize(ghosted)
    kept = {n for n, m in deployed.named_modules() if isinstance(m, nn.BatchNorm2d)}
    # by DenseNet-121's layout: norm1 of its 6 + 12 + 24 + 16 dense layers, its 3 transitions' norm and norm5 come
    # before their convs; norm0 and every norm2 follow one and fold, as do the Ghost modules' own BNs
    assert len(kept) == 58 + 3 + 1
    assert all(n.endswith(".norm1") or n.endswith(".norm") or n == "features.norm5" for n in kept)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(deployed(x), ghosted(x), rtol=1e-4, atol=1e-4)


def test_a_ghostnets_model_never_keeps_a_batchnorm():
    for name in ("ghostnet_050", "repghostnet_050", "resnet56_cifar"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            deployed = ghostnets.reparameterize(ghostnets.create_model(name))
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())


def test_files_written_by_ghostnets_0_1_still_load(tmp_path):
    """The layout the previous release wrote (the trainer's input among the caller's entries, the form repeated in
    kwargs), made here with safetensors directly rather than by save_checkpoint."""
    import json

    from safetensors.torch import save_file

    from ghostnets.data.transforms import FASHION_MNIST_INPUT

    model = randomize_bn(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1)).eval()
    tensors = {k: v.contiguous() for k, v in model.state_dict().items()}
    meta = {"epoch": "3", "recipe": "quick", "input": json.dumps(FASHION_MNIST_INPUT.as_dict()), "format": "ghostnets",
            "deploy": "false", "model": "ghostnet_050",
            "kwargs": json.dumps({"width": 0.5, "num_classes": 10, "in_chans": 1, "deploy": False}),
            "class_names": json.dumps([str(i) for i in range(10)])}
    save_file(tensors, str(tmp_path / "old.safetensors"), metadata=meta)
    loaded = ghostnets.create_model(checkpoint_path=tmp_path / "old.safetensors")
    assert loaded.record.input == FASHION_MNIST_INPUT and loaded.record.class_names == [str(i) for i in range(10)]
    assert ghostnets.read_metadata(tmp_path / "old.safetensors")["extra"] == {"epoch": "3", "recipe": "quick"}
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(loaded.eval()(x), model(x))

    ghosted = randomize_bn(ghostnets.ghostify("resnet56_cifar")).eval()
    deployed = ghostnets.reparameterize(ghosted)
    edits = [{"op": "ghostify", "args": {"ratio": 2, "dw_size": 3, "skip": ["first conv"], "keep_bn": True}}]
    meta = {"format": "ghostnets", "deploy": "true", "model": "resnet56_cifar", "edits": json.dumps(edits),
            "kwargs": json.dumps({"width": 1.0, "deploy": True})}
    save_file({k: v.contiguous() for k, v in deployed.state_dict().items()}, str(tmp_path / "g.safetensors"),
              metadata=meta)
    rebuilt = ghostnets.create_model(checkpoint_path=tmp_path / "g.safetensors")
    assert rebuilt.record.deploy and rebuilt.record.edits[0].op == "ghostify"
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), ghosted(x), rtol=1e-4, atol=1e-4)
