"""The exceptions ghostnets raises: each one says what was expected, what was found and what to do."""

from __future__ import annotations


class GhostnetsError(Exception):
    """Base class of every error ghostnets raises on purpose."""


class UnknownModelError(GhostnetsError, KeyError):
    """A model name that is not registered."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class InputShapeError(GhostnetsError, ValueError):
    """A tensor the model cannot take (wrong rank, channels, size or dtype)."""


class CheckpointError(GhostnetsError, ValueError):
    """A checkpoint that does not fit the model, or that cannot be read."""


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint that would need arbitrary unpickling (code execution) to load."""


class NoWeightsError(GhostnetsError, ValueError):
    """``pretrained=True`` for a model that has no published weight file."""


class DownloadError(GhostnetsError, OSError):
    """A weight file that could not be downloaded (offline, HTTP error, interrupted) or did not match its sha256."""
