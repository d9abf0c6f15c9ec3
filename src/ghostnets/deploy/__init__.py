"""Deploy: re-parameterize / fold BatchNorm (export and quantization come with later releases)."""

from .reparameterize import reparameterize

__all__ = ["reparameterize"]
