"""Training runs end to end on the committed Fashion-MNIST subset: files, resume after SIGKILL and Ctrl-C, faults,
eval/predict agreeing with the trainer, ImageFolder data with corrupt files, and a real 2-process gloo DDP job."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

import ghostnets
from ghostnets.cli import main
from ghostnets.data import FashionMNIST
from ghostnets.train import ConfigError, TrainingDiverged, load_recipe, train, update_config
from ghostnets.train.state import load_state
from subsets import first_images

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
TINY = ["--model", "ghostnet_050", "--data", str(SUBSET), "--no-progress", "batch_size=32", "threads=2"]

pytestmark = pytest.mark.slow  # trains models, runs torchrun and the CLI in subprocesses


def tiny_config(**overrides):
    values = {"model": "ghostnet_050", "data": str(SUBSET), "batch_size": 32, "epochs": 2, "threads": 2, **overrides}
    return update_config(load_recipe("quick"), values, "test")


def ghostnets_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "ghostnets", *args]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def assert_same_weights(a: dict, b: dict, atol: float) -> None:
    assert a.keys() == b.keys()
    worst = max((a[k].float() - b[k].float()).abs().max().item() for k in a)
    assert worst <= atol, f"weights differ by up to {worst:.3g}"


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("run") / "quick"
    summary = train(tiny_config(epochs=2), out, progress_bar=False)
    return out, summary


def test_a_run_writes_checkpoints_metrics_curves_and_a_summary(finished_run):
    out, summary = finished_run
    for name in ("config.yaml", "checkpoint.pth", "last.safetensors", "best.safetensors", "metrics.jsonl",
                 "metrics.csv", "curves.png", "summary.json"):
        assert (out / name).is_file(), name
    assert list((out / "tensorboard").glob("events.out.tfevents.*"))
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]
    assert all({"train_loss", "train_top1", "eval_top1", "eval_top5", "eval_loss", "lr"} <= row.keys() for row in rows)
    assert (out / "metrics.csv").read_text().splitlines()[0].startswith("epoch,")
    assert rows[1]["train_loss"] < rows[0]["train_loss"]  # it learns
    assert json.loads((out / "summary.json").read_text())["final_top1"] == rows[-1]["eval_top1"]
    with Image.open(out / "curves.png") as png:
        assert png.size[0] > 500
    assert summary["epochs"] == 2 and summary["images_per_second"] > 0


def test_saved_weights_rebuild_with_labels_and_match_the_training_state(finished_run):
    out, _ = finished_run
    model = ghostnets.create_model(checkpoint_path=out / "last.safetensors")
    assert (model.record.name, model.num_classes, model.in_chans) == ("ghostnet_050", 10, 1)
    assert model.record.class_names == list(FashionMNIST.classes)
    state = load_state(out / "checkpoint.pth")
    assert (state["epoch"], state["step"], state["updates"]) == (2, 0, 18)
    assert_same_weights(weights(out / "last.safetensors"), state["state_dict"], atol=0)
    meta = ghostnets.read_metadata(out / "last.safetensors")
    assert meta["extra"]["recipe"] == "quick" and meta["input"].size == 32


def test_eval_command_reproduces_the_trainers_figures_in_both_forms(finished_run, capsys):
    """``ghostnets eval`` reads the file and the data on its own path; it must agree with the run's log."""
    out, _ = finished_run
    recorded = json.loads((out / "metrics.jsonl").read_text().splitlines()[-1])
    for extra in ([], ["--reparam"]):
        assert main(["eval", "--checkpoint", str(out / "last.safetensors"), "--data", str(SUBSET), *extra]) == 0
        printed = capsys.readouterr().out
        assert f"top-1 {recorded['eval_top1']:.2f}%" in printed and "on 100 images" in printed
        assert ("deploy form" in printed) == bool(extra)
    # the resumable state file is an official-layout checkpoint that records its model too
    assert main(["eval", "--checkpoint", str(out / "checkpoint.pth"), "--data", str(SUBSET)]) == 0
    assert f"top-1 {recorded['eval_top1']:.2f}%" in capsys.readouterr().out


def test_predict_labels_image_files_and_skips_unreadable_ones(finished_run, tmp_path, capsys):
    out, _ = finished_run
    test = FashionMNIST("test", file=SUBSET)
    image, _ = test[3]
    good, broken = tmp_path / "item.png", tmp_path / "broken.png"
    image.resize((56, 56)).save(good)  # any size: the recorded input transform resizes it
    broken.write_bytes(b"not an image")
    assert main(["predict", "--checkpoint", str(out / "last.safetensors"), "--top-k", "3", str(good),
                 str(broken)]) == 0
    captured = capsys.readouterr()
    line = next(row for row in captured.out.splitlines() if row.startswith(str(good)))
    assert len(line.split("%,")) == 3 and any(name in line for name in FashionMNIST.classes)
    probabilities = [float(part.rsplit(" ", 1)[-1].rstrip("%")) for part in line.split(": ", 1)[1].split(", ")]
    assert probabilities == sorted(probabilities, reverse=True) and sum(probabilities) <= 100.05
    assert "broken.png: skipped" in captured.err
    assert main(["predict", "--checkpoint", str(out / "checkpoint.pth"), "--top-k", "3", str(good)]) == 0
    assert capsys.readouterr().out.strip() == line  # the run's state file: same model, labels and transform


