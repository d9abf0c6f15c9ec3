"""The block evaluation's design space: seeded, reproducible sampling inside the MAdds band, valid networks for
every registered block, arguments a block cannot take never sampled, the space as data (YAML), and errors that say
what a band or a space can reach."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

import ghostnets
from ghostnets.blocks_eval.space import (
    DesignSpace,
    DesignSpaceError,
    check_band,
    parse_band,
    reachable_range,
    sample,
)
from ghostnets.layers.block_registry import block_info, list_blocks

SMALL = DesignSpace(width=(8, 64), depth=(1, 2))


def test_same_seed_same_network_other_seed_other_network():
    band = parse_band("0.5M:3M")
    first = sample(SMALL, "ghost", 3, seed=7, band=band)
    assert sample(SMALL, "ghost", 3, seed=7, band=band) == first
    others = {sample(SMALL, "ghost", i, seed=7, band=band).arch for i in range(4)}
    assert len(others) == 4  # each index its own network
    assert sample(SMALL, "ghost", 3, seed=8, band=band).arch != first.arch


def test_samples_are_in_band_and_follow_the_space():
    band = parse_band("1M:4M")
    for i in range(6):
        s = sample(SMALL, "mbv3", i, seed=0, band=band)
        a = s.arch
        assert band[0] <= s.madds <= band[1]
        # the counts are the built network's, at the space's input size (counted here on a real build)
        model = a.build(SMALL)
        assert ghostnets.count_madds(model, (32, 32), in_chans=1) == s.madds
        assert ghostnets.count_params(model) == s.params
        assert all(w % 8 == 0 and 8 <= w <= 64 for w in a.widths)
        assert list(a.widths) == sorted(a.widths)
        assert all(1 <= d <= 2 for d in a.depths)
        assert all(e is not None and 1.0 <= e <= 6.0 and (e * 2).is_integer() for e in a.expansions)
        assert set(a.kernel_sizes) <= {3, 5} and set(a.se_ratios) <= {0.0, 0.25}


def test_arguments_a_block_cannot_take_are_not_sampled():
    band = parse_band("8M:40M")
    sk = sample(DesignSpace(), "sk", 0, seed=0, band=band).arch
    assert sk.kernel_sizes == (3, 3, 3, 3)  # SK refuses 5 (its paths are dilated 3x3)
    assert sk.expansions == (None,) * 4 and sk.se_ratios == (None,) * 4  # honours neither
    se = sample(DesignSpace(), "se", 0, seed=0, band=parse_band("2M:20M")).arch
    assert se.se_ratios == (None,) * 4  # its SE is the block itself: the block's own ratio, never "off"


EVERY = DesignSpace(depth=(1, 2))  # widths 16..256: every registered block builds networks in it


def _band_for(block):
    low, high = reachable_range(EVERY, block)
    return low, max(low * 4, min(high, low * 40))


@pytest.mark.slow
@pytest.mark.parametrize("block", list_blocks())
def test_every_registered_block_samples_valid_networks(block):
    band = _band_for(block)
    s = sample(EVERY, block, 0, seed=1, band=band)
    model = s.arch.build(EVERY)
    assert model(torch.randn(2, 1, 32, 32)).shape == (2, 10)
    assert s.arch.block == block and band[0] <= s.madds <= band[1]


def test_stride_schedule_follows_the_input_size():
    assert DesignSpace(input_size=32).stride_schedule() == (1, (1, 2, 2, 2))  # 32 -> 4x4
    assert DesignSpace(input_size=64).stride_schedule() == (2, (1, 2, 2, 2))  # 64 -> 4x4
    assert DesignSpace(input_size=224).stride_schedule() == (2, (2, 2, 2, 2))  # 224 -> 7x7, RegNet's
    assert DesignSpace(input_size=16).stride_schedule() == (1, (1, 1, 2, 2))  # 16 -> 4x4


def test_reachable_range_brackets_every_sample():
    low, high = reachable_range(SMALL, "shufflev2")
    for i in range(4):
        s = sample(SMALL, "shufflev2", i, seed=0, band=(1, 1e12))
        assert low <= s.madds <= high


def test_band_out_of_reach_names_the_range():
    low, high = reachable_range(SMALL, "resnext")
    with pytest.raises(DesignSpaceError, match=r"resnext reaches \d+\.\d\dM\.\.\d+\.\d\dM"):
        check_band(SMALL, ["ghost", "resnext"], (high * 2, high * 3))
    assert check_band(SMALL, ["resnext"], (low, high))["resnext"] == (low, high)


def test_band_parsing():
    assert parse_band("4M:16M") == (4e6, 16e6)
    assert parse_band("500k:1.5G") == (5e5, 1.5e9)
    for bad in ("16M:4M", "4M", "a:b", "4M:16M:20M"):
        with pytest.raises(DesignSpaceError, match="LOW:HIGH"):
            parse_band(bad)


def test_the_space_is_data(tmp_path):
    path = tmp_path / "space.yaml"
    path.write_text("width: [16, 128]\ndepth: [1, 3]\nkernel_sizes: [3]\n")
    space = DesignSpace.from_yaml(path)
    assert space == dataclasses.replace(DesignSpace(), width=(16, 128), depth=(1, 3), kernel_sizes=(3,))
    assert DesignSpace.from_dict(space.as_dict()) == space
    assert space.fingerprint() != DesignSpace().fingerprint()
    path.write_text("widths: [16, 128]\n")
    with pytest.raises(DesignSpaceError, match="unknown field 'widths'.*Did you mean width"):
        DesignSpace.from_yaml(path)
    with pytest.raises(DesignSpaceError, match="0 < low <= high"):
        DesignSpace(depth=(3, 1))


def test_log_uniform_widths():
    """Widths are drawn log-uniformly on [8, 64], then rounded to a multiple of 8: width 8 takes the draws in
    [8, 12), P = ln(12/8) / ln(64/8) = 0.195; widths 32..56 take [28, 60), P = ln(60/28) / ln 8 = 0.366."""
    space = DesignSpace(width=(8, 64), depth=(1, 1), stages=1, kernel_sizes=(3,))
    n = 120
    widths = [sample(space, "mbv2", i, seed=0, band=(1, 1e12)).arch.widths[0] for i in range(n)]
    for count, p in ((sum(w == 8 for w in widths), math.log(1.5) / math.log(8)),
                     (sum(32 <= w < 64 for w in widths), math.log(60 / 28) / math.log(8))):
        assert abs(count - n * p) < 4 * math.sqrt(n * p * (1 - p)), (count, n * p)


def test_example_widths_are_what_the_registry_declares():
    assert block_info("resnext").example == (64, 128)
