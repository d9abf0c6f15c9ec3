"""BlockNet, the block evaluation's skeleton: the default card recomputed from torchvision's own MobileNetV2 block
(same keys, same logits), any registered block in it, deploy form equal to the training form, errors that name the
stage and block."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torchvision.models.mobilenetv2 import InvertedResidual as TorchvisionInvertedResidual

import ghostnets
from conftest import randomize_bn


class TorchvisionBlockNet(nn.Module):
    """The default BlockNet (stem 3x3 1->16, MobileNetV2 blocks t=6 at depths 1,2,2,1, widths 16,24,32,64, strides
    1,2,2,2, pool, linear to 10) from torchvision's blocks, with BlockNet's attribute names."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU(inplace=True))
        stages, in_chs = [], 16
        for depth, width, stride in zip((1, 2, 2, 1), (16, 24, 32, 64), (1, 2, 2, 2)):
            blocks = []
            for j in range(depth):
                blocks.append(TorchvisionInvertedResidual(in_chs, width, stride if j == 0 else 1, expand_ratio=6))
                in_chs = width
            stages.append(nn.Sequential(*blocks))
        self.blocks = nn.ModuleList(stages)
        self.classifier = nn.Linear(64, 10)

    def forward(self, x):
        x = self.stem(x)
        for stage in self.blocks:
            x = stage(x)
        return self.classifier(x.mean((2, 3)))


def test_default_card_is_torchvisions_blocks_counted():
    reference = TorchvisionBlockNet()
    card = ghostnets.model_info("blocknet")
    assert ghostnets.count_params(reference) == card.params == 65_050
    assert ghostnets.count_madds(reference, (32, 32), in_chans=1) == card.madds


def test_default_blocknet_gives_torchvisions_logits():
    ours = randomize_bn(ghostnets.create_model("blocknet", channels_last=False)).eval()
    reference = TorchvisionBlockNet().eval()
    reference.load_state_dict(ours.state_dict())  # strict: the same keys and shapes
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), reference(x), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("block", ["ghost", "repghost", "shufflev2", "eca", "edgenext_conv"])
def test_any_block_deploys_to_the_same_function(block):
    model = ghostnets.create_model("blocknet", block=block, depths=[1, 2, 1, 1], widths=[64, 64, 128, 128],
                                   kernel_sizes=[3, 3, 3, 3])
    model = randomize_bn(model).eval()
    x = torch.randn(2, 1, 32, 32)
    with torch.no_grad():
        out = model(x)
        deployed = ghostnets.reparameterize(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in deployed.modules())
        torch.testing.assert_close(deployed(x), out, rtol=1e-4, atol=1e-4)
    assert [f["reduction"] for f in model.feature_info] == [1, 2, 4, 8]


def test_refusals_name_the_stage_and_block():
    with pytest.raises(ValueError, match=r"stage 1 block 0 \(sk, 64 -> 128 channels, stride 2\): .*kernel_size must "
                                         r"be 3"):
        ghostnets.create_model("blocknet", block="sk", widths=[64, 128, 128, 256], kernel_sizes=[3, 5, 3, 3])
    with pytest.raises(ValueError, match="Did you mean ghost"):
        ghostnets.create_model("blocknet", block="ghots")
    with pytest.raises(ValueError, match="kernel_sizes gives 2 values for 4 stages"):
        ghostnets.create_model("blocknet", kernel_sizes=[3, 5])
    with pytest.raises(ValueError, match="drop_path_rate"):
        ghostnets.create_model("blocknet", drop_path_rate=0.1)


def test_a_checkpoint_rebuilds_the_sampled_network(tmp_path):
    model = ghostnets.create_model("blocknet", block="mbv3", depths=[1, 1, 2, 1], widths=[16, 24, 40, 48],
                                   se_ratios=[0.0, 0.25, 0.25, 0.0], expansions=[2.0, 3.5, 4.0, 6.0])
    path = ghostnets.save_checkpoint(model, tmp_path / "net.safetensors")
    again = ghostnets.create_model("blocknet", checkpoint_path=path)
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.eval()(x), model.eval()(x))
