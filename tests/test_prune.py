"""Channel pruning (He, Zhang, Sun, ICCV 2017): LASSO selection, least squares, MAdds budget, checkpoints, CLI."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import ghostnets
from conftest import randomize_bn
from ghostnets.cli import main
from ghostnets.cli.prune import parse_madds
from ghostnets.data.transforms import FASHION_MNIST_INPUT, InputSpec
from ghostnets.transforms.prune import (
    PruneError,
    Samples,
    _patches,
    apply_pruned_widths,
    least_squares_weights,
    prunable_pairs,
    prune_channels,
    select_channels,
)

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Pruning is many small solves: on a busy machine a second thread that has to wait for a core made these tests
    ten times slower (1.3 s against 12 s for ResNet-56), on an idle one it gains little."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def fashion_images(count: int) -> torch.Tensor:
    """``count`` real images (every class) of the bundled subset, preprocessed as the bundled dataset is."""
    data = np.load(SUBSET)["train_x"]
    transform = FASHION_MNIST_INPUT.transform()
    picked = np.linspace(0, len(data) - 1, count).round().astype(int)
    return torch.stack([transform(Image.fromarray(data[i])) for i in picked])


def small_resnet(width: float = 1.0) -> torch.nn.Module:
    return randomize_bn(ghostnets.create_model("resnet56_cifar", num_classes=10, in_chans=1, width=width)).eval()


# --- the building blocks against independent truths ---------------------------------------------------------------

def test_patches_are_what_the_convolution_multiplies():
    conv = torch.nn.Conv2d(3, 5, 3, stride=2, padding=1, dilation=2, bias=False)
    x = torch.randn(2, 3, 9, 11)
    y = conv(x)
    pos = torch.tensor([[0, 0, 0], [1, 2, 3], [0, y.shape[2] - 1, y.shape[3] - 1], [1, 1, 0]])
    patches = _patches(conv, x, pos)
    expected = y[pos[:, 0], :, pos[:, 1], pos[:, 2]]
    torch.testing.assert_close(patches @ conv.weight.reshape(5, -1).T, expected, atol=1e-5, rtol=1e-5)


def test_lasso_keeps_the_informative_channels_and_least_squares_reconstructs():
    g = torch.Generator().manual_seed(1)
    m, chans, c_out = 400, 8, 6
    patches = torch.randn(m, chans, 3, 3, generator=g)
    patches[:, 4] = patches[:, 1]  # channel 4 repeats channel 1's input ...
    patches[:, 5:] = 0  # ... and channels 5-7 are dead (a ReLU that never fires)
    weight = torch.randn(c_out, chans, 3, 3, generator=g)
    weight[:, 4] = 2 * weight[:, 1]  # ... so Z_4 = 2 Z_1: either one carries both
    patches = patches.reshape(m, -1)
    target = patches @ weight.reshape(c_out, -1).T  # the layer's output with every channel
    samples = Samples.of(patches, target)

    keep = select_channels(samples, weight, 4)
    kept = set(keep.tolist())
    assert {0, 2, 3} <= kept and len(kept & {1, 4}) == 1 and not kept & {5, 6, 7}, kept
    new, before, after = least_squares_weights(samples, weight, keep)
    assert before > 0.1  # dropping a live channel with its weights as they were loses a lot
    assert after < 1e-5  # the kept twin absorbs the dropped one's contribution
    direct = patches.reshape(m, chans, 9)[:, keep].reshape(m, -1) @ new.reshape(c_out, -1).T
    assert float((direct - target).norm() / target.norm()) < 1e-5  # and the reported error is the real one

    assert select_channels(samples, weight, 5).tolist() == [0, 1, 2, 3, 4]  # room to spare: still no dead one
    kept = set(select_channels(samples, weight, 3).tolist())  # one fewer: never both twins, never a dead one
    assert len(kept & {1, 4}) == 1 and not kept & {5, 6, 7}


def test_least_squares_never_does_worse_than_keeping_the_weights():
    g = torch.Generator().manual_seed(2)
    patches, weight = torch.randn(50, 4 * 9, generator=g), torch.randn(3, 4, 3, 3, generator=g)
    target = patches @ weight.reshape(3, -1).T + 0.5 * torch.randn(50, 3, generator=g)  # noise no weights explain
    samples = Samples.of(patches, target)
    new, before, after = least_squares_weights(samples, weight, torch.tensor([0, 2]))
    assert new.shape == (3, 2, 3, 3)
    assert after <= before
    best = torch.linalg.lstsq(patches.reshape(50, 4, 9)[:, [0, 2]].reshape(50, -1).double(), target.double())
    err = float((patches.reshape(50, 4, 9)[:, [0, 2]].reshape(50, -1).double() @ best.solution - target).norm())
    assert after == pytest.approx(err / float(target.norm()), rel=1e-4)  # the least-squares optimum itself


def test_pairs_stay_inside_blocks_and_chains():
    resnet = ghostnets.create_model("resnet56_cifar", width=0.25)
    pairs = prunable_pairs(resnet)
    assert len(pairs) == 27 and all(p.conv.endswith("conv1") and p.consumer.endswith("conv2") for p in pairs)
    r50 = [(p.conv, p.consumer) for p in prunable_pairs(ghostnets.create_model("resnet50", width=0.25))]
    assert r50[:2] == [("layer1.0.conv1", "layer1.0.conv2"), ("layer1.0.conv2", "layer1.0.conv3")] and len(r50) == 32
    vgg = prunable_pairs(ghostnets.create_model("vgg16_cifar", width=0.125))
    assert len(vgg) == 12 and vgg[0].consumer == "features.1.0" and vgg[-1].consumer == "features.16.0"
    assert not prunable_pairs(ghostnets.create_model("ghost_resnet56_cifar_s2", width=0.25))
    tv = prunable_pairs(ghostnets.create_model("torchvision:resnet18"))
    assert [(p.conv, p.consumer) for p in tv][0] == ("layer1.0.conv1", "layer1.0.conv2") and len(tv) == 8
    wrn = prunable_pairs(ghostnets.create_model("wrn16_8_cifar", width=0.125))  # pre-activation: conv1 -> bn2 -> conv2
    assert [(p.conv, p.norms, p.consumer) for p in wrn][0] == ("layer1.0.conv1", ("layer1.0.bn2",), "layer1.0.conv2")
    assert len(wrn) == 6


def test_wide_resnet_prunes_and_rebuilds(tmp_path):
    model = randomize_bn(ghostnets.create_model("wrn16_8_cifar", width=0.25, in_chans=1)).eval()
    target = ghostnets.count_madds(model, 32) * 2 // 3
    pruned = prune_channels(model, target, fashion_images(16), samples_per_image=4)
    assert ghostnets.count_madds(pruned, 32) <= target and pruned.layer1[0].conv1.out_channels < 32
    rebuilt = ghostnets.create_model(checkpoint_path=ghostnets.save_checkpoint(pruned, tmp_path / "p.safetensors"))
    x = fashion_images(2)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), pruned(x))


# --- ResNet-56 pruned to Ghost-ResNet-56's budget ------------------------------------------------------------------

@pytest.fixture(scope="module")
def resnet56():
    torch.manual_seed(0)
    model, calib = small_resnet(), fashion_images(40)
    reference = copy.deepcopy(model.state_dict())
    target = int(ghostnets.model_info("ghost_resnet56_cifar_s2").madds)
    pruned = prune_channels(model, target, calib)
    return model, pruned, calib, target, reference


def test_resnet56_meets_the_ghost_budget_and_stays_close(resnet56):
    model, pruned, calib, target, reference = resnet56
    madds = ghostnets.count_madds(pruned, 32)
    assert madds <= target and madds >= 0.97 * target
    report = pruned.record.report
    assert report.madds_after == madds and report.madds_before == ghostnets.count_madds(model, 32)
    assert len(report.layers) == 27 and all(c.error_after <= c.error_before + 1e-9 for c in report.layers)
    assert all(c.channels_after < c.channels_before for c in report.layers)
    assert "layer3.8.conv1" in str(report) and "error before LS" in report.table()
    # the original is untouched
    assert all(torch.equal(v, reference[k]) for k, v in model.state_dict().items())
    assert model.layer1[0].conv1.out_channels == 16
    # the structure: block outputs keep their width, the branch's inner width is what the edit records
    block = pruned.layer2[3]
    widths = [e.as_dict() for e in pruned.record.edits][-1]["args"]["widths"]
    assert [e.as_dict() for e in pruned.record.edits][-1]["op"] == "prune" and len(widths) == 27
    assert block.conv1.out_channels == block.bn1.num_features == block.conv2.in_channels == widths["layer2.3.conv1"]
    assert block.conv2.out_channels == 32 and not pruned.training
    with torch.no_grad():
        a, b = model(calib), pruned(calib)
    agree = float((a.argmax(1) == b.argmax(1)).float().mean())
    assert agree >= 0.8, agree  # chance is 0.1
    assert float((a - b).norm() / a.norm()) < 0.2


def test_lasso_selection_beats_the_filter_norm_criterion(resnet56, monkeypatch):
    """Against the usual data-free alternative (keep the filters of largest L1 norm, Li et al. 2017), LASSO's
    channels lose far less of the next layer's output, before and after least squares."""
    import ghostnets.transforms.prune as prune_module

    model, pruned, calib, target, _ = resnet56
    monkeypatch.setattr(prune_module, "select_channels", lambda samples, weight, k: weight.detach().abs().sum(
        (0, 2, 3)).argsort(descending=True)[:k].sort().values)
    by_norm = prune_channels(model, target, calib).record.report.layers

    def mean(layers, key):
        return sum(getattr(c, key) for c in layers) / len(layers)

    lasso = pruned.record.report.layers
    assert mean(lasso, "error_before") < 0.5 * mean(by_norm, "error_before")
    assert mean(lasso, "error_after") < mean(by_norm, "error_after")


