"""The errors graft raises for user mistakes.

Every message says three things: what was expected, what arrived, and how to fix it. The CLI prints
them without a traceback; the Python API raises them as ordinary exceptions.
"""

from __future__ import annotations


class GraftError(Exception):
    """Base class of every error graft raises on bad input.

    Built from three parts so that no message forgets one of them::

        GraftError("a checkpoint file", "a folder: runs/", "pass the .pt or .safetensors file inside it")
    """

    def __init__(self, expected: str, got: str | None = None, fix: str | None = None):
        self.expected = expected
        self.got = got
        self.fix = fix
        parts = [f"expected {expected}" if got is not None else expected]
        if got is not None:
            parts.append(f"got {got}")
        message = "; ".join(parts)
        if fix:
            message += f".\n  fix: {fix}"
        super().__init__(message)


class CheckpointError(GraftError):
    """A file that should hold weights cannot be read, or holds something else."""


class UnsafeCheckpointError(CheckpointError):
    """A pickle that holds code or objects beyond tensors: graft refuses to unpickle it."""


class HubUnavailableError(GraftError):
    """Pretrained weights could not be fetched from the hub (no network, unknown name...)."""


class ModelStructureError(GraftError):
    """graft cannot find a part of the network it needs (its head, its first layer, a block)."""


class ShapeError(GraftError):
    """Shapes that cannot be reconciled: input sizes, channels, tensor shapes."""


class LabelError(GraftError):
    """Label names that are inconsistent or do not match what was asked for."""


class DataError(GraftError):
    """A dataset that cannot be read or described."""
