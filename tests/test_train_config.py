"""Recipes, overrides and the data plan every loader shares (no training here: see test_train.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from ghostnets.cli.options import dashed_overrides
from ghostnets.data import FashionMNIST
from ghostnets.data.batches import GlobalBatchSampler
from ghostnets.data.in_memory import InMemoryLoader
from ghostnets.data.transforms import FASHION_MNIST_INPUT
from ghostnets.registry import list_models, model_info
from ghostnets.train import ConfigError, TrainConfig, list_recipes, load_recipe, parse_overrides, update_config
from ghostnets.train.config import RECIPE_DIR

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"


def test_every_card_names_a_bundled_recipe_and_every_recipe_loads():
    assert {model_info(name).recipe for name in list_models()} <= set(list_recipes())
    for name in list_recipes():
        config = load_recipe(name)
        assert config.recipe == name
        model_info(config.model)  # the recipe's model exists


def test_recipes_hold_the_published_settings():
    """docs/reference.md §2 and §4, and the issue's GhostNet v1 settings."""
    v2 = load_recipe("ghostnetv2")
    assert (v2.opt, v2.opt_eps, v2.lr, v2.sched, v2.decay_epochs, v2.decay_rate, v2.epochs) == \
        ("rmsproptf", 1e-3, 0.064, "step", 2.4, 0.973, 450)
    assert (v2.model_ema_decay, v2.auto_augment, v2.re_prob, v2.re_mode) == (0.9999, "rand-m9-mstd0.5", 0.2, "pixel")
    small, large = load_recipe("repghostnet_small"), load_recipe("repghostnet_large")
    assert small.auto_augment is None and large.auto_augment == "rand-m9-mstd0.5"
    assert (small.lr, small.lr_base_batch, small.epochs, small.warmup_epochs, small.min_lr) == (0.6, 1024, 300, 5, 1e-5)
    v1 = load_recipe("ghostnet")
    assert (v1.opt, v1.lr, v1.lr_base_batch, v1.weight_decay, v1.smoothing, v1.drop_rate, v1.epochs) == \
        ("nesterov", 0.4, 1024, 4e-5, 0.1, 0.2, 400)


def test_learning_rate_scales_linearly_with_the_global_batch():
    config = update_config(load_recipe("repghostnet_small"), {"batch_size": 256}, "test")
    assert config.scaled_lr() == pytest.approx(0.6 * 256 / 1024)
    assert TrainConfig(lr=0.3, lr_base_batch=0, batch_size=64).scaled_lr() == 0.3


def test_overrides_are_typed_and_checked():
    values = parse_overrides(["lr=0.2", "model_ema=true", "auto_augment=null", "epochs=5", "--drop-rate=0.1"])
    assert values == {"lr": 0.2, "model_ema": True, "auto_augment": None, "epochs": 5, "drop_rate": 0.1}
    config = update_config(TrainConfig(), values, "test")
    assert (config.lr, config.model_ema, config.epochs, config.drop_rate) == (0.2, True, 5, 0.1)
    assert isinstance(update_config(TrainConfig(), {"lr": 1}, "test").lr, float)
    with pytest.raises(ConfigError, match="did you mean|Did you mean.*epochs"):
        update_config(TrainConfig(), {"epocs": 3}, "test")
    with pytest.raises(ConfigError, match="epochs takes a int"):
        update_config(TrainConfig(), {"epochs": "many"}, "test")
    with pytest.raises(ConfigError, match="field=value"):
        parse_overrides(["lr"])
    assert dashed_overrides(["--lr", "0.2", "--amp", "epochs=3", "--seed=7"]) == ["lr=0.2", "amp=true", "epochs=3",
                                                                                 "seed=7"]


def test_command_line_takes_field_value_pairs_with_a_space():
    """`ghostnets train --lr 0.2 --amp epochs=3 --teacher ghostnet_130`: the timm-style spelling, parsed as users
    type it (argparse alone would take 0.2 as a positional override)."""
    from ghostnets.cli import parse_args
    from ghostnets.cli.train import resolve_config

    args = parse_args(["train", "--recipe", "quick", "--lr", "0.2", "--amp", "epochs=3", "--seed=7",
                       "--teacher", "ghostnet_130", "--teacher_checkpoint", "t.safetensors"])
    config = resolve_config(args)
    assert (config.lr, config.amp, config.epochs, config.seed) == (0.2, True, 3, 7)
    assert (config.teacher, config.teacher_checkpoint) == ("ghostnet_130", "t.safetensors")


