"""Checkpoints: every layout met in the wild, refusal of unsafe pickles, clear errors, safetensors saving with
metadata, training/deploy forms (ours and the official RepGhost deploy layout), and the ``ghostnets reparam`` CLI.

Every checkpoint is written here. The independent truth is mostly timm's port (same key layout as the official code):
a timm model with randomised BatchNorm statistics writes the file, and the ghostnets model that loads it must give the
same logits (eval mode, fixed input). BatchNorm statistics are randomised so that folding them matters.
"""

from __future__ import annotations

import argparse
import copy
import functools
import os
import pickle
import re
import shlex
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from safetensors.torch import load_file, save_file
from timm.models.repghost import repghost_model_convert
from torch import nn

import ghostnets
from cli_run import in_process, in_subprocess
from conftest import randomize_bn
from ghostnets import CheckpointError, UnsafeCheckpointError
from ghostnets.layers import RepGhostModule

REL_TOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def _one_thread():
    """Tiny models: one thread is fastest, and avoids OpenMP spin-waiting on a busy shared machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# ------------------------------------------------------------------------------------------------------------- helpers
def _randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """conftest's randomize_bn with its own seed, in eval mode (fresh BNs are the identity and hide folding bugs)."""
    return randomize_bn(model, torch.Generator().manual_seed(seed)).eval()


def _input(in_chans: int = 3) -> torch.Tensor:
    return torch.randn(2, in_chans, 64, 64, generator=torch.Generator().manual_seed(1234))


X = _input()


def _logits(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval()(x)


def _features(model: nn.Module, x: torch.Tensor = X) -> torch.Tensor:
    with torch.no_grad():
        return model.eval().forward_features(x)


def _assert_close(actual: torch.Tensor, expected: torch.Tensor, rel: float = REL_TOL) -> None:
    assert actual.shape == expected.shape
    scale = expected.abs().max().item()
    err = (actual - expected).abs().max().item()
    assert err <= rel * scale + 1e-7, f"max |diff| {err:.3g} > {rel:g} x max |expected| {scale:.3g}"


def _assert_differs(actual: torch.Tensor, expected: torch.Tensor) -> None:
    """Controls: an unloaded model must be far from the source, or a passing comparison would prove nothing."""
    if actual.shape != expected.shape:
        return
    assert (actual - expected).abs().max().item() > 1e-2 * expected.abs().max().item()


def _has_bn(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


@functools.cache
def _timm_source(name: str, num_classes: int = 1000, seed: int = 0) -> tuple[nn.Module, torch.Tensor]:
    """A timm model (independent implementation, official key layout) with random BN, and its logits on X."""
    torch.manual_seed(seed)
    model = _randomize_bn(timm.create_model(name, num_classes=num_classes), seed)
    return model, _logits(model)


def _sd(name: str, **kw) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in _timm_source(name, **kw)[0].state_dict().items()}


def _quiet_create(*args, **kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ghostnets.create_model(*args, **kwargs)


def _quiet_load(model: nn.Module, path: Path, **kwargs) -> nn.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return ghostnets.load_checkpoint(model, path, **kwargs)


def _check_both_entry_points(name: str, path: Path, expected: torch.Tensor, **kwargs) -> None:
    fresh = ghostnets.create_model(name)
    _assert_differs(_logits(fresh), expected)
    loaded = _quiet_load(fresh, path, **kwargs)
    _assert_close(_logits(loaded), expected)
    _assert_close(_logits(_quiet_create(name, checkpoint_path=path, **kwargs)), expected)


def _training_checkpoint(train_sd: dict, ema_sd: dict | None, arch: str = "repghostnet_0_5x") -> dict:
    """A full RepGhost/timm-train-style checkpoint with a real optimizer state."""
    params = [nn.Parameter(torch.randn(4, 3)), nn.Parameter(torch.randn(4))]
    opt = torch.optim.SGD(params, lr=0.6, momentum=0.9, weight_decay=1e-5)
    (params[0].sum() + params[1].sum()).backward()
    opt.step()
    ckpt = {
        "epoch": 299,
        "arch": arch,
        "state_dict": train_sd,
        "optimizer": opt.state_dict(),
        "version": 2,
        "args": argparse.Namespace(model=arch, lr=0.6, epochs=300, model_ema=True, model_ema_decay=0.9999,
                                   opt="sgd", momentum=0.9, smoothing=0.1, amp=True, data_dir="/data/imagenet"),
        "amp_scaler": {"scale": 65536.0, "growth_factor": 2.0, "backoff_factor": 0.5, "growth_interval": 2000,
                       "_growth_tracker": 17},
        "metric": 66.93,
    }
    if ema_sd is not None:
        ckpt["state_dict_ema"] = ema_sd
    return ckpt


# ---------------------------------------------------------------------------------------------------------- 1. layouts
@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "repghostnet_050"])
def test_bare_state_dict_written_by_timm_loads(tmp_path, name):
    path = tmp_path / "weights.pth"
    torch.save(_sd(name), path)
    _check_both_entry_points(name, path, _timm_source(name)[1])