def test_resnet56_checkpoint_rebuilds_and_reparameterizes(resnet56, tmp_path):
    _, pruned, calib, _, _ = resnet56
    path = ghostnets.save_checkpoint(pruned, tmp_path / "pruned.safetensors", class_names=list("abcdefghij"))
    loaded = ghostnets.create_model(checkpoint_path=path).eval()
    with torch.no_grad():
        expected = pruned(calib)
        assert torch.equal(loaded(calib), expected)
        deployed = ghostnets.reparameterize(loaded)
        torch.testing.assert_close(deployed(calib), expected, atol=1e-4 * float(expected.abs().max()), rtol=1e-4)
    assert loaded.record.class_names == list("abcdefghij")
    assert loaded.record.edits == pruned.record.edits  # saved again, it rebuilds again
    direct = apply_pruned_widths(ghostnets.create_model("resnet56_cifar", in_chans=1),
                                 [e.as_dict() for e in pruned.record.edits][-1]["args"]["widths"])
    assert {k: v.shape for k, v in direct.state_dict().items()} == {k: v.shape for k, v in pruned.state_dict().items()}


# --- VGG-16: a plain chain ----------------------------------------------------------------------------------------

def test_vgg16_chain_pruning():
    model = randomize_bn(ghostnets.create_model("vgg16_cifar", num_classes=10, in_chans=1, width=0.125)).eval()
    calib = fashion_images(24)
    base = ghostnets.count_madds(model, 32)
    pruned = prune_channels(model, base // 2, calib, samples_per_image=4)
    assert base // 2 * 0.97 <= ghostnets.count_madds(pruned, 32) <= base // 2
    convs = [m for m in pruned.features.modules() if isinstance(m, torch.nn.Conv2d)]
    before = [m for m in model.features.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs[-1].out_channels == 64 and convs[0].in_channels == 1  # the last conv feeds the classifier
    assert all(c.out_channels < b.out_channels for c, b in zip(convs[:-1], before))
    assert all(c.in_channels == p.out_channels for p, c in zip(convs, convs[1:]))
    assert all(c.error_after <= c.error_before + 1e-9 for c in pruned.record.report.layers)
    seen = {}  # the feature taps' recorded widths are the real ones

    def tap(name: str):
        def hook(module, args, out) -> None:
            seen[name] = out.shape[1]
        return hook

    hooks = [pruned.get_submodule(i["module"]).register_forward_hook(tap(i["module"])) for i in pruned.feature_info]
    with torch.no_grad():
        a, b = model.forward_features(calib), pruned.forward_features(calib)
    for h in hooks:
        h.remove()
    assert seen == {i["module"]: i["num_chs"] for i in pruned.feature_info}
    assert float((a - b).norm() / a.norm()) < 0.3


# --- bad input ----------------------------------------------------------------------------------------------------

def test_bad_input_says_what_to_do():
    model, calib = small_resnet(0.25), torch.randn(4, 1, 32, 32)
    base = ghostnets.count_madds(model, 32)
    with pytest.raises(PruneError, match="nothing to prune"):
        prune_channels(model, base, calib)
    with pytest.raises(PruneError, match=r"cannot be reached.*\(the minimum") as e:
        prune_channels(model, 1000, calib)
    least = float(str(e.value).split("leaves ")[1].split("M")[0]) * 1e6
    widths = {p.conv: 1 for p in prunable_pairs(model)}
    assert ghostnets.count_madds(apply_pruned_widths(model, widths), 32) == pytest.approx(least, abs=5.1e3)
    with pytest.raises(PruneError, match="no prunable layer"):
        prune_channels(ghostnets.create_model("ghost_resnet56_cifar_s2", in_chans=1, width=0.25), 10**6, calib)
    with pytest.raises(PruneError, match="empty"):
        prune_channels(model, base // 2, calib[:0])
    with pytest.raises(PruneError, match="have 3 channels, the model takes 1"):
        prune_channels(model, base // 2, torch.randn(2, 3, 32, 32))
    with pytest.raises(PruneError, match="training form"):
        prune_channels(ghostnets.reparameterize(model), base // 2, calib)
    with pytest.raises(ghostnets.CheckpointError, match="not prunable"):
        apply_pruned_widths(model, {"layer1.0.conv2": 2})
    with pytest.raises(ghostnets.CheckpointError, match="from 1 to its 4"):
        apply_pruned_widths(model, {"layer1.0.conv1": 5})


def test_parse_madds():
    assert parse_madds("63M") == parse_madds("0.063G") == parse_madds("6.3e7") == parse_madds("63000k") == 63_000_000
    for bad in ("abc", "0M", "-5M", "63X"):
        with pytest.raises(Exception, match="63M|positive"):
            parse_madds(bad)


# --- the command --------------------------------------------------------------------------------------------------

def test_cli_prunes_a_checkpoint(tmp_path, capsys, monkeypatch):
    model = small_resnet(0.25)
    ckpt = ghostnets.save_checkpoint(model, tmp_path / "small.safetensors", class_names=[str(i) for i in range(10)])
    folder = tmp_path / "calib"
    folder.mkdir()
    for i, pixels in enumerate(np.load(SUBSET)["train_x"][::25]):
        Image.fromarray(pixels).save(folder / f"{i}.png")
    text = f"{ghostnets.count_madds(model, 32) * 0.6 / 1e6:.4f}M"
    target = parse_madds(text)
    args = ["prune", "--checkpoint", str(ckpt), "--target-madds", text, "--calib", str(folder),
            "--images", "12"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "layer1.0.conv1" in out and "sampling 12 calibration images" in out
    written = tmp_path / "small_pruned.safetensors"
    pruned = ghostnets.create_model(checkpoint_path=written)
    assert ghostnets.count_madds(pruned, 32) <= target
    assert pruned.record.class_names == [str(i) for i in range(10)]
    assert InputSpec.from_dict(ghostnets.read_metadata(written)["input"].as_dict()) == FASHION_MNIST_INPUT

    assert main(args) == 2  # never overwrites without --force
    assert "exists; pass --force" in capsys.readouterr().err
    cache = tmp_path / "cache"  # --calib omitted: the bundled dataset (here its test subset)
    cache.mkdir()
    shutil.copy(SUBSET, cache / "fashion_mnist.npz")
    monkeypatch.setenv("GHOSTNETS_CACHE", str(cache))
    other = tmp_path / "other.safetensors"
    assert main(args[:5] + ["--images", "8", "--out", str(other)]) == 0
    assert "bundled Fashion-MNIST" in capsys.readouterr().out and other.is_file()
    assert main(args[:3] + ["--target-madds", "1k", "--out", str(tmp_path / "x.safetensors")]) == 2
    assert "the minimum" in capsys.readouterr().err and not (tmp_path / "x.safetensors").exists()