def test_unknown_recipe_and_bad_yaml_say_what_exists(tmp_path):
    with pytest.raises(ConfigError, match="did you mean quick"):
        load_recipe("quik")
    bad = tmp_path / "bad.yaml"
    bad.write_text("lr: [0.1\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_recipe(bad)
    mine = tmp_path / "mine.yaml"
    mine.write_text(yaml.safe_dump({"model": "ghostnetv2_100", "lr": 0.01}))
    assert (load_recipe(mine).model, load_recipe(mine).lr, load_recipe(mine).recipe) == ("ghostnetv2_100", 0.01, "mine")
    assert (RECIPE_DIR / "quick.yaml").is_file()


def test_processes_share_out_each_global_batch_and_a_resume_skips_what_was_done():
    single = GlobalBatchSampler(100, 8, seed=3)
    ranks = [GlobalBatchSampler(100, 8, seed=3, rank=r, world_size=2) for r in range(2)]
    for sampler in (single, *ranks):
        sampler.set_epoch(4)
    whole, parts = list(single), [list(r) for r in ranks]
    assert len(whole) == 12 and sorted(i for b in whole for i in b) != list(range(96))  # shuffled, last 4 dropped
    for step, batch in enumerate(whole):
        assert parts[0][step] == batch[0::2] and parts[1][step] == batch[1::2]
    single.set_epoch(4, start_step=5)
    assert list(single) == whole[5:]
    single.set_epoch(5)
    assert list(single) != whole  # a new order each epoch
    with pytest.raises(ValueError, match="multiple of the number of processes"):
        GlobalBatchSampler(100, 9, seed=0, world_size=2)


def test_in_memory_evaluation_batches_equal_the_recorded_input_transform():
    """The fast tensor path and the PIL pipeline a checkpoint records (used by predict) give the same input."""
    test = FashionMNIST("test", file=SUBSET)
    images, targets = test.as_tensors()
    loader = InMemoryLoader(images, targets, FASHION_MNIST_INPUT, batch_size=16, train=False)
    batch, labels = next(iter(loader))
    transform = FASHION_MNIST_INPUT.transform()
    for i in (0, 7, 15):
        image, label = test[i]
        assert label == labels[i]
        torch.testing.assert_close(batch[i], transform(image), rtol=0, atol=1e-6)


def test_training_batches_place_and_flip_every_image_within_the_canvas():
    test = FashionMNIST("test", file=SUBSET)
    images, targets = test.as_tensors()
    loader = InMemoryLoader(images, targets, FASHION_MNIST_INPUT, batch_size=20, train=True, seed=1)
    loader.set_epoch(0)
    (batch, labels), = [next(iter(loader))]
    index = [int(i) for i in loader.sampler.order()[:20]]
    assert labels.tolist() == targets[index].tolist()
    zero = (0 - FASHION_MNIST_INPUT.mean[0]) / FASHION_MNIST_INPUT.std[0]
    placements = set()
    for row, i in enumerate(index):
        original = images[i, 0]
        found = None
        for top in range(5):
            for left in range(5):
                window = batch[row, 0, top:top + 28, left:left + 28] * FASHION_MNIST_INPUT.std[0] + \
                    FASHION_MNIST_INPUT.mean[0]
                for flipped, candidate in ((False, original), (True, original.flip(-1))):
                    if torch.allclose(window, candidate, atol=1e-5):
                        found = (top, left, flipped)
        assert found is not None, f"image {i} is not a placed copy of the original"
        placements.add(found)
        outside = batch[row, 0].clone()
        outside[found[0]:found[0] + 28, found[1]:found[1] + 28] = zero
        torch.testing.assert_close(outside, torch.full_like(outside, zero))
    assert len(placements) > 5 and {p[2] for p in placements} == {False, True}
