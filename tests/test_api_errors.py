"""Arguments and inputs a user can get wrong: each gives a clear error, never a deep torch traceback."""

from __future__ import annotations

import pytest
import torch

import ghostnets
from cli_run import in_process, in_subprocess


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (dict(in_chans=0), "in_chans must be an integer >= 1"),
        (dict(num_classes=-1), "num_classes must be an integer >= 0"),
        (dict(deploy="yes"), "deploy must be True or False"),
        (dict(width="1.0"), "width must be a positive number"),
        (dict(drop_rate=1.5), "drop_rate must be a number in"),
    ],
)
def test_bad_constructor_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        ghostnets.create_model("ghostnet_050", **kwargs)


def test_unknown_keyword_names_the_valid_ones():
    with pytest.raises(TypeError, match="takes no argument 'reparam_bn'.*width"):
        ghostnets.create_model("ghostnet_100", reparam_bn=False)
    with pytest.raises(TypeError, match="model name"):
        ghostnets.create_model(3)


def test_input_dtype_must_match_the_weights():
    model = ghostnets.create_model("ghostnet_050").eval()
    with pytest.raises(ghostnets.InputShapeError, match="float64 but the model's weights are torch.float32"):
        model(torch.randn(1, 3, 64, 64, dtype=torch.float64))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # mixed precision is the exception
        model(torch.randn(1, 3, 64, 64))


def test_reset_classifier_is_recorded_for_saving(tmp_path):
    model = ghostnets.create_model("ghostnet_050").eval()
    model.reset_classifier(10)
    path = ghostnets.save_checkpoint(model, tmp_path / "ft.safetensors")
    rebuilt = ghostnets.create_model(checkpoint_path=path).eval()
    assert rebuilt.num_classes == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.allclose(rebuilt(x), model(x), atol=1e-6)
    with pytest.raises(ValueError, match="num_classes"):
        model.reset_classifier(-2)


def test_save_checkpoint_metadata_must_be_strings_and_not_reserved(tmp_path):
    model = ghostnets.create_model("ghostnet_050")
    with pytest.raises(ValueError, match="epoch"):
        ghostnets.save_checkpoint(model, tmp_path / "a.safetensors", metadata={"epoch": 3})
    with pytest.raises(ValueError, match="format"):
        ghostnets.save_checkpoint(model, tmp_path / "a.safetensors", metadata={"format": "x"})
    path = ghostnets.save_checkpoint(model, tmp_path / "a.safetensors", metadata={"epoch": "3"})
    assert ghostnets.read_metadata(path)["model"] == "ghostnet_050"


def test_empty_ema_entry_falls_back_to_the_state_dict(tmp_path):
    model = ghostnets.create_model("ghostnet_050").eval()
    path = tmp_path / "ckpt.pth.tar"
    torch.save({"state_dict": model.state_dict(), "state_dict_ema": None}, path)
    loaded = ghostnets.create_model("ghostnet_050", checkpoint_path=path).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(loaded(x), model(x))


@pytest.mark.slow  # a subprocess
def test_cli_errors_are_one_line(tmp_path):
    result = in_subprocess("verify", "nope*")
    assert result.returncode == 1 and "no model matches" in result.stderr
    result = in_process("info", "ghostnet_10")
    assert result.returncode == 2 and "ghostnet_100" in result.stderr and "Traceback" not in result.stderr
    path = tmp_path / "m.pth"
    torch.save(ghostnets.create_model("ghostnet_050").state_dict(), path)
    result = in_process("reparam", str(path), "--model", "ghostnet_050", "--out", "/proc/forbidden.safetensors",
                        "--force")
    assert result.returncode == 2 and "Traceback" not in result.stderr and "forbidden" in result.stderr