def test_an_earlier_run_is_never_overwritten_silently(finished_run, capsys):
    out, _ = finished_run
    before = (out / "last.safetensors").read_bytes()
    assert main(["train", *TINY, "--out", str(out), "epochs=1"]) == 2
    assert "--resume" in capsys.readouterr().err and (out / "last.safetensors").read_bytes() == before


def test_resume_after_sigkill_ends_where_an_unbroken_run_ends(tmp_path):
    settings = ["epochs=2", "checkpoint_every=1"]
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    assert main(["train", *TINY, "--out", str(unbroken), *settings]) == 0
    process = subprocess.Popen(ghostnets_command("train", *TINY, "--out", str(broken), *settings),
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (broken / "checkpoint.pth").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(0.3)  # a few steps more, so the kill lands in the middle of an epoch
    process.send_signal(signal.SIGKILL)
    assert process.wait() == -signal.SIGKILL, "the run finished before it could be killed"
    state = load_state(broken / "checkpoint.pth")
    assert state["updates"] < 18
    assert main(["train", *TINY, "--out", str(broken), "--resume", *settings]) == 0
    assert_same_weights(weights(unbroken / "last.safetensors"), weights(broken / "last.safetensors"), atol=1e-5)
    rows = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert [row["epoch"] for row in rows] == [0, 1]


def test_ctrl_c_writes_a_checkpoint_mid_epoch_and_the_run_resumes(tmp_path):
    out = tmp_path / "run"
    process = subprocess.Popen(ghostnets_command("train", *TINY, "--out", str(out), "epochs=2"),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "config.yaml").exists() and process.poll() is None and time.time() < deadline:
        time.sleep(0.01)
    time.sleep(1.0)
    process.send_signal(signal.SIGINT)
    _, err = process.communicate(timeout=120)
    assert process.returncode == 130, err
    assert "saved" in err and "--resume" in err
    state = load_state(out / "checkpoint.pth")
    assert (state["epoch"], state["step"]) != (0, 0) and state["epoch"] < 2
    summary = train(tiny_config(epochs=2), out, resume=True, progress_bar=False)
    assert summary["epochs"] == 2 and load_state(out / "checkpoint.pth")["updates"] == 18


def test_a_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    out = tmp_path / "run"
    with pytest.raises(TrainingDiverged, match="NaN/inf.*last good checkpoint"):
        train(tiny_config(epochs=2, lr=1e12, checkpoint_every=1), out, progress_bar=False)
    kept = load_state(out / "checkpoint.pth")
    assert 1 <= kept["updates"] < 18
    assert all(torch.isfinite(v).all() for v in kept["state_dict"].values() if v.is_floating_point())


def test_mixed_precision_mixup_cutmix_clipping_and_accumulation_train(tmp_path):
    """bfloat16 autocast on the CPU, timm's Mixup/CutMix with soft-target loss, gradient clipping, 2 micro-batches."""
    summary = train(tiny_config(epochs=1, amp=True, mixup=0.2, cutmix=1.0, clip_grad=1.0, accum_steps=2,
                                model_ema=True), tmp_path / "run", progress_bar=False)
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text())
    assert np.isfinite(row["train_loss"]) and 0 < row["train_loss"] < 3 and "eval_ema_top1" in row
    assert summary["final_top1"] >= 0


def test_settings_that_cannot_work_fail_before_any_file_is_written(tmp_path):
    with pytest.raises(ValueError, match="float16 autocast is for CUDA"):
        train(tiny_config(amp=True, amp_dtype="float16"), tmp_path / "a", progress_bar=False)
    with pytest.raises(ConfigError, match="must be even"):
        train(tiny_config(mixup=0.2, batch_size=30, accum_steps=2), tmp_path / "b", progress_bar=False)
    with pytest.raises(ConfigError, match="sched must be one of"):
        train(tiny_config(sched="plateau"), tmp_path / "c", progress_bar=False)
    assert not any(p.exists() for p in (tmp_path / "a", tmp_path / "b", tmp_path / "c"))


def test_force_starts_over_without_old_tensorboard_events(tmp_path):
    out = tmp_path / "run"
    train(tiny_config(epochs=1), out, progress_bar=False)
    old_events = set((out / "tensorboard").glob("events.*"))
    train(tiny_config(epochs=1), out, force=True, progress_bar=False)
    assert old_events and not old_events & set((out / "tensorboard").glob("events.*"))


def test_resume_refuses_a_different_model(finished_run, capsys):
    out, _ = finished_run
    code = main(["train", "--model", "ghostnet_100", "--data", str(SUBSET), "--out", str(out), "--resume",
                 "--no-progress"])
    assert code == 2 and "model='ghostnet_050'" in capsys.readouterr().err