@pytest.mark.parametrize("wrapper", ["state_dict", "state_dict_ema", "model"])
def test_wrapped_state_dict_pth_tar(tmp_path, wrapper):
    path = tmp_path / "checkpoint.pth.tar"
    torch.save({wrapper: _sd("ghostnet_050"), "epoch": 3}, path)
    _check_both_entry_points("ghostnet_050", path, _timm_source("ghostnet_050")[1])


def test_module_prefixed_keys(tmp_path):
    sd = {f"module.{k}": v for k, v in _sd("ghostnetv2_100").items()}
    bare, wrapped = tmp_path / "ddp.pth", tmp_path / "ddp_wrapped.pth.tar"
    torch.save(sd, bare)
    torch.save({"state_dict": sd, "epoch": 1}, wrapped)
    for path in (bare, wrapped):
        _check_both_entry_points("ghostnetv2_100", path, _timm_source("ghostnetv2_100")[1])


def test_profiler_buffers_are_dropped(tmp_path):
    model, expected = _timm_source("ghostnetv2_100")
    sd = _sd("ghostnetv2_100")
    for name, _ in model.named_modules():  # thop adds both buffers to every module, the root included
        prefix = f"{name}." if name else ""
        sd[prefix + "total_ops"] = torch.zeros(1, dtype=torch.float64) + 123.0
        sd[prefix + "total_params"] = torch.zeros(1, dtype=torch.float64) + 7.0
    with pytest.raises(RuntimeError, match="total_ops"):  # control: a plain strict load does choke on them
        timm.create_model("ghostnetv2_100").load_state_dict(sd)
    path = tmp_path / "ck_ghostnetv2_10.pth.tar"
    torch.save(sd, path)
    _check_both_entry_points("ghostnetv2_100", path, expected)
    cleaned, _ = ghostnets.read_state_dict(path)
    assert not any(k.endswith(("total_ops", "total_params")) for k in cleaned)
    assert set(cleaned) == set(model.state_dict())


def test_safetensors_written_by_safetensors(tmp_path):
    path = tmp_path / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in _sd("repghostnet_050").items()}, str(path))
    assert ghostnets.read_metadata(path) == {}  # not ours: no ghostnets metadata
    _check_both_entry_points("repghostnet_050", path, _timm_source("repghostnet_050")[1])


@pytest.fixture(scope="module")
def training_checkpoint(tmp_path_factory):
    train_model, train_logits = _timm_source("repghostnet_050", seed=1)
    ema_model, ema_logits = _timm_source("repghostnet_050", seed=2)
    _assert_differs(train_logits, ema_logits)
    path = tmp_path_factory.mktemp("train") / "repghostnet_0_5x_43M_66.95.pth.tar"
    torch.save(_training_checkpoint(train_model.state_dict(), ema_model.state_dict()), path)
    return path, train_logits, ema_logits


def test_training_checkpoint_prefers_ema(training_checkpoint):
    path, train_logits, ema_logits = training_checkpoint
    for use_ema, expected in ((None, ema_logits), (True, ema_logits), (False, train_logits)):
        kwargs = {} if use_ema is None else {"use_ema": use_ema}
        loaded = _quiet_load(ghostnets.create_model("repghostnet_050"), path, **kwargs)
        _assert_close(_logits(loaded), expected)
        _assert_close(_logits(_quiet_create("repghostnet_050", checkpoint_path=path, **kwargs)), expected)


