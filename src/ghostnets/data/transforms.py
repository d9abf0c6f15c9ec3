"""Input pipelines described as data, so a checkpoint can record how its model expects images."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

import torch
from torchvision import transforms as T

from .fashion_mnist import MEAN as FASHION_MEAN
from .fashion_mnist import STD as FASHION_STD

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
_INTERPOLATIONS = {
    "nearest": T.InterpolationMode.NEAREST, "bilinear": T.InterpolationMode.BILINEAR,
    "bicubic": T.InterpolationMode.BICUBIC, "lanczos": T.InterpolationMode.LANCZOS,
}


@dataclass(frozen=True)
class InputSpec:
    """How a model takes images (a card's eval transform, a checkpoint's recorded input): convert to ``channels``,
    resize the short side to ``resize``, centre-crop ``size - 2*pad``, pad by ``pad`` with zeros, scale to [0, 1],
    [``bgr``: reverse RGB to BGR], normalise with ``mean``/``std`` (given in the model's channel order). ``input_size``
    and ``crop_pct`` give it in timm's terms. Models fed OpenCV-style BGR 0-255 (megvii's ShuffleNet V1) use
    ``bgr=True, mean=(0, 0, 0), std=(1 / 255,) * 3``."""

    channels: int = 3
    size: int = 224
    resize: int = 256
    pad: int = 0
    interpolation: str = "bicubic"
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD
    bgr: bool = False  # 3-channel images in BGR order (OpenCV's); default RGB

    @classmethod
    def from_crop_pct(cls, size: int, crop_pct: float, interpolation: str = "bicubic", mean=IMAGENET_MEAN,
                      std=IMAGENET_STD, channels: int = 3, bgr: bool = False) -> InputSpec:
        """The timm convention: resize to ``size / crop_pct``, then centre-crop ``size``."""
        return cls(channels, size, int(size / crop_pct), 0, interpolation, tuple(mean), tuple(std), bgr)

    @property
    def input_size(self) -> tuple[int, int, int]:
        """``(channels, size, size)``: the tensor one image becomes."""
        return (self.channels, self.size, self.size)

    @property
    def crop_pct(self) -> float:
        """The share of the resized short side the centre crop keeps (timm's ``crop_pct``)."""
        return (self.size - 2 * self.pad) / self.resize

    def with_channels(self, channels: int) -> InputSpec:
        """The same pipeline for ``channels``-channel images (mean/std repeated or averaged to fit)."""
        if channels == self.channels:
            return self
        bgr = self.bgr and channels == 3  # a channel order only means something for colour images
        if len(self.mean) == channels:
            return replace(self, channels=channels, bgr=bgr)
        mean, std = sum(self.mean) / len(self.mean), sum(self.std) / len(self.std)
        return replace(self, channels=channels, mean=(mean,) * channels, std=(std,) * channels, bgr=bgr)

    def as_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> InputSpec:
        return cls(**{**values, "mean": tuple(values["mean"]), "std": tuple(values["std"])})

    def transform(self) -> T.Compose:
        """The torchvision pipeline from a PIL image to a normalised (C, size, size) tensor."""
        if self.interpolation not in _INTERPOLATIONS:
            raise ValueError(f"interpolation must be one of {sorted(_INTERPOLATIONS)}, got {self.interpolation!r}")
        mode = "L" if self.channels == 1 else "RGB"
        steps = [T.Lambda(lambda image: image.convert(mode)),
                 T.Resize(self.resize, interpolation=_INTERPOLATIONS[self.interpolation]),
                 T.CenterCrop(self.size - 2 * self.pad)]
        if self.pad:
            steps.append(T.Pad(self.pad))
        steps.append(T.ToTensor())
        if self.bgr:
            steps.append(T.Lambda(rgb_to_bgr))
        steps.append(T.Normalize(self.mean, self.std))
        return T.Compose(steps)


TORCHVISION_EVAL = InputSpec(interpolation="bilinear")  # torchvision's V1 weights (and PyTorch's examples): 256 -> 224
FASHION_MNIST_INPUT = InputSpec(channels=1, size=32, resize=28, pad=2, interpolation="bilinear",
                                mean=(FASHION_MEAN,), std=(FASHION_STD,))
"""The bundled dataset's input: 28x28 grayscale placed in the middle of a 32x32 canvas (the smallest input every
model takes; the stem stays as published)."""


def fashion_mnist_input(size: int = 32, channels: int = 1) -> InputSpec:
    """The bundled dataset's input at ``size`` pixels: the 32x32 canvas of :data:`FASHION_MNIST_INPUT` scaled by
    ``size / 32`` (the 28x28 image up-sampled bilinearly to ``7 * size / 8``, centred with ``size / 16`` pixels of
    zeros each side), as ``channels`` identical channels (3: the RGB input an ImageNet-shaped model takes at 224 px).
    """
    if isinstance(size, bool) or not isinstance(size, int) or size < 32 or size % 16:
        raise ValueError(f"the bundled Fashion-MNIST scales to a multiple of 16 pixels from 32 (e.g. 32, 64, 224), "
                         f"got {size!r}")
    if channels not in (1, 3):
        raise ValueError(f"the bundled Fashion-MNIST comes as 1 (grayscale) or 3 (RGB) channels, got {channels!r}")
    if size == 32 and channels == 1:
        return FASHION_MNIST_INPUT
    return replace(FASHION_MNIST_INPUT, size=size, resize=7 * size // 8, pad=size // 16).with_channels(channels)


def rgb_to_bgr(images: torch.Tensor) -> torch.Tensor:
    """Reverse the channel axis of a (C, H, W) or (N, C, H, W) colour tensor (RGB <-> BGR)."""
    return images.flip(-3)


def normalize(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """[0, 1] RGB images normalised in place with ``spec``'s mean and std (reversed to BGR first if ``spec.bgr``)."""
    if spec.bgr:
        images.copy_(rgb_to_bgr(images))
    mean = torch.tensor(spec.mean, dtype=images.dtype).view(1, -1, 1, 1)
    std = torch.tensor(spec.std, dtype=images.dtype).view(1, -1, 1, 1)
    return images.sub_(mean).div_(std)
