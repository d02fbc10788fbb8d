"""The droppable ResNet, its block names and drop plans."""

from adaptive_resnet.models.naming import HEAD, STEM, Connection, DropPlan, block_name, block_names
from adaptive_resnet.models.resnet import ARCHS, DroppableResNet, load_weights, run_block

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
