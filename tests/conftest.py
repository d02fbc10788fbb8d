"""Shared fixtures: small models that run in milliseconds on two CPU cores."""

from __future__ import annotations

import os
import tempfile

import pytest
import torch

from adaptive_resnet.models import DroppableResNet

# Measured profiles are cached per user; the tests keep theirs in a folder of their own, so a
# run neither reads a stale cache nor leaves one behind in the home folder.
os.environ["ADAPTIVE_RESNET_CACHE"] = tempfile.mkdtemp(prefix="adaptive-resnet-test-cache-")


@pytest.fixture(scope="session")
def tiny_model() -> DroppableResNet:
    """A CIFAR-stem ResNet-50 topology (16 bottlenecks, stages 3-4-6-3) at width 4."""
    torch.manual_seed(0)
    model = DroppableResNet("resnet50", num_classes=10, stem="cifar", base_channels=4).eval()
    # Non-trivial BN statistics, so that dropping a branch changes the output measurably.
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.1, 0.1)
    return model


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory):
    """A checkpoint file (as ``adaptive-resnet train`` writes) of a CIFAR-stem ResNet-50 at width
    4 for 10 classes, for commands that load one."""
    from adaptive_resnet.train import TrainConfig, build_model

    config = TrainConfig(data=".", arch="resnet50", stem="cifar", base_channels=4, num_classes=10)
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("checkpoint") / "ckpt.pt"
    torch.save({"model": build_model(config).state_dict(), "config": config.model_dump()}, path)
    return path


def pytest_collection_modifyitems(config, items):
    """Opt-in tests (slow: a whole-test-set study, real training; netns: clusters over shaped
    links) run for minutes: they get an hour before pytest-timeout fails them, the default
    run's tests the 300 s of pyproject.toml."""
    for item in items:
        opt_in = item.get_closest_marker("slow") or item.get_closest_marker("netns")
        if opt_in and not item.get_closest_marker("timeout"):
            item.add_marker(pytest.mark.timeout(3600))
