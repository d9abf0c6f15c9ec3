"""Knowledge distillation (GhostNetV3, arXiv 2404.11202): the loss against a hand computation and the official
formula, a frozen teacher, its loading and the errors, and tiny runs that save no teacher and resume with one."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
import yaml
from safetensors.torch import load_file, save_file

import ghostnets
from ghostnets.cli import main
from ghostnets.train import ConfigError, TrainConfig, Trainer, load_recipe, train, update_config
from ghostnets.train.distill import Distiller, FrozenTeacher, build_teacher, check_distillation, kd_loss
from ghostnets.train.state import load_state
from subsets import first_images

SUBSET = Path(__file__).parent / "data" / "fashion_mnist_subset.npz"
CPU = torch.device("cpu")


def tiny_config(data: Path = SUBSET, **overrides) -> TrainConfig:
    values = {"model": "ghostnet_050", "data": str(data), "batch_size": 32, "epochs": 2, "threads": 1, **overrides}
    return update_config(load_recipe("quick"), values, "test")


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory) -> Path:
    """96 training and 40 test images of the committed subset: 3 steps of 32 per epoch."""
    return first_images(tmp_path_factory.mktemp("data") / "tiny.npz", 96, 40)


@pytest.fixture(scope="module")
def teacher_file(tmp_path_factory) -> Path:
    """A teacher written by another code path: save_checkpoint of a registered model (random weights, 10 classes)."""
    torch.manual_seed(1)
    model = ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1)
    return ghostnets.save_checkpoint(model, tmp_path_factory.mktemp("teacher") / "teacher.safetensors")


def test_kd_loss_equals_a_hand_computation_and_the_official_formula():
    s, t = [[1.0, 2.0, 0.0], [0.5, -1.0, 3.0]], [[0.0, 1.0, 3.0], [2.0, 2.0, -2.0]]
    temperature = 2.0

    def softmax(row):
        e = [math.exp(v / temperature) for v in row]
        return [v / sum(e) for v in e]

    hand = sum(-sum(pt * math.log(ps) for pt, ps in zip(softmax(tr), softmax(sr))) for sr, tr in zip(s, t)) / 2
    student, teacher = torch.tensor(s), torch.tensor(t)
    assert kd_loss(student, teacher, temperature).item() == pytest.approx(hand, rel=1e-6)  # no T^2 factor
    # ghostnetv3_pytorch/train.py's kd_loss (with the return it lacks); it never applies its temperature
    official = -torch.bmm(F.softmax(teacher, 1).unsqueeze(1), F.log_softmax(student, 1).unsqueeze(2)).mean()
    torch.testing.assert_close(kd_loss(student, teacher, 1.0), official)


def test_distiller_weights_the_two_terms_and_weight_zero_is_the_plain_loss():
    torch.manual_seed(0)
    images, targets = torch.randn(4, 1, 32, 32), torch.tensor([0, 3, 5, 9])
    teacher = FrozenTeacher(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1))
    logits = torch.randn(4, 10)
    ce = F.cross_entropy(logits, targets, label_smoothing=0.1)
    loss, kd = Distiller(teacher, kd_loss_weight=0.5, temperature=3.0, ori_loss_weight=2.0)(ce, logits, images)
    expected_kd = 0.5 * kd_loss(logits, teacher(images), 3.0)
    torch.testing.assert_close(kd, expected_kd)
    torch.testing.assert_close(loss, 2.0 * ce + expected_kd)
    plain, zero = Distiller(teacher, kd_loss_weight=0.0)(ce, logits, images)
    assert plain.item() == ce.item() and zero.item() == 0.0


def test_the_teacher_stays_frozen_in_eval_mode_and_gets_no_gradients():
    torch.manual_seed(0)
    teacher = FrozenTeacher(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1, drop_rate=0.5))
    before = {k: v.clone() for k, v in teacher.state_dict().items()}
    student = ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1)
    distiller = Distiller(teacher)
    optimizer = torch.optim.SGD(student.parameters(), lr=0.1)
    student.train()
    teacher.train()  # what a student's .train() would do to a submodule: nothing here
    assert not any(m.training for m in teacher.modules())
    images, targets = torch.randn(8, 1, 32, 32), torch.randint(0, 10, (8,))
    logits = student(images)
    loss, _ = distiller(F.cross_entropy(logits, targets), logits, images)
    loss.backward()
    optimizer.step()
    assert all(p.grad is None and not p.requires_grad for p in teacher.parameters())
    assert all(p.grad is not None for p in student.parameters() if p.requires_grad)
    assert teacher(images).grad_fn is None
    for key, value in teacher.state_dict().items():  # BatchNorm statistics too: eval mode
        torch.testing.assert_close(value, before[key], rtol=0, atol=0)


def test_teacher_input_size_resizes_what_the_teacher_sees():
    seen = []
    model = ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1)
    model.register_forward_pre_hook(lambda m, args: seen.append(tuple(args[0].shape)))
    FrozenTeacher(model, input_size=48)(torch.randn(2, 1, 32, 32))
    assert seen == [(2, 1, 48, 48)]


def test_teachers_load_from_ghostnets_and_timm_files(teacher_file, tmp_path):
    config = TrainConfig(teacher="ghostnet_050", teacher_checkpoint=str(teacher_file), channels_last=False)
    teacher = build_teacher(config, 10, 1, 32, CPU)
    reference = ghostnets.create_model(checkpoint_path=teacher_file).eval()
    images = torch.randn(2, 1, 32, 32)
    torch.testing.assert_close(teacher(images), reference(images))
    import timm

    model = timm.create_model("resnet10t", num_classes=10, in_chans=1).eval()
    torch.save({"state_dict": model.state_dict(), "epoch": 3}, tmp_path / "timm.pth")  # a timm training checkpoint
    config = TrainConfig(teacher="timm:resnet10t", teacher_checkpoint=str(tmp_path / "timm.pth"))
    torch.testing.assert_close(build_teacher(config, 10, 1, 32, CPU)(images), model(images))


def test_settings_that_cannot_distil_are_refused_with_the_fix(teacher_file, tmp_path):
    cases = [({"teacher_checkpoint": str(teacher_file)}, "effect only with a teacher"),
             ({"kd_loss_weight": 0.5}, "effect only with a teacher"),
             ({"teacher": "ghostnet_050"}, "set teacher_checkpoint=FILE"),
             ({"kd_loss_weight": -1.0}, "kd_loss_weight must be a finite number >= 0"),
             ({"ori_loss_weight": float("nan")}, "ori_loss_weight must be"),
             ({"kd_loss_weight": 0.0, "ori_loss_weight": 0.0}, "both 0"),
             ({"kd_temperature": 0.0}, "kd_temperature must be a finite number > 0"),
             ({"teacher_input_size": 0}, "teacher_input_size must be")]
    for values, message in cases:
        if "teacher" not in values and message != "effect only with a teacher":
            values = {"teacher": "ghostnet_050", "teacher_checkpoint": str(teacher_file), **values}
        with pytest.raises(ConfigError, match=message):
            check_distillation(update_config(TrainConfig(), values, "test"))
    five = ghostnets.save_checkpoint(ghostnets.create_model("ghostnet_050", num_classes=5, in_chans=1),
                                     tmp_path / "five.safetensors")
    with pytest.raises(ConfigError, match="another number of classes.*same classes"):
        build_teacher(TrainConfig(teacher="ghostnet_050", teacher_checkpoint=str(five)), 10, 1, 32, CPU)
    import timm

    save_file(timm.create_model("resnet10t", num_classes=5, in_chans=1).state_dict(), str(tmp_path / "t5.safetensors"))
    timm_five = TrainConfig(teacher="timm:resnet10t", teacher_checkpoint=str(tmp_path / "t5.safetensors"))
    with pytest.raises(ConfigError, match="classifies 5 classes; the student's data has 10"):
        build_teacher(timm_five, 10, 1, 32, CPU)
    with pytest.raises(ConfigError, match="timm has no model 'resnet10'.*Did you mean timm:resnet1"):
        build_teacher(TrainConfig(teacher="timm:resnet10", teacher_checkpoint=str(five)), 10, 1, 32, CPU)
    # a run refuses before any file is written
    with pytest.raises(ConfigError, match="teacher_checkpoint"):
        train(tiny_config(teacher="ghostnet_050"), tmp_path / "run", progress_bar=False)
    assert not (tmp_path / "run").exists()


def test_the_ghostnetv3_recipe_holds_the_official_scripts_settings():
    """ghostnetv3_pytorch/train.py's parser defaults (docs: REFERENCE-ZOO §2 KD recipe)."""
    v3 = load_recipe("ghostnetv3")
    assert (v3.model, v3.teacher, v3.kd_loss_weight, v3.kd_temperature, v3.ori_loss_weight) == \
        ("ghostnetv3_130", "timm:beitv2_large_patch16_224", 1.0, 1.0, 1.0)
    assert (v3.opt, v3.lr, v3.lr_base_batch, v3.weight_decay, v3.sched, v3.epochs, v3.warmup_epochs,
            v3.batch_size, v3.smoothing, v3.model_ema, v3.mixup, v3.cutmix, v3.re_prob) == \
        ("sgd", 0.05, 0, 2e-5, "cosine", 300, 3, 128, 0.1, False, 0.0, 0.0, 0.0)
    with pytest.raises(ConfigError, match="teacher_checkpoint=FILE"):
        check_distillation(v3)
    check_distillation(update_config(load_recipe("ghostnetv3"), {"teacher": None}, "test"))  # trains without KD


