"""Channel pruning: He, Zhang, Sun, "Channel Pruning for Accelerating Very Deep Neural Networks", ICCV 2017
(arXiv 1707.06168), the baseline the GhostNet paper compares with on CIFAR-10.

For each prunable pair of convolutions A -> B (the first conv(s) of a residual branch -> the next one; a conv of a
plain chain such as VGG's ``features`` -> the next conv; block outputs and the last conv before the classifier are
never pruned), from input to output:

1. sample ``samples_per_image`` output positions of B per calibration image; X = B's input patches in the model
   pruned so far, Y = B's output (before its BatchNorm) in the original model (Sec. 3.3: pruned inputs, original
   outputs, so the error does not accumulate);
2. channel selection (Sec. 3.1, Eq. 3): Y ~ sum_c beta_c Z_c with Z_c = X_c W_c^T, a LASSO on beta; lambda is raised
   (a batched bisection, the LASSO solved by FISTA) until at most k betas are non-zero, and the k largest |beta| stay;
3. reconstruction (Eq. 3 with beta fixed): least squares for B's weights on the kept input channels, solved by
   its normal equations in float64 (the patches' Gram matrix, which the LASSO uses too: one pass over the samples,
   and an n x n solve instead of a QR of the M x n patches), with a tiny ridge towards the original weights so that
   fewer samples than unknowns still give an answer;
4. A loses its dropped output channels (weight, bias, the BatchNorm's parameters and statistics), B the matching
   input channels.

The kept width k is one ratio for every prunable layer (the paper's uniform setting), the largest whose MAdds stay
<= the target. The result records its widths so a checkpoint rebuilds it (:func:`apply_pruned_widths`).
"""

from __future__ import annotations

import contextlib
import copy
import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.models.resnet as tv_resnet
from torch import nn

from ..counting import conv_madds, conv_output_sizes, count_madds, madds_input_size
from ..errors import CheckpointError, GhostnetsError
from ..layers.conv_bn_act import ConvSequence
from ..layers.resnet_blocks import BasicBlock, Bottleneck
from ..layers.wide_basic import WideBasic
from ..models.features import FeatureListNet
from ..record import in_chans_of, is_deploy, model_name, record_of
from ..table import format_table
from .edits import record_edit, register_edit

