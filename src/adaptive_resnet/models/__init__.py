"""The droppable ResNet, its block names and drop plans.

Names and drop plans (:mod:`.naming`) are plain Python; the network (:mod:`.resnet`) needs
torch, which takes seconds to import. The planner uses only the former, so the latter is
imported when first asked for (PEP 562), and ``plan`` does not pay for torch.
"""

from adaptive_resnet.models.naming import HEAD, STEM, Connection, DropPlan, block_name, block_names

_FROM_RESNET = ("ARCHS", "DroppableResNet", "load_weights", "run_block")


def __getattr__(name: str):
    if name in _FROM_RESNET:
        from adaptive_resnet.models import resnet

        return getattr(resnet, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "ARCHS",
    "HEAD",
    "STEM",
    "Connection",
    "DropPlan",
    "DroppableResNet",
    "block_name",
    "block_names",
    "load_weights",
    "run_block",
]
