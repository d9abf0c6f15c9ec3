"""The steps the checkpoint-to-checkpoint commands (reparam, remove-residuals, prune, ghostify) share: refuse bad
paths before the work, and write a converted model only when it computes what the source does."""

from __future__ import annotations

from pathlib import Path

from torch import nn


def check_paths(out: Path, force: bool, checkpoint: Path | None = None) -> None:
    """``out`` must name a ``.safetensors`` file that may be written; ``checkpoint`` (if given) must exist."""
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must name a .safetensors file, got {out}")
    if checkpoint is not None and not checkpoint.is_file():
        raise FileNotFoundError(f"{checkpoint} does not exist (or is not a file)")
    if out.exists() and not force:  # fail before the work, not after it
        raise FileExistsError(f"{out} exists; pass --force to overwrite it")


def save_if_equivalent(source: nn.Module, converted: nn.Module, out: Path, *, force: bool, what: str, form: str,
                       input_size: tuple[int, int] = (224, 224)) -> bool:
    """Compare the logits of ``source`` and ``converted`` (``what``: "training vs deploy"; ``form``: "the deploy
    form") on random inputs of ``input_size``; write ``converted`` to ``out`` only if they agree, else return False
    with nothing written."""
    from ..checkpoint import save_checkpoint
    from ..transforms import is_equivalent, max_output_difference

    diff, scale = max_output_difference(source, converted, input_size)
    print(f"max |Δ logits| {what}: {diff:.3g} (max |logits| {scale:.3g})")
    if not is_equivalent(diff, scale):
        print(f"ghostnets: error: {form} is not equivalent; nothing written")
        return False
    save_checkpoint(converted, out, overwrite=force)
    return True