@pytest.mark.slow
def test_a_distilled_run_logs_the_kd_term_saves_no_teacher_and_resumes(teacher_file, tiny_data, tmp_path,
                                                                       monkeypatch):
    kd = {"teacher": "ghostnet_050", "teacher_checkpoint": str(teacher_file), "kd_temperature": 2.0}
    unbroken, broken = tmp_path / "unbroken", tmp_path / "broken"
    trainer = Trainer(tiny_config(tiny_data, **kd), unbroken, progress_bar=False)
    trainer.fit()
    assert not any(m.training for m in trainer.distiller.teacher.modules())  # the student's .train() left it alone
    assert all(p.device == trainer.context.device for p in trainer.distiller.teacher.parameters())
    taught = {id(p) for group in trainer.optimizer.param_groups for p in group["params"]}
    assert not taught & {id(p) for p in trainer.distiller.teacher.parameters()}  # the optimizer never sees it
    rows = [json.loads(line) for line in (unbroken / "metrics.jsonl").read_text().splitlines()]
    assert all(0 < row["train_kd_loss"] < row["train_loss"] for row in rows)
    student_keys = set(ghostnets.create_model("ghostnet_050", num_classes=10, in_chans=1).state_dict())
    for name in ("last.safetensors", "best.safetensors"):
        assert set(load_file(str(unbroken / name))) == student_keys
    state = load_state(unbroken / "checkpoint.pth")
    assert set(state["state_dict"]) == student_keys and state["config"]["teacher"] == "ghostnet_050"
    assert yaml.safe_load((unbroken / "config.yaml").read_text())["teacher_checkpoint"] == str(teacher_file)

    original = Trainer._end_epoch

    def stop_after_the_first_epoch(self, row, log):
        original(self, row, log)
        raise RuntimeError("stopped after the first epoch")

    monkeypatch.setattr(Trainer, "_end_epoch", stop_after_the_first_epoch)
    with pytest.raises(RuntimeError, match="stopped after the first epoch"):
        train(tiny_config(tiny_data, **kd), broken, progress_bar=False)
    monkeypatch.setattr(Trainer, "_end_epoch", original)
    with pytest.raises(Exception, match="kd_temperature=2.0"):
        train(tiny_config(tiny_data, **{**kd, "kd_temperature": 1.0}), broken, resume=True, progress_bar=False)
    train(tiny_config(tiny_data, **kd), broken, resume=True, progress_bar=False)  # the teacher rebuilt from config
    a, b = load_file(str(unbroken / "last.safetensors")), load_file(str(broken / "last.safetensors"))
    assert max((a[k].float() - b[k].float()).abs().max().item() for k in a) <= 1e-5
    resumed = [json.loads(line) for line in (broken / "metrics.jsonl").read_text().splitlines()]
    assert resumed[-1]["train_kd_loss"] == pytest.approx(rows[-1]["train_kd_loss"], rel=1e-4)