def test_use_ema_true_without_ema_raises(tmp_path):
    path = tmp_path / "no_ema.pth.tar"
    torch.save(_training_checkpoint(_sd("repghostnet_050"), None), path)
    _check_both_entry_points("repghostnet_050", path, _timm_source("repghostnet_050")[1])  # default: state_dict
    with pytest.raises(CheckpointError, match="state_dict_ema"):
        ghostnets.load_checkpoint(ghostnets.create_model("repghostnet_050"), path, use_ema=True)
    with pytest.raises(CheckpointError, match="state_dict_ema"):
        ghostnets.create_model("repghostnet_050", checkpoint_path=path, use_ema=True)


def _rewrite_pickle(src: Path, dst: Path, old: bytes, new: bytes) -> None:
    """Copy a torch zip checkpoint, editing its pickle (GLOBAL opcodes end with a newline: lengths may change)."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            if name.endswith("data.pkl"):
                assert old in data
                data = data.replace(old, new)
            zout.writestr(name, data)


@pytest.mark.parametrize("numpy_era", ["numpy2", "numpy1"])
def test_training_checkpoint_with_numpy_scalars_loads(tmp_path, numpy_era):
    """Training scripts often store numpy scalars (metric, args). numpy 1.x pickles them as
    ``numpy.core.multiarray.scalar`` (numpy 2: ``numpy._core``); both name plain data and must load."""
    ckpt = _training_checkpoint(_sd("repghostnet_050"), None)
    ckpt["metric"] = np.float64(66.93)
    ckpt["args"].img_size = np.int64(224)
    path = tmp_path / "np.pth.tar"
    torch.save(ckpt, path)
    if numpy_era == "numpy1":
        old = tmp_path / "np2.pth.tar"
        path.rename(old)
        _rewrite_pickle(old, path, b"numpy._core.multiarray\n", b"numpy.core.multiarray\n")
        assert torch.load(path, weights_only=False)["metric"] == 66.93  # control: the file is valid
    _check_both_entry_points("repghostnet_050", path, _timm_source("repghostnet_050")[1])


_LOAD_AND_LIST_WARNINGS = """
import sys, warnings
import ghostnets
model = ghostnets.create_model("ghostnet_050")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    ghostnets.load_checkpoint(model, sys.argv[1])
for w in caught:
    print(f"{w.category.__name__}: {w.message}")
