"""Every card's figures recomputed, the way torchvision checks its weights' metadata: params and MAdds counted on
the built model must equal the card exactly, and the card must equal an independent build (timm's ports of the
GhostNet families, torchvision's ResNet-50; the plug-and-play models' closed forms are in test_plug_and_play.py)."""

from __future__ import annotations

import pytest

import ghostnets

NAMES = ghostnets.list_models()
FAST = {"ghostnet_050", "ghostnetv2_100", "repghostnet_050", "resnet56_cifar", "ghost_vgg16_cifar_s2"}
SWEEP = [n if n in FAST else pytest.param(n, marks=pytest.mark.slow) for n in NAMES]


@pytest.mark.parametrize("name", SWEEP)
def test_card_params_and_madds_are_what_the_model_counts(name):
    card = ghostnets.model_info(name)
    model = ghostnets.create_model(name)
    assert ghostnets.count_params(model) == card.params
    assert ghostnets.count_madds(model, card.eval_transform.input_size[1:]) == card.madds


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in NAMES if n.startswith(("ghostnet", "repghostnet"))]
                         + ["resnet18", "resnet34", "resnet50"])
def test_card_matches_an_independent_build(name):
    card = ghostnets.model_info(name)
    if name.startswith("resnet"):
        import torchvision

        reference = getattr(torchvision.models, name)()
        assert list(ghostnets.create_model(name).state_dict()) == list(reference.state_dict())  # torchvision's keys
    else:
        timm = pytest.importorskip("timm")
        reference = timm.create_model(name)
    assert ghostnets.count_params(reference) == card.params
    assert ghostnets.count_madds(reference, (224, 224), in_chans=3) == card.madds