@pytest.mark.slow
def test_kd_weight_zero_trains_exactly_as_without_a_teacher(teacher_file, tiny_data, tmp_path):
    plain = train(tiny_config(tiny_data, epochs=1), tmp_path / "plain", progress_bar=False)
    zero = train(tiny_config(tiny_data, epochs=1, teacher="ghostnet_050", teacher_checkpoint=str(teacher_file),
                             kd_loss_weight=0.0), tmp_path / "zero", progress_bar=False)
    row_plain, row_zero = (json.loads((tmp_path / d / "metrics.jsonl").read_text()) for d in ("plain", "zero"))
    assert row_zero["train_loss"] == row_plain["train_loss"] and row_zero["train_kd_loss"] == 0.0
    assert zero["final_top1"] == plain["final_top1"]
    a, b = (load_file(str(tmp_path / d / "last.safetensors")) for d in ("plain", "zero"))
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
def test_distillation_trains_under_amp_with_mixup_cutmix_accumulation_and_a_resized_teacher(teacher_file, tiny_data,
                                                                                             tmp_path):
    """bfloat16 autocast on the CPU (the teacher under the same autocast), Mixup/CutMix soft targets, 2 micro-batches,
    the teacher seeing 40 px images."""
    config = tiny_config(tiny_data, epochs=1, amp=True, mixup=0.2, cutmix=1.0, accum_steps=2, teacher="ghostnet_050",
                         teacher_checkpoint=str(teacher_file), teacher_input_size=40)
    train(config, tmp_path / "amp", progress_bar=False)
    row = json.loads((tmp_path / "amp" / "metrics.jsonl").read_text())
    assert math.isfinite(row["train_loss"]) and 0 < row["train_kd_loss"] < row["train_loss"]