"""


@pytest.mark.slow  # a subprocess
def test_fitting_checkpoint_loads_without_any_warning(tmp_path):
    """In a fresh interpreter: whether some warnings fire depends on what was imported before (numpy.core)."""
    path = tmp_path / "weights.pth"
    torch.save(_sd("ghostnet_050"), path)
    done = subprocess.run([sys.executable, "-c", _LOAD_AND_LIST_WARNINGS, str(path)], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == ""


def test_create_model_without_name_needs_ghostnets_metadata(tmp_path):
    path = tmp_path / "weights.pth"
    torch.save(_sd("ghostnet_050"), path)
    with pytest.raises(CheckpointError):
        ghostnets.create_model(checkpoint_path=path)


# --------------------------------------------------------------------------------------------------- 2. unsafe pickles
class _OpenPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


class _SystemPayload:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {shlex.quote(str(self.marker))}",))


@pytest.mark.parametrize("payload, called", [(_OpenPayload, "open"), (_SystemPayload, "system")])
@pytest.mark.parametrize("layout", ["wrapped", "bare", "legacy_pickle"])
def test_unsafe_pickle_is_refused_without_running_it(tmp_path, payload, called, layout):
    marker = tmp_path / "pwned"
    evil = payload(marker)
    path = tmp_path / "evil.pth"
    if layout == "wrapped":
        torch.save({"state_dict": _sd("ghostnet_050"), "args": evil}, path)
    elif layout == "bare":
        torch.save(evil, path)
    else:  # not torch's zip format: what pickle.dump writes
        with open(path, "wb") as f:
            pickle.dump(evil, f, protocol=2)
    assert not marker.exists()

    for load in (lambda: ghostnets.load_checkpoint(ghostnets.create_model("ghostnet_050"), path),
                 lambda: ghostnets.create_model("ghostnet_050", checkpoint_path=path),
                 lambda: ghostnets.read_state_dict(path)):
        with pytest.raises(UnsafeCheckpointError) as info:
            load()
        message = str(info.value)
        assert "evil.pth" in message
        assert re.search(r"arbitrary code|execut|unsafe", message, re.IGNORECASE), message
        if layout != "legacy_pickle":  # torch can list the globals of zip files only
            assert called in message, message
        assert not marker.exists(), "the payload ran"

    # control: the payload is real, an unrestricted unpickle does create the marker
    if layout == "legacy_pickle":
        with open(path, "rb") as f:
            pickle.load(f)
    else:
        torch.load(path, weights_only=False)
    assert marker.exists()


# ---------------------------------------------------------------------------------------------------- 3. corrupt files
@pytest.fixture(scope="module")
def corrupt_files(tmp_path_factory):
    d = tmp_path_factory.mktemp("corrupt")
    sd = _sd("ghostnet_050")
    torch.save(sd, d / "good.pth")
    torch.save(sd, d / "good_legacy.pth", _use_new_zipfile_serialization=False)
    save_file({k: v.contiguous() for k, v in sd.items()}, str(d / "good.safetensors"))
    files = {}
    for name in ("good.pth", "good_legacy.pth", "good.safetensors"):
        data = (d / name).read_bytes()
        trunc = d / f"truncated_{name}"
        trunc.write_bytes(data[: len(data) // 2])
        files[f"truncated {name}"] = trunc
    contents = {"empty.pth": b"", "text.pth": b"this is not a checkpoint\n", "html.pth.tar": b"<html>404</html>",
                "binary.pth": bytes(range(256)) * 8, "ff.pth": b"\xff" * 512,
                "text.safetensors": b"not safetensors at all", "zeros.safetensors": b"\0" * 64}
    for name, data in contents.items():
        (d / name).write_bytes(data)
        files[name] = d / name
    files["missing.pth"] = d / "missing.pth"
    files["missing.safetensors"] = d / "missing.safetensors"
    files["a folder"] = d
    return files


CORRUPT = ["truncated good.pth", "truncated good_legacy.pth", "truncated good.safetensors", "empty.pth", "text.pth",
           "html.pth.tar", "binary.pth", "ff.pth", "text.safetensors", "zeros.safetensors", "missing.pth",
           "missing.safetensors", "a folder"]


@pytest.mark.parametrize("which", CORRUPT)
def test_corrupt_truncated_or_missing_file_raises_checkpoint_error(corrupt_files, which):
    path = corrupt_files[which]
    for load in (lambda: ghostnets.load_checkpoint(ghostnets.create_model("ghostnet_050"), path),
                 lambda: ghostnets.create_model("ghostnet_050", checkpoint_path=path)):
        with pytest.raises(CheckpointError) as info:
            load()
        assert path.name in str(info.value)
        # a damaged file is not a malicious one: don't tell the user it would run code
        assert not isinstance(info.value, UnsafeCheckpointError), str(info.value)


@pytest.mark.parametrize("content", [[1, 2, 3], torch.zeros(3), {"epoch": 3, "arch": "ghostnet"}])
def test_file_without_state_dict_raises_checkpoint_error(tmp_path, content):
    path = tmp_path / "odd.pth"
    torch.save(content, path)
    with pytest.raises(CheckpointError):
        ghostnets.load_checkpoint(ghostnets.create_model("ghostnet_050"), path)


# ------------------------------------------------------------------------------------- 4. wrong architecture / classes
@pytest.mark.slow  # the message's guess builds every registered model
def test_wrong_width_lists_shapes_and_names_the_architecture(tmp_path):
    path = tmp_path / "mystery.pth"
    torch.save(_sd("ghostnet_130"), path)
    model = ghostnets.create_model("ghostnet_100")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        ghostnets.load_checkpoint(model, path)
    message = str(info.value)
    assert "ghostnet_130" in message
    assert "conv_stem.weight" in message
    assert "(20, 3, 3, 3)" in message and "(16, 3, 3, 3)" in message  # file vs model shape
    assert "shape" in message.lower()
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "a failed load changed the model"
    with pytest.raises(CheckpointError, match="ghostnet_130"):
        ghostnets.create_model("ghostnet_100", checkpoint_path=path)


def test_the_guess_names_training_forms_first_and_deploy_forms_when_no_training_form_fits(monkeypatch):
    import ghostnets.checkpoint as checkpoint_module

    monkeypatch.setattr(checkpoint_module, "list_models", lambda: ["ghostnet_050", "ghostnet_130", "repghostnet_050"])
    guess = checkpoint_module._guess_architecture
    assert guess(_sd("ghostnet_130")) == ["ghostnet_130"]
    deployed = ghostnets.reparameterize(ghostnets.create_model("repghostnet_050")).state_dict()
    assert guess(deployed) == ["repghostnet_050 (deploy form)"]
    assert guess({"conv_stem.weight": torch.zeros(7, 3, 3, 3)}) == []


@pytest.mark.slow  # the message's guess builds every registered model
def test_wrong_family_lists_missing_and_unexpected_keys(tmp_path):
    v2 = tmp_path / "v2.pth"
    torch.save(_sd("ghostnetv2_100"), v2)
    with pytest.raises(CheckpointError) as info:
        ghostnets.create_model("ghostnet_100", checkpoint_path=v2)
    message = str(info.value)
    assert "unexpected" in message.lower() and "short_conv" in message
    assert "ghostnetv2_100" in message

    v1 = tmp_path / "v1.pth"
    torch.save(_sd("ghostnet_100"), v1)
    with pytest.raises(CheckpointError) as info:
        ghostnets.create_model("ghostnetv2_100", checkpoint_path=v1)
    message = str(info.value)
    assert "missing" in message.lower() and "short_conv" in message
    assert "ghostnet_100" in message


def test_different_class_count_keeps_backbone_and_warns(tmp_path):
    source, source_logits = _timm_source("ghostnet_050", num_classes=10)
    path = tmp_path / "ten_classes.pth"
    torch.save(source.state_dict(), path)
    source_features = _features(source)

    fresh = ghostnets.create_model("ghostnet_050")
    _assert_differs(_features(fresh), source_features)
    with pytest.warns(UserWarning, match="classifier"):
        loaded = ghostnets.load_checkpoint(fresh, path)
    with pytest.warns(UserWarning, match="classifier"):
        created = ghostnets.create_model("ghostnet_050", num_classes=1000, checkpoint_path=path)
    for model in (loaded, created):
        _assert_close(_features(model), source_features)
        assert model.get_classifier().out_features == 1000
        assert _logits(model).shape == (2, 1000)
        assert not torch.equal(model.get_classifier().weight[:10], source.get_classifier().weight)

    # without num_classes, create_model takes the file's class count (documented in create_model)
    _assert_close(_logits(_quiet_create("ghostnet_050", checkpoint_path=path)), source_logits)


# -------------------------------------------------------------------------------------------------- 5. save_checkpoint
def _listing(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_save_checkpoint_metadata_and_rebuild(tmp_path):
    torch.manual_seed(0)
    model = _randomize_bn(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1, drop_rate=0.1), seed=3)
    class_names = [f"class {i}" for i in range(9)] + ["été ☃"]
    folder = tmp_path / "out"
    folder.mkdir()
    path = folder / "model.safetensors"
    returned = ghostnets.save_checkpoint(model, path, class_names=class_names)
    assert Path(returned) == path
    assert _listing(folder) == ["model.safetensors"]  # no temporary file left

    # independent reader: every tensor of the model is in the file, unchanged
    stored = load_file(str(path))
    assert set(stored) == set(model.state_dict())
    assert all(torch.equal(stored[k], v) for k, v in model.state_dict().items())

    meta = ghostnets.read_metadata(path)
    assert meta["model"] == "ghostnet_050"
    assert meta["deploy"] is False
    assert meta["class_names"] == class_names
    assert meta["kwargs"]["num_classes"] == 10 and meta["kwargs"]["in_chans"] == 1
    assert meta["kwargs"]["drop_rate"] == pytest.approx(0.1)

    rebuilt = ghostnets.create_model(checkpoint_path=path)
    assert rebuilt.record.name == "ghostnet_050"
    assert rebuilt.num_classes == 10 and rebuilt.in_chans == 1 and rebuilt.drop_rate == pytest.approx(0.1)
    assert rebuilt.record.class_names == class_names
    x = _input(in_chans=1)
    _assert_close(_logits(rebuilt, x), _logits(model, x))
    _assert_differs(_logits(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1), x), _logits(model, x))


def test_save_checkpoint_refuses_other_suffixes(tmp_path):
    model = ghostnets.create_model("ghostnet_050")
    for name in ("model.pth", "model.pth.tar", "model.safetensor", "model"):
        with pytest.raises(ValueError, match="safetensors"):
            ghostnets.save_checkpoint(model, tmp_path / name)
    assert _listing(tmp_path) == []


def test_save_checkpoint_overwrite(tmp_path):
    first = _randomize_bn(ghostnets.create_model("ghostnet_050"), seed=1)
    second = _randomize_bn(ghostnets.create_model("ghostnet_050"), seed=2)
    path = tmp_path / "model.safetensors"
    ghostnets.save_checkpoint(first, path)
    original = path.read_bytes()
    with pytest.raises(FileExistsError):
        ghostnets.save_checkpoint(second, path, overwrite=False)
    assert path.read_bytes() == original
    assert _listing(tmp_path) == ["model.safetensors"]

    ghostnets.save_checkpoint(second, path)  # overwrite=True is the default
    assert _listing(tmp_path) == ["model.safetensors"]
    _assert_close(_logits(ghostnets.create_model(checkpoint_path=path)), _logits(second))


def test_save_checkpoint_is_atomic_when_writing_fails(tmp_path, monkeypatch):
    model = _randomize_bn(ghostnets.create_model("ghostnet_050"), seed=1)
    path = tmp_path / "model.safetensors"
    ghostnets.save_checkpoint(model, path)
    original = path.read_bytes()

    def half_write(tensors, filename, metadata=None):
        Path(filename).write_bytes(original[: len(original) // 2])
        raise OSError("disk full")

    monkeypatch.setattr("ghostnets.checkpoint.save_file", half_write)
    with pytest.raises(OSError, match="disk full"):
        ghostnets.save_checkpoint(_randomize_bn(ghostnets.create_model("ghostnet_050"), seed=2), path)
    assert path.read_bytes() == original
    assert _listing(tmp_path) == ["model.safetensors"]
    with pytest.raises(OSError, match="disk full"):
        ghostnets.save_checkpoint(model, tmp_path / "new.safetensors")
    assert _listing(tmp_path) == ["model.safetensors"]


@pytest.mark.parametrize("name", ["repghostnet_050", "ghostnetv2_100"])
def test_save_deploy_form_and_rebuild(tmp_path, name):
    torch.manual_seed(0)
    trained = _randomize_bn(ghostnets.create_model(name, num_classes=7), seed=4)
    deployed = ghostnets.reparameterize(trained)
    path = tmp_path / "deploy.safetensors"
    ghostnets.save_checkpoint(deployed, path, class_names=list("abcdefg"))
    assert _listing(tmp_path) == ["deploy.safetensors"]
    assert ghostnets.read_metadata(path)["deploy"] is True
    assert not any(k.endswith("running_var") for k in load_file(str(path)))

    rebuilt = ghostnets.create_model(checkpoint_path=path)
    assert rebuilt.deploy and not _has_bn(rebuilt)
    assert rebuilt.num_classes == 7 and rebuilt.record.class_names == list("abcdefg")
    _assert_close(_logits(rebuilt), _logits(trained))


# ---------------------------------------------------------------------------------------- 6. deploy and training forms
@pytest.mark.parametrize("name", ["repghostnet_050", "ghostnet_050"])
def test_deploy_file_into_training_model_returns_deploy_form(tmp_path, name):
    source, expected = _timm_source(name)
    ours = ghostnets.create_model(name)
    ours.load_state_dict(source.state_dict())
    deployed = ghostnets.reparameterize(ours)
    pth, st = tmp_path / "deploy.pth", tmp_path / "deploy.safetensors"
    torch.save(deployed.state_dict(), pth)
    ghostnets.save_checkpoint(deployed, st)

    with pytest.warns(UserWarning, match="deploy"):
        created = ghostnets.create_model(name, checkpoint_path=pth)
    fresh = ghostnets.create_model(name)
    with pytest.warns(UserWarning, match="deploy"):
        loaded = ghostnets.load_checkpoint(fresh, pth)
    for model in (created, loaded, _quiet_create(name, checkpoint_path=st)):
        assert model.deploy and not _has_bn(model)
        _assert_close(_logits(model), expected)
    assert not fresh.deploy and _has_bn(fresh), "load_checkpoint changed the model it was given into another form"


@pytest.mark.parametrize("name", ["ghostnet_050", "ghostnetv2_100", "repghostnet_050"])
def test_training_file_into_deploy_model_is_folded(tmp_path, name):
    path = tmp_path / "train.pth"
    torch.save(_sd(name), path)
    model = _quiet_create(name, deploy=True, checkpoint_path=path)
    assert model.deploy and not _has_bn(model)
    _assert_close(_logits(model), _timm_source(name)[1])


def _official_deploy_by_fusing_repghost_modules_only(model: nn.Module) -> nn.Module:
    official = copy.deepcopy(model).eval()
    for module in list(official.modules()):
        if isinstance(module, RepGhostModule):
            module.fuse()
    return official


def _check_official_deploy_file(path: Path, name: str, expected: torch.Tensor) -> None:
    keys = set(torch.load(path, weights_only=True))
    assert any(k.endswith("cheap_operation.weight") for k in keys)
    assert any(k.endswith("cheap_operation.bias") for k in keys)
    assert any(k.endswith("primary_conv.1.running_var") for k in keys)  # the other BNs are still there
    assert "bn1.running_var" in keys
    assert not any("fusion_bn" in k for k in keys)

    with pytest.warns(UserWarning, match="deploy"):
        created = ghostnets.create_model(name, checkpoint_path=path)
    deploy_model = _quiet_create(name, deploy=True, checkpoint_path=path)
    for model in (created, deploy_model):
        assert model.deploy and not _has_bn(model)
        _assert_close(_logits(model), expected)


def test_official_repghost_deploy_layout_loads(tmp_path):
    torch.manual_seed(0)
    trained = _randomize_bn(ghostnets.create_model("repghostnet_100"), seed=5)
    expected = _logits(trained)
    official = _official_deploy_by_fusing_repghost_modules_only(trained)
    assert _has_bn(official)  # control: only RepGhost modules were fused
    _assert_close(_logits(official), expected)
    path = tmp_path / "repghostnet_1_0x_deploy.pth"
    torch.save(official.state_dict(), path)
    _check_official_deploy_file(path, "repghostnet_100", expected)


def test_official_repghost_deploy_layout_written_by_timm_loads(tmp_path):
    """timm's ``repghost_model_convert`` is the official RepGhost convert script (switch_to_deploy per module)."""
    source, expected = _timm_source("repghostnet_050", seed=6)
    official = repghost_model_convert(source, do_copy=True).eval()
    _assert_close(_logits(official), expected)
    path = tmp_path / "repghostnet_0_5x_deploy.pth"
    torch.save(official.state_dict(), path)
    _check_official_deploy_file(path, "repghostnet_050", expected)