def _image_folder(root: Path, classes: dict[str, list[str]], corrupt: int = 0) -> Path:
    rng = np.random.default_rng(0)
    for split, names in classes.items():
        for c, name in enumerate(names):
            folder = root / split / name
            folder.mkdir(parents=True)
            for i in range(12 if split == "train" else 4):
                pixels = np.full((40, 40, 3), 40 + 150 * c, np.uint8) + rng.integers(0, 30, (40, 40, 3), np.uint8)
                Image.fromarray(pixels).save(folder / f"{i}.jpg")
    for i in range(corrupt):
        (root / "train" / classes["train"][0] / f"bad{i}.jpg").write_bytes(b"\xff\xd8\xff garbage")
    return root


def test_image_folder_training_skips_and_counts_corrupt_files(tmp_path):
    data = _image_folder(tmp_path / "data", {"train": ["cat", "dog"], "val": ["cat", "dog"]}, corrupt=2)
    out = tmp_path / "run"
    with pytest.warns(UserWarning, match="bad0.jpg"):
        summary = train(update_config(load_recipe("repghostnet_small"), {
            "model": "repghostnet_050", "data": str(data), "epochs": 1, "batch_size": 26, "img_size": 32,
            "workers": 0, "threads": 2, "model_ema": True, "amp": False}, "test"), out, progress_bar=False)
    assert summary["skipped_images"] == 2
    row = json.loads((out / "metrics.jsonl").read_text())
    assert row["train_skipped"] == 2 and "eval_ema_top1" in row
    model = ghostnets.create_model(checkpoint_path=out / "last.safetensors")
    assert model.record.class_names == ["cat", "dog"] and model.in_chans == 3


def test_eval_refuses_data_with_other_classes_than_the_checkpoint(finished_run, tmp_path, capsys):
    out, _ = finished_run
    data = _image_folder(tmp_path / "data", {"train": ["cat", "dog"], "val": ["cat", "dog"]})
    assert main(["eval", "--checkpoint", str(out / "last.safetensors"), "--data", str(data), "--workers", "0"]) == 2
    err = capsys.readouterr().err
    assert "trained on 10 classes" in err and "the data has 2" in err


def test_image_folder_whose_val_classes_differ_fails_before_training(tmp_path, capsys):
    data = _image_folder(tmp_path / "data", {"train": ["cat", "dog"], "val": ["cat", "owl"]})
    assert main(["train", "--model", "ghostnet_050", "--data", str(data), "--out", str(tmp_path / "run"),
                 "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "'dog'" in err and "'owl'" in err and not (tmp_path / "run" / "checkpoint.pth").exists()


def test_two_gloo_processes_reach_the_weights_of_one_process_with_the_same_global_batch(tmp_path):
    """DDP averages the gradients of two half batches; one process accumulating the same two half batches
    (micro-batch j = the images rank j gets) must take the same steps. Dropout off (each rank draws its own).
    Tolerance 1e-4: float sums in another order over 18 SGD steps."""
    settings = ["epochs=2", "drop_rate=0", "threads=1", "batch_size=32"]
    single, double = tmp_path / "single", tmp_path / "double"
    assert main(["train", *TINY, "--out", str(single), *settings, "accum_steps=2"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                             str(29500 + os.getpid() % 1000), "-m", "ghostnets", "train", *TINY, "--out", str(double),
                             *settings], env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "on 2 process(es)" in result.stderr
    a, b = weights(single / "last.safetensors"), weights(double / "last.safetensors")
    params = {k for k in a if "running_" not in k and "num_batches" not in k}
    assert_same_weights({k: a[k] for k in params}, {k: b[k] for k in params}, atol=1e-4)


@pytest.mark.parametrize(("model", "recipe"), [("wrn16_8_cifar", "wrn_cifar"),
                                               ("resnext29_8x64d_cifar", "resnext_cifar"),
                                               ("res2net50_26w_4s", "resnet_imagenet")])
def test_residual_families_train_on_the_bundled_data_with_their_recipes(tmp_path, model, recipe):
    """The papers' recipes as files, on the bundled Fashion-MNIST at 32 px (1 channel, 10 classes), narrowed and cut
    to one epoch of 64 images: the run finishes, evaluates and its checkpoint rebuilds the trained model."""
    data = first_images(tmp_path / "small.npz", 64, 32)
    config = update_config(load_recipe(recipe), {"model": model, "data": str(data), "batch_size": 32, "epochs": 1,
                                                 "threads": 2, "model_kwargs": {"width": 0.25}}, "test")
    assert config.model == model
    summary = train(config, tmp_path / model, progress_bar=False)
    assert summary["epochs"] == 1 and 0 <= summary["final_top1"] <= 100
    rebuilt = ghostnets.create_model(checkpoint_path=tmp_path / model / "last.safetensors")
    assert rebuilt.in_chans == 1 and rebuilt.num_classes == 10