# Residual blocks whose branch is conv1 -> bn1 -> relu -> conv2 [-> bn2 -> relu -> conv3]: (A, its BN, B) per pair
BLOCK_PAIRS = {BasicBlock: (("conv1", "bn1", "conv2"),), tv_resnet.BasicBlock: (("conv1", "bn1", "conv2"),),
               Bottleneck: (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3")),
               tv_resnet.Bottleneck: (("conv1", "bn1", "conv2"), ("conv2", "bn2", "conv3")),
               WideBasic: (("conv1", "bn2", "conv2"),)}  # pre-activation: conv1 -> bn2 -> relu -> dropout -> conv2
# Modules a plain chain may hold between two convs: they act on each channel alone, without parameters
CHANNELWISE = (nn.ReLU, nn.ReLU6, nn.LeakyReLU, nn.SiLU, nn.Hardswish, nn.GELU, nn.Identity, nn.Dropout,
               nn.MaxPool2d, nn.AvgPool2d)
LASSO_GRID = 16  # lambdas tried at once per bisection round
RIDGE = 1e-6  # least squares: ridge towards the original weights, relative to the mean diagonal of P^T P


class PruneError(GhostnetsError, ValueError):
    """A model, target or calibration batch channel pruning cannot work with."""


@dataclass(frozen=True)
class PrunePair:
    """Conv ``conv`` (A) whose output channels can go, the ``norms`` between, and the conv ``consumer`` (B) reading
    them; ``between`` names every module in between (feature taps there change width too)."""

    conv: str
    consumer: str
    norms: tuple[str, ...]
    between: tuple[str, ...] = ()


@dataclass(frozen=True)
class PrunedLayer:
    """One pruned conv: its channels before and after, and the relative error of its consumer's output on the
    calibration samples with the kept channels' original weights (before) and after least squares."""

    name: str
    consumer: str
    channels_before: int
    channels_after: int
    error_before: float
    error_after: float


@dataclass
class PruneReport:
    """What :func:`prune_channels` did, layer by layer, with whole-model MAdds (``print(report)`` shows the table)."""

    target_madds: int
    input_size: tuple[int, int]
    keep_ratio: float
    calib_images: int
    samples_per_image: int
    madds_before: int = 0
    madds_after: int = 0
    layers: list[PrunedLayer] = field(default_factory=list)

    def table(self) -> str:
        rows = [(c.name, c.consumer, c.channels_before, c.channels_after, f"{c.error_before:.4f}",
                 f"{c.error_after:.4f}") for c in self.layers]
        rows.append(("total (whole model)", "", sum(c.channels_before for c in self.layers),
                     sum(c.channels_after for c in self.layers),
                     f"MAdds {self.madds_before / 1e6:.2f}M", f"-> {self.madds_after / 1e6:.2f}M"))
        h, w = self.input_size
        return (f"Channel pruning (He et al., ICCV 2017) to <= {self.target_madds / 1e6:.2f}M MAdds at {h}x{w}: keep "
                f"ratio {self.keep_ratio:.3f}; {self.calib_images} calibration images x {self.samples_per_image} "
                "samples; error = |Y - Y'| / |Y| of the next layer's output\n"
                + format_table(["layer", "next layer", "channels", "kept", "error before LS", "after LS"], rows))

    def __str__(self) -> str:
        return self.table()


def _prunable(conv: nn.Module) -> bool:
    return type(conv) is nn.Conv2d and conv.groups == 1 and conv.padding_mode == "zeros"


def _leaves(seq: nn.Sequential, prefix: str):
    for name, child in seq.named_children():
        path = f"{prefix}.{name}" if prefix else name
        yield from _leaves(child, path) if isinstance(child, nn.Sequential) else [(path, child)]


def _chain_pairs(seq: nn.Sequential, prefix: str) -> list[PrunePair] | None:
    """Pairs of consecutive convs in a plain ``nn.Sequential`` chain, or ``None`` if it is not one."""
    leaves = list(_leaves(seq, prefix))
    if not all(isinstance(m, (nn.Conv2d, nn.BatchNorm2d, *CHANNELWISE)) for _, m in leaves):
        return None
    convs = [i for i, (_, m) in enumerate(leaves) if isinstance(m, nn.Conv2d)]
    pairs = []
    for i, j in zip(convs, convs[1:]):
        (a, conv), (b, consumer) = leaves[i], leaves[j]
        if _prunable(conv) and _prunable(consumer):
            between = leaves[i + 1:j]
            pairs.append(PrunePair(a, b, tuple(n for n, m in between if isinstance(m, nn.BatchNorm2d)),
                                   tuple(n for n, _ in between)))
    return pairs


def prunable_pairs(model: nn.Module) -> list[PrunePair]:
    """Every conv -> consumer pair channel pruning may cut between, in forward order (module order)."""
    pairs, chains = [], []
    for name, module in model.named_modules():
        if any(name.startswith(c + ".") for c in chains):
            continue
        prefix = f"{name}." if name else ""
        if type(module) in BLOCK_PAIRS:
            for a, bn, b in BLOCK_PAIRS[type(module)]:
                conv, norm, consumer = (getattr(module, n, None) for n in (a, bn, b))
                if _prunable(conv) and _prunable(consumer) and isinstance(norm, nn.BatchNorm2d):
                    pairs.append(PrunePair(prefix + a, prefix + b, (prefix + bn,), (prefix + bn,)))
        elif isinstance(module, nn.Sequential):
            found = _chain_pairs(module, name)
            if found is not None:
                chains.append(name)
                pairs.extend(found)
    return pairs


def _slice_(param: torch.Tensor | None, index: torch.Tensor, dim: int = 0) -> torch.Tensor | None:
    if param is None:
        return None
    kept = param.detach().index_select(dim, index.to(param.device))
    if param.dim() == 4 and param.is_contiguous(memory_format=torch.channels_last) and not param.is_contiguous():
        kept = kept.contiguous(memory_format=torch.channels_last)
    return nn.Parameter(kept, requires_grad=param.requires_grad) if isinstance(param, nn.Parameter) else kept


@torch.no_grad()
def _cut(model: nn.Module, pair: PrunePair, keep: torch.Tensor, consumer_weight: torch.Tensor | None = None) -> None:
    """Keep output channels ``keep`` of ``pair.conv`` (and its norms) and the matching inputs of the consumer."""
    conv, consumer = model.get_submodule(pair.conv), model.get_submodule(pair.consumer)
    conv.weight, conv.bias = _slice_(conv.weight, keep), _slice_(conv.bias, keep)
    conv.out_channels = len(keep)
    for name in pair.norms:
        bn = model.get_submodule(name)
        bn.weight, bn.bias = _slice_(bn.weight, keep), _slice_(bn.bias, keep)
        for buffer in ("running_mean", "running_var"):
            setattr(bn, buffer, _slice_(getattr(bn, buffer), keep))
        bn.num_features = len(keep)
    new = _slice_(consumer.weight, keep, 1)
    if consumer_weight is not None:
        new.copy_(consumer_weight.to(new))
    consumer.weight, consumer.in_channels = new, len(keep)
    for info in getattr(model, "feature_info", None) or []:
        if isinstance(info, dict) and info.get("module") in pair.between:
            info["num_chs"] = len(keep)


def _finish(pruned: nn.Module, source: nn.Module, widths: dict[str, int], report: PruneReport | None = None
            ) -> nn.Module:
    if hasattr(pruned, "use_channels_last") and hasattr(pruned, "channels_last"):
        pruned.use_channels_last(pruned.channels_last)
    return record_edit(pruned, source, "prune", {"widths": {k: int(v) for k, v in widths.items()}}, report)


def _check_model(model: nn.Module) -> list[PrunePair]:
    if isinstance(model, FeatureListNet):
        raise PruneError("prune the classifier model, not its features_only wrapper (create_model without "
                         "features_only=True); build the feature model from the pruned checkpoint afterwards")
    residual_free = any(edit.op == "remove_residuals" for edit in record_of(model).edits)
    if is_deploy(model) and not residual_free:  # RMNet's plain form is BN-free by construction: its biased convs prune
        raise PruneError("channel pruning needs the training form (it prunes the BatchNorms along with the convs): "
                         "prune the training model or checkpoint, not its deploy form, and reparameterize the "
                         "pruned model afterwards")
    pairs = prunable_pairs(model)
    if not pairs:
        raise PruneError(f"{model_name(model)} has no prunable layer: channel pruning needs plain nn.Conv2d -> "
                         "BatchNorm -> nn.Conv2d pairs inside residual blocks (ResNet BasicBlock/Bottleneck) or in a "
                         "plain nn.Sequential chain (VGG); Ghost modules and grouped convs are not pruned")
    return pairs


def apply_pruned_widths(model: nn.Module, widths: dict[str, int]) -> nn.Module:
    """A copy of ``model`` with the structure :func:`prune_channels` recorded: the first ``widths[name]`` output
    channels of each named conv (and of its BatchNorm), the matching inputs of the conv after it. Weights are
    whatever ``model`` had: load the pruned checkpoint's into it (``create_model(checkpoint_path=...)`` does)."""
    pairs = {p.conv: p for p in prunable_pairs(model)}
    unknown = [n for n in widths if n not in pairs]
    if unknown:
        raise CheckpointError(f"the recorded pruning names {', '.join(unknown[:5])}, which are not prunable "
                              f"convolutions of {model_name(model)} (those are "
                              f"{', '.join(list(pairs)[:5])}{', ...' if len(pairs) > 5 else ''}); was the "
                              "checkpoint written for another model?")
    pruned = copy.deepcopy(model)
    for name, k in widths.items():
        channels = pruned.get_submodule(name).out_channels
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= channels:
            raise CheckpointError(f"the recorded width of {name} is {k!r}; it must be an integer from 1 to its "
                                  f"{channels} channels")
        _cut(pruned, pairs[name], torch.arange(k))
    return _finish(pruned, model, widths)


def _madds_function(model: nn.Module, pairs: list[PrunePair], size: tuple[int, int]):
    """``(madds(widths), madds of the model)``: the whole model's MAdds at ``size`` for any kept widths, exactly as
    :func:`count_madds` counts them (conv cost = H_out W_out C_out C_in/g k_h k_w), without running it again."""
    in_chans = in_chans_of(model)
    base = count_madds(model, size, in_chans)
    producer = {p.consumer: p.conv for p in pairs}
    names = {p.conv for p in pairs} | set(producer)
    convs = {n: model.get_submodule(n) for n in names}
    chans = in_chans or next(m for m in model.modules() if isinstance(m, nn.Conv2d)).in_channels
    sizes = conv_output_sizes(model, convs, size, chans)

    def cost(name: str, out: int, inp: int) -> int:
        return conv_madds(convs[name], sizes[name], out, inp)

    def madds(widths: dict[str, int]) -> int:
        saved = 0
        for name, conv in convs.items():
            out = widths.get(name, conv.out_channels)
            inp = widths.get(producer.get(name), conv.in_channels)
            saved += cost(name, conv.out_channels, conv.in_channels) - cost(name, out, inp)
        return base - saved

    return madds, base


def _uniform_widths(model: nn.Module, pairs: list[PrunePair], ratio: float) -> dict[str, int]:
    return {p.conv: min(c, max(1, round(ratio * c))) for p in pairs
            for c in [model.get_submodule(p.conv).out_channels]}


def _patches(conv: nn.Conv2d, x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """The (M, C k_h k_w) input patches of ``conv`` at output positions ``pos`` (M rows of image, row, column)."""
    x = F.pad(x, conv._reversed_padding_repeated_twice) if any(conv._reversed_padding_repeated_twice) else x
    (kh, kw), (sh, sw), (dh, dw) = conv.kernel_size, conv.stride, conv.dilation
    rows = pos[:, 1, None] * sh + torch.arange(kh, device=x.device) * dh
    cols = pos[:, 2, None] * sw + torch.arange(kw, device=x.device) * dw
    picked = x[pos[:, 0, None, None], :, rows[:, :, None], cols[:, None, :]]  # (M, kh, kw, C)
    return picked.permute(0, 3, 1, 2).reshape(len(pos), -1)


def _lasso(gram: np.ndarray, corr: np.ndarray, lams: np.ndarray, iters: int = 500) -> np.ndarray:
    """argmin_beta 1/2 beta^T G beta - c^T beta + lam |beta|_1 for every lam at once (FISTA); (C, len(lams)).

    NumPy, not torch: thousands of tiny steps, where torch's per-op (and thread) overhead would dominate."""
    step = 1.0 / max(float(np.linalg.eigvalsh(gram)[-1]), 1e-30)
    beta = np.zeros((len(corr), len(lams)))
    y, t = beta, 1.0
    for _ in range(iters):
        z = y - step * (gram @ y - corr[:, None])
        new = np.sign(z) * np.maximum(np.abs(z) - step * lams, 0.0)
        t_next = (1 + math.sqrt(1 + 4 * t * t)) / 2
        y = new + (t - 1) / t_next * (new - beta)
        done = np.abs(new - beta).max() <= 1e-7 * max(1.0, np.abs(new).max())
        beta, t = new, t_next
        if done:
            break
    return beta


@dataclass
class Samples:
    """What one pair's regression needs, in float64: the patches' Gram matrix P^T P, P^T Y and |Y|^2 (M samples,
    n = C k_h k_w patch entries, Y the consumer's original outputs, M x C_out)."""

    gram: torch.Tensor
    cross: torch.Tensor
    energy: float

    @classmethod
    def of(cls, patches: torch.Tensor, target: torch.Tensor) -> Samples:
        p, y = patches.detach().double().cpu(), target.detach().double().cpu()
        return cls(p.T @ p, p.T @ y, float(y.square().sum()))


def select_channels(samples: Samples, weight: torch.Tensor, keep: int) -> torch.Tensor:
    """The ``keep`` input channels of a conv (``weight``: C_out x C x k_h x k_w) that best explain its original
    outputs: the LASSO of He et al. Eq. 3 on beta (Y ~ sum_c beta_c Z_c, Z_c = X_c W_c^T), lambda raised until at
    most ``keep`` betas are non-zero, then the largest |beta| (ties by a smaller lambda's). Sorted indices."""
    c_out, chans = weight.shape[:2]
    if keep >= chans:
        return torch.arange(chans)
    w = weight.detach().double().cpu().reshape(c_out, -1)
    kk = w.shape[1] // chans
    # G_cd = <Z_c, Z_d> = sum P^T P * W^T W over each channel pair's entries; c_c = <Z_c, Y>; Z never formed
    gram = (samples.gram * (w.T @ w)).reshape(chans, kk, chans, kk).sum((1, 3))
    corr = (w * samples.cross.T).reshape(c_out, chans, kk).sum((0, 2))
    scale = float(gram.diagonal().mean())
    if scale <= 0:  # no channel contributes anything: keep the first ones
        return torch.arange(keep)
    gram, corr = (gram / scale).numpy(), (corr / scale).numpy()
    lo, hi = 0.0, float(np.abs(corr).max())  # beta = 0 from hi up
    beta_lo, beta_hi = np.zeros(chans), np.zeros(chans)
    for _ in range(4):  # each round: LASSO_GRID lambdas at once, then the interval between the two that straddle k
        lams = np.linspace(lo, hi, LASSO_GRID + 2)[1:-1]
        betas = _lasso(gram, corr, lams)
        fits = np.flatnonzero((betas != 0).sum(0) <= keep)
        first = int(fits[0]) if len(fits) else LASSO_GRID  # lams ascend: the first that keeps <= k
        if first > 0:
            lo, beta_lo = float(lams[first - 1]), betas[:, first - 1]
        if first < LASSO_GRID:
            hi, beta_hi = float(lams[first]), betas[:, first]
        if np.count_nonzero(beta_hi) == keep:
            break
    order = np.argsort(-np.abs(corr), kind="stable")
    order = order[np.argsort(-np.abs(beta_lo[order]), kind="stable")]
    order = order[np.argsort(-np.abs(beta_hi[order]), kind="stable")]
    return torch.from_numpy(np.sort(order[:keep]))


def least_squares_weights(samples: Samples, weight: torch.Tensor,
                          keep: torch.Tensor) -> tuple[torch.Tensor, float, float]:
    """He et al. Eq. 3 with beta fixed: the weights on input channels ``keep`` that reproduce the original outputs
    in the least-squares sense (normal equations in float64, a ridge of 1e-6 of the Gram matrix's mean diagonal pulling
    towards the original weights so that fewer samples than unknowns still give an answer). Returns them
    (C_out x k x k_h x k_w) and the relative error |Y - Y'| / |Y| with the kept channels' original weights and
    with the new ones."""
    c_out, chans, kh, kw = weight.shape
    kk = kh * kw
    idx = (keep.cpu()[:, None] * kk + torch.arange(kk)).reshape(-1)
    gram, cross = samples.gram[idx][:, idx], samples.cross[idx]
    w0 = weight.detach().double().cpu()[:, keep.cpu()].reshape(c_out, -1).T  # n x C_out
    n = len(idx)
    ridge = RIDGE * float(gram.diagonal().sum()) / n or 1e-12
    new = w0 + torch.linalg.solve(gram + ridge * torch.eye(n, dtype=gram.dtype), cross - gram @ w0)

    def error(w: torch.Tensor) -> float:  # |Y - P w|^2 = |Y|^2 - 2 <w, P^T Y> + <w, P^T P w>
        squared = samples.energy - 2 * float((w * cross).sum()) + float((w * (gram @ w)).sum())
        return math.sqrt(max(squared, 0.0) / samples.energy) if samples.energy > 0 else 0.0

    return new.T.reshape(c_out, len(keep), kh, kw).to(weight.dtype), error(w0), error(new)


class _Stop(Exception):
    """Raised by a hook once it has what it needs: the rest of the forward pass is not run."""


def _chunks(calib: torch.Tensor):
    step = max(1, 2 ** 20 // (calib.shape[-1] * calib.shape[-2]))
    return [calib[i:i + step] for i in range(0, len(calib), step)]


@torch.no_grad()
def _sample_outputs(model: nn.Module, pairs: list[PrunePair], chunks: list[torch.Tensor], seed: int,
                    per_image: int) -> tuple[dict[str, list], dict[str, torch.Tensor]]:
    """Per consumer conv: the sampled positions per chunk and its original outputs there (before bias and BN)."""
    positions: dict[str, list[torch.Tensor]] = {p.consumer: [] for p in pairs}
    outputs: dict[str, list[torch.Tensor]] = {p.consumer: [] for p in pairs}
    gens = {p.consumer: torch.Generator().manual_seed(seed * 100_003 + i) for i, p in enumerate(pairs)}

    def hook(name: str):
        def record(module: nn.Conv2d, args: tuple, out: torch.Tensor) -> None:
            n, _, h, w = out.shape
            s = min(per_image, h * w)
            flat = torch.rand(n, h * w, generator=gens[name]).argsort(1)[:, :s].reshape(-1)
            image = torch.arange(n).repeat_interleave(s)
            pos = torch.stack([image, flat // w, flat % w], 1).to(out.device)
            y = out[pos[:, 0], :, pos[:, 1], pos[:, 2]]
            positions[name].append(pos)
            outputs[name].append(y - module.bias if module.bias is not None else y)
        return record

    hooks = [model.get_submodule(n).register_forward_hook(hook(n)) for n in positions]
    try:
        for chunk in chunks:
            model(chunk)
    finally:
        for h in hooks:
            h.remove()
    return positions, {n: torch.cat(ys) for n, ys in outputs.items()}


def _unit(model: nn.Module, name: str) -> tuple[str, int] | None:
    """(outermost plain ``nn.Sequential`` holding ``name``, index of the child holding it), or ``None``."""
    parts = name.split(".")
    for i in range(len(parts) - 1):
        prefix = ".".join(parts[:i])
        if type(model.get_submodule(prefix)) in (nn.Sequential, ConvSequence) and parts[i].isdigit():
            return prefix, int(parts[i])
    return None


class _InputSampler:
    """B's input patches in the model pruned so far, one pass per pair.

    A pass starts from the input of the ``nn.Sequential`` child holding the previous pair's A, kept from the last
    pass (everything before it is final), instead of from the images: a block or two per pair, not the network."""

    def __init__(self, model: nn.Module, chunks: list[torch.Tensor]) -> None:
        self.model, self.chunks = model, chunks
        self.cache: tuple[str, int, list[torch.Tensor]] | None = None

    @torch.no_grad()
    def patches(self, pair: PrunePair, positions: list[torch.Tensor]) -> torch.Tensor:
        conv, found = self.model.get_submodule(pair.consumer), []

        def grab(module: nn.Conv2d, args: tuple) -> None:
            found.append(_patches(module, args[0], positions[len(found)]))
            raise _Stop

        a, b = _unit(self.model, pair.conv), _unit(self.model, pair.consumer)
        unit = a if a and b and a[0] == b[0] and a[1] <= b[1] else None
        hooks = [conv.register_forward_pre_hook(grab)]
        kept: list[torch.Tensor] = []
        try:
            if unit and self.cache and self.cache[0] == unit[0] and self.cache[1] <= unit[1]:
                seq, start = self.model.get_submodule(unit[0]), self.cache[1]
                for x in self.cache[2]:
                    try:
                        for t in range(start, b[1] + 1):
                            if t == unit[1]:
                                kept.append(x)
                            x = seq[t](x)
                    except _Stop:
                        pass
            else:
                if unit:
                    child = self.model.get_submodule(unit[0])[unit[1]]
                    hooks.append(child.register_forward_pre_hook(lambda m, args: kept.append(args[0])))
                for chunk in self.chunks:
                    with contextlib.suppress(_Stop):
                        self.model(chunk)
        finally:
            for h in hooks:
                h.remove()
        self.cache = (unit[0], unit[1], kept) if unit else None
        return torch.cat(found)


def _check_calib(calib: torch.Tensor, model: nn.Module) -> torch.Tensor:
    if not isinstance(calib, torch.Tensor) or calib.dim() != 4 or not calib.is_floating_point():
        raise PruneError("calib must be a float tensor of preprocessed images, (N, C, H, W); got "
                         f"{type(calib).__name__}{tuple(calib.shape) if isinstance(calib, torch.Tensor) else ''}")
    if len(calib) == 0:
        raise PruneError("the calibration batch is empty: pass at least one preprocessed image (N >= 1; the paper "
                         "samples 10 positions from each of 5000 images)")
    chans = in_chans_of(model)
    if calib.shape[1] != chans:
        raise PruneError(f"the calibration images have {calib.shape[1]} channels, the model takes {chans}")
    param = next(model.parameters())
    return calib.to(device=param.device, dtype=param.dtype)


def prune_channels(model: nn.Module, target_madds: int, calib: torch.Tensor, *,
                   input_size: int | tuple[int, int] | None = None, seed: int = 0,
                   samples_per_image: int = 10) -> nn.Module:
    """Return a pruned copy of ``model`` (eval mode) with at most ``target_madds`` multiply-adds at ``input_size``
    (default: the model's own input size, 32 px for CIFAR models, else 224), by He et al.'s LASSO channel selection and
    least-squares reconstruction on ``calib`` (a preprocessed float batch, N x C x H x W). ``model`` is untouched.
    The result's record carries the widths for checkpoints and :class:`PruneReport` as ``.record.report``."""
    pairs = _check_model(model)
    if isinstance(target_madds, bool) or not isinstance(target_madds, (int, float)) or target_madds <= 0:
        raise PruneError(f"target_madds must be a positive number of multiply-adds, got {target_madds!r}")
    if isinstance(samples_per_image, bool) or not isinstance(samples_per_image, int) or samples_per_image < 1:
        raise PruneError(f"samples_per_image must be an integer >= 1, got {samples_per_image!r}")
    target = int(target_madds)
    calib = _check_calib(calib, model)
    size = madds_input_size(model, input_size)
    madds, base = _madds_function(model, pairs, size)
    if target >= base:
        raise PruneError(f"the model has {base / 1e6:.2f}M MAdds at {size[0]}x{size[1]}, already <= the target "
                         f"{target / 1e6:.2f}M: nothing to prune; give a smaller target")
    least = madds(_uniform_widths(model, pairs, 0.0))
    if target < least:
        raise PruneError(f"a target of {target / 1e6:.2f}M MAdds cannot be reached: keeping 1 channel in each of the "
                         f"{len(pairs)} prunable layers leaves {least / 1e6:.2f}M (the minimum; the stem, block "
                         "outputs and classifier are not pruned); give a target >= that")
    lo, hi = 0.0, 1.0  # the largest uniform keep ratio whose MAdds fit
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if madds(_uniform_widths(model, pairs, mid)) <= target else (lo, mid)
    widths = _uniform_widths(model, pairs, lo)

    was_training = model.training
    model.eval()
    try:
        chunks = _chunks(calib)
        positions, targets = _sample_outputs(model, pairs, chunks, seed, samples_per_image)
        pruned = copy.deepcopy(model).eval()
    finally:
        model.train(was_training)
    report = PruneReport(target, size, lo, len(calib), samples_per_image, madds_before=base)
    sampler = _InputSampler(pruned, chunks)
    for pair in pairs:
        consumer, k = pruned.get_submodule(pair.consumer), widths[pair.conv]
        channels = pruned.get_submodule(pair.conv).out_channels
        samples = Samples.of(sampler.patches(pair, positions[pair.consumer]), targets[pair.consumer])
        keep = select_channels(samples, consumer.weight, k)
        new, before, after = least_squares_weights(samples, consumer.weight, keep)
        _cut(pruned, pair, keep, new)
        report.layers.append(PrunedLayer(pair.conv, pair.consumer, channels, k, before, after))
    report.madds_after = count_madds(pruned, size, in_chans_of(model))
    return _finish(pruned, model, widths, report).eval()


register_edit("prune", lambda model, args: apply_pruned_widths(model, **args))
