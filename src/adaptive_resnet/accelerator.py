"""Which torch device runs training and studies: ``auto`` takes a GPU when there is one."""

from __future__ import annotations

from adaptive_resnet.errors import UserInputError

CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str) -> torch.device:  # noqa: F821
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` as a :class:`torch.device`, refusing a missing GPU."""
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cpu":
        return torch.device("cpu")
    if name == "cuda" or name.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise UserInputError(f"device {name!r} asked for, but torch sees no CUDA GPU here; use --device cpu or auto")
        return torch.device(name)
    raise UserInputError(f"unknown device {name!r}; valid: {', '.join(CHOICES)}, cuda:N")