@pytest.mark.slow
def test_two_gloo_processes_distil_as_one_process_accumulating_their_half_batches(teacher_file, tiny_data, tmp_path):
    """Only the student is wrapped in DDP; each process runs its own copy of the teacher on its half batch. Set from
    the command line (``ghostnets train ... teacher=... teacher_checkpoint=...``)."""
    args = ["train", "--model", "ghostnet_050", "--data", str(tiny_data), "--no-progress", "epochs=1", "drop_rate=0",
            "threads=1", "batch_size=32", "teacher=ghostnet_050", f"teacher_checkpoint={teacher_file}"]
    single, double = tmp_path / "single", tmp_path / "double"
    assert main([*args, "--out", str(single), "accum_steps=2"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--master_port",
                             str(29600 + os.getpid() % 1000), "-m", "ghostnets", *args, "--out", str(double)],
                            env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "distilled from ghostnet_050" in result.stderr and "on 2 process(es)" in result.stderr
    a, b = (load_file(str(d / "last.safetensors")) for d in (single, double))
    params = [k for k in a if "running_" not in k and "num_batches" not in k]
    assert max((a[k] - b[k]).abs().max().item() for k in params) <= 1e-4
    rows = [json.loads((d / "metrics.jsonl").read_text()) for d in (single, double)]
    assert rows[1]["train_kd_loss"] == pytest.approx(rows[0]["train_kd_loss"], rel=1e-4)
