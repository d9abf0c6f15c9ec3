"""Deploy: re-parameterize / fold BatchNorm and prove it (export and quantization come with later releases)."""

from .reparameterize import reparameterize
from .verify import is_equivalent, max_output_difference, randomize_batchnorm

__all__ = ["is_equivalent", "max_output_difference", "randomize_batchnorm", "reparameterize"]