# -------------------------------------------------------------------------------------------------------------- 7. CLI
@pytest.mark.slow  # CLI runs on full-size models
def test_cli_reparam(tmp_path):
    _, expected = _timm_source("repghostnet_050", seed=7)
    src = tmp_path / "train.pth"
    torch.save({"state_dict": _sd("repghostnet_050", seed=7), "epoch": 10}, src)
    out = tmp_path / "deploy.safetensors"

    done = in_process("reparam", src, "--model", "repghostnet_050", "--out", out, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr
    lines = [line for line in done.stdout.splitlines() if "max" in line.lower()]
    assert lines, f"no max difference printed: {done.stdout!r}"
    numbers = [float(n) for n in re.findall(r"\d+(?:\.\d+)?(?:[eE][-+]?\d+)?", lines[0])]
    assert numbers and min(numbers) < 1e-3, lines[0]
    assert _listing(tmp_path) == ["deploy.safetensors", "train.pth"]
    assert ghostnets.read_metadata(out)["deploy"] is True
    rebuilt = ghostnets.create_model(checkpoint_path=out)
    assert rebuilt.deploy and not _has_bn(rebuilt)
    _assert_close(_logits(rebuilt), expected)

    written = out.read_bytes()
    again = in_process("reparam", src, "--model", "repghostnet_050", "--out", out, cwd=tmp_path)
    assert again.returncode != 0
    assert "Traceback" not in again.stderr and again.stderr.strip()
    assert out.read_bytes() == written

    _, other_expected = _timm_source("repghostnet_050", seed=8)
    other = tmp_path / "other.pth"
    torch.save(_sd("repghostnet_050", seed=8), other)
    forced = in_process("reparam", other, "--model", "repghostnet_050", "--out", out, "--force", cwd=tmp_path)
    assert forced.returncode == 0, forced.stderr
    _assert_close(_logits(ghostnets.create_model(checkpoint_path=out)), other_expected)
    assert _listing(tmp_path) == ["deploy.safetensors", "other.pth", "train.pth"]


@pytest.mark.slow  # a subprocess
def test_cli_reparam_missing_input_is_a_one_line_error(tmp_path):
    out = tmp_path / "deploy.safetensors"
    done = in_subprocess("reparam", tmp_path / "nope.pth", "--model", "repghostnet_050", "--out", out, cwd=tmp_path)
    assert done.returncode != 0
    assert "Traceback" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert "nope.pth" in done.stderr
    assert not out.exists()


# --------------------------------------------------------------- feature models and non-strict loading


def test_feature_models_round_trip_and_take_full_files(tmp_path):
    full = _randomize_bn(ghostnets.create_model("ghostnet_050"), seed=3).eval()
    full_path = tmp_path / "full.pth"
    torch.save(full.state_dict(), full_path)
    x = torch.randn(1, 3, 64, 64)
    features = ghostnets.create_model("ghostnet_050", features_only=True, out_indices=(1, 3),
                                      checkpoint_path=full_path).eval()
    with torch.no_grad():
        expected = features(x)
        assert torch.equal(expected[-1], full.blocks[:7](full.forward_stem(x)))
    saved = ghostnets.save_checkpoint(features, tmp_path / "features.safetensors")
    rebuilt = ghostnets.create_model(checkpoint_path=saved).eval()  # a feature model again, same taps
    assert rebuilt.out_indices == (1, 3)
    again = ghostnets.create_model("ghostnet_050", features_only=True, out_indices=(1, 3), checkpoint_path=saved)
    reloaded = ghostnets.load_checkpoint(ghostnets.create_model("ghostnet_050", features_only=True), full_path)
    with torch.no_grad():
        for model in (rebuilt, again.eval()):
            assert all(torch.equal(a, b) for a, b in zip(model(x), expected))
        assert torch.equal(reloaded.eval()(x)[3], expected[1])
    deployed = ghostnets.reparameterize(features)
    assert deployed.conv_stem.weight.is_contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        assert all((a - b).abs().max() < 1e-4 for a, b in zip(deployed(x), expected))


def test_non_strict_loading_still_converts_between_forms(tmp_path):
    train = _randomize_bn(ghostnets.create_model("repghostnet_050"), seed=4).eval()
    deploy_path = tmp_path / "deploy.pth"
    torch.save(ghostnets.reparameterize(train).state_dict(), deploy_path)
    x = torch.randn(1, 3, 64, 64)
    with pytest.warns(UserWarning, match="deploy"):
        loaded = ghostnets.load_checkpoint(ghostnets.create_model("repghostnet_050"), deploy_path, strict=False)
    with torch.no_grad():
        ref = train(x)
        assert (loaded.eval()(x) - ref).abs().max() <= 1e-4 * max(1.0, ref.abs().max().item())


@pytest.mark.parametrize("name", ["resnet56_cifar", "regnet_x_3_2gf", "mobilenetv3_small_100", "shufflenetv1_g3_050",
                                  "edgenext_xx_small"])
def test_file_without_metadata_keeps_its_class_count(name, tmp_path):
    """A bare state dict of a fine-tuned model, whatever its head is called (``fc``, ``classifier.3``, ``head.fc``):
    its 7 classes are read from the file and the fine-tuned classifier loads, instead of a 1000-class head
    re-initialised."""
    model = ghostnets.create_model(name, num_classes=7).eval()
    path = tmp_path / "finetuned.pth"
    torch.save(model.state_dict(), path)
    loaded = ghostnets.create_model(name, checkpoint_path=path).eval()
    assert loaded.num_classes == 7
    assert all(torch.equal(a, b) for a, b in zip(loaded.state_dict().values(), model.state_dict().values()))
