"""A torchvision ResNet whose residual blocks can be dropped at inference time.

:class:`DroppableResNet` *is* a ``torchvision.models.ResNet`` (a subclass), so its state-dict
keys are torchvision's and standard weight files load unchanged. It only replaces the forward
pass: each block runs whole, or with its residual branch (DC) or its shortcut (SC) dropped, as a
:class:`~adaptive_resnet.models.naming.DropPlan` says. The plan is an argument of ``forward`` (or
the model's current ``plan``), never baked into the weights, so it can change from one batch to
the next without copying anything.

The same forward can run a contiguous range of units (``stage1``, blocks, ``head``): the
distributed runtime runs one device's share this way, and the drop study reuses activations
shared by drop sets with a common prefix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck, ResNet

from adaptive_resnet.errors import UserInputError, unknown_choice
from adaptive_resnet.models.naming import (
    HEAD,
    STEM,
    Connection,
    DropPlan,
    block_names,
    torchvision_path,
)


@dataclass(frozen=True)
class ArchSpec:
    """Topology of one ResNet family member, as torchvision builds it: ResNeXt and Wide ResNet
    are the same Bottleneck blocks with grouped (``groups``) or wider (``width_per_group``)
    3x3 convolutions, so they drop the same way."""

    block: type[BasicBlock | Bottleneck]
    layers: tuple[int, int, int, int]
    groups: int = 1
    width_per_group: int = 64


ARCHS: dict[str, ArchSpec] = {
    "resnet18": ArchSpec(BasicBlock, (2, 2, 2, 2)),
    "resnet34": ArchSpec(BasicBlock, (3, 4, 6, 3)),
    "resnet50": ArchSpec(Bottleneck, (3, 4, 6, 3)),
    "resnet101": ArchSpec(Bottleneck, (3, 4, 23, 3)),
    "resnet152": ArchSpec(Bottleneck, (3, 8, 36, 3)),
    "resnext50_32x4d": ArchSpec(Bottleneck, (3, 4, 6, 3), groups=32, width_per_group=4),
    "resnext101_32x8d": ArchSpec(Bottleneck, (3, 4, 23, 3), groups=32, width_per_group=8),
    "resnext101_64x4d": ArchSpec(Bottleneck, (3, 4, 23, 3), groups=64, width_per_group=4),
    "wide_resnet50_2": ArchSpec(Bottleneck, (3, 4, 6, 3), width_per_group=128),
    "wide_resnet101_2": ArchSpec(Bottleneck, (3, 4, 23, 3), width_per_group=128),
}
STEMS = ("imagenet", "cifar")


def residual_branch(block: BasicBlock | Bottleneck, x: Tensor) -> Tensor:
    """The block's direct connection (DC): its convolutions, before the addition."""
    out = block.relu(block.bn1(block.conv1(x)))
    if isinstance(block, Bottleneck):
        out = block.relu(block.bn2(block.conv2(out)))
        return block.bn3(block.conv3(out))
    return block.bn2(block.conv2(out))


def shortcut(block: BasicBlock | Bottleneck, x: Tensor) -> Tensor:
    """The block's skip connection (SC): identity, or the projection of a first block."""
    return x if block.downsample is None else block.downsample(x)


def run_block(
    block: BasicBlock | Bottleneck,
    x: Tensor,
    dropped: Connection | None = None,
    drop_path_prob: float = 0.0,
) -> Tensor:
    """One residual block with ``dropped`` removed (paper, Fig. 5).

    Dropping DC leaves ``relu(shortcut(x))``, which for an identity block is ``x`` itself (its
    input already went through a ReLU): the block is "as if never computed". Dropping SC leaves
    ``relu(residual_branch(x))``. ``drop_path_prob`` is stochastic depth for training: each sample's
    residual branch is dropped with that probability and scaled by 1/(1-p) when kept, so that the
    trained network expects exactly the DC drop used at inference.
    """
    if dropped is Connection.DC:
        return torch.relu(shortcut(block, x))  # not in-place: x may be a cached activation
    if dropped is Connection.SC:
        return torch.relu(residual_branch(block, x))
    if drop_path_prob > 0.0 and block.training:
        keep = 1.0 - drop_path_prob
        mask = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(keep) / keep
        return torch.relu(shortcut(block, x) + residual_branch(block, x) * mask)
    return block(x)


class DroppableResNet(ResNet):
    """torchvision's ResNet plus drop plans, paper block names and a CIFAR stem option.

    Args:
        arch: one of :data:`ARCHS`.
        num_classes: size of the classifier.
        stem: ``"imagenet"`` (7x7 stride-2 conv and max-pool, torchvision's) or ``"cifar"``
            (3x3 stride-1 conv, no max-pool, for 32x32 inputs).
        base_channels: channels of the stem and of ``layer1``'s bottleneck; each later stage
            doubles it. 64 is torchvision's; 16 gives a network that trains on two CPU cores.
        drop_path_rate: stochastic-depth rate of the last block; block ``i`` of ``n`` gets
            ``rate * i / (n - 1)`` (Huang et al. 2016, as timm computes it).
    """

    def __init__(
        self,
        arch: str = "resnet50",
        num_classes: int = 1000,
        stem: str = "imagenet",
        base_channels: int = 64,
        drop_path_rate: float = 0.0,
    ) -> None:
        if arch not in ARCHS:
            raise unknown_choice("architecture", arch, ARCHS)
        if stem not in STEMS:
            raise unknown_choice("stem", stem, STEMS)
        if base_channels < 1 or num_classes < 1:
            raise UserInputError("base_channels and num_classes must be positive")
        spec = ARCHS[arch]
        super().__init__(spec.block, list(spec.layers), num_classes=num_classes, groups=spec.groups,
                         width_per_group=spec.width_per_group)
        self.arch, self.stem, self.base_channels = arch, stem, base_channels
        if stem != "imagenet" or base_channels != 64:
            self._rebuild(spec, num_classes)
        self.block_names: list[str] = block_names(spec.layers)
        self._blocks: dict[str, BasicBlock | Bottleneck] = {
            name: block
            for name, block in zip(
                self.block_names, (b for layer in self._layers() for b in layer), strict=True
            )
        }
        self.set_drop_path(drop_path_rate)
        self.plan = DropPlan()

    def set_drop_path(self, rate: float, schedule: str = "linear") -> None:
        """Stochastic-depth probabilities: ``linear`` gives block i of n ``rate * i / (n - 1)``
        (timm's rule, so the first block is never dropped); ``uniform`` gives every block ``rate``."""
        if not 0.0 <= rate < 1.0:
            raise UserInputError(f"drop_path_rate must be in [0, 1), got {rate}")
        if schedule not in ("linear", "uniform"):
            raise unknown_choice("drop-path schedule", schedule, ["linear", "uniform"])
        n = len(self.block_names)
        self.drop_path_probs: dict[str, float] = {
            name: rate if schedule == "uniform" else rate * i / max(n - 1, 1) for i, name in enumerate(self.block_names)
        }

    def _rebuild(self, spec: ArchSpec, num_classes: int) -> None:
        """Rebuild stem, stages and classifier at another width or with the CIFAR stem.

        Uses torchvision's own ``_make_layer`` so blocks are the same classes with the same
        attribute names; only the channel counts and the stem differ.
        """
        width = self.base_channels
        self.inplanes, self.dilation = width, 1
        if self.stem == "cifar":
            self.conv1 = nn.Conv2d(3, width, kernel_size=3, stride=1, padding=1, bias=False)
            self.maxpool = nn.Identity()
        else:
            self.conv1 = nn.Conv2d(3, width, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = self._norm_layer(width)
        self.layer1 = self._make_layer(spec.block, width, spec.layers[0])
        self.layer2 = self._make_layer(spec.block, width * 2, spec.layers[1], stride=2)
        self.layer3 = self._make_layer(spec.block, width * 4, spec.layers[2], stride=2)
        self.layer4 = self._make_layer(spec.block, width * 8, spec.layers[3], stride=2)
        self.fc = nn.Linear(width * 8 * spec.block.expansion, num_classes)
        for m in self.modules():  # torchvision's initialisation, for the rebuilt modules
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.constant_(m.weight, 1)
                nn.init.constant_(m.bias, 0)

    def _layers(self) -> list[nn.Sequential]:
        return [self.layer1, self.layer2, self.layer3, self.layer4]

    # -- naming -------------------------------------------------------------------------------

    @property
    def unit_names(self) -> list[str]:
        """Every unit in execution order: ``stage1``, the blocks, ``head``."""
        return [STEM, *self.block_names, HEAD]

    def block(self, name: str) -> BasicBlock | Bottleneck:
        """The torchvision block module behind a paper block name."""
        if name not in self._blocks:
            raise unknown_choice("block", name, self.block_names)
        return self._blocks[name]

    def unit_modules(self, name: str) -> list[nn.Module]:
        """The modules (and so the weights) that make up one unit."""
        if name == STEM:
            return [self.conv1, self.bn1, self.relu, self.maxpool]
        if name == HEAD:
            return [self.avgpool, self.fc]
        return [self.block(name)]

    def unit_prefixes(self, name: str) -> tuple[str, ...]:
        """The submodules that hold unit ``name``'s weights, as state-dict key prefixes."""
        if name == STEM:
            return ("conv1.", "bn1.")
        if name == HEAD:
            return ("fc.",)
        self.block(name)
        return (torchvision_path(name) + ".",)

    def unit_state_dict(self, name: str) -> dict[str, Tensor]:
        """The slice of the state dict a worker needs to run ``name`` (torchvision keys)."""
        prefixes = self.unit_prefixes(name)
        return {k: v for k, v in self.state_dict().items() if k.startswith(prefixes)}

    def validate_plan(self, plan: DropPlan) -> DropPlan:
        """Raise a one-line error if ``plan`` names a block this model lacks."""
        return plan.validate(self.block_names)

    # -- forward ------------------------------------------------------------------------------

    def run_unit(self, name: str, x: Tensor, plan: DropPlan | None = None) -> Tensor:
        """Run one unit on ``x`` under ``plan`` (default: the model's current plan)."""
        plan = self.plan if plan is None else plan
        if name == STEM:
            return self.maxpool(self.relu(self.bn1(self.conv1(x))))
        if name == HEAD:
            return self.fc(torch.flatten(self.avgpool(x), 1))
        return run_block(self.block(name), x, plan.dropped(name), self.drop_path_probs[name])

    def run_units(self, names: Sequence[str], x: Tensor, plan: DropPlan | None = None) -> Tensor:
        """Run a contiguous range of units, as one device's share of the network."""
        for name in names:
            x = self.run_unit(name, x, plan)
        return x

    def forward(self, x: Tensor, plan: DropPlan | None = None) -> Tensor:  # type: ignore[override]
        plan = self.validate_plan(self.plan if plan is None else plan)
        if x.dim() != 4 or x.shape[1] != 3:
            raise UserInputError(f"expected images of shape (batch, 3, H, W), got {tuple(x.shape)}")
        return self.run_units(self.unit_names, x, plan)


def load_weights(model: DroppableResNet, path: str | Path) -> DroppableResNet:
    """Load a torchvision weights file (or one of our checkpoints) into ``model``.

    Accepts a bare state dict, as torchvision publishes, or a checkpoint dict with a ``model``
    entry, as ``adaptive-resnet train`` writes. Nothing is downloaded. A file for another
    architecture, width or class count is a one-line error naming what differs.
    """
    path = Path(path)
    if not path.is_file():
        raise UserInputError(f"weights file not found: {path}")
    try:
        loaded = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises several unrelated types for a damaged file
        raise UserInputError(f"cannot read weights file {path}: {type(exc).__name__}: {exc}".splitlines()[0]) from None
    state = loaded.get("model", loaded) if isinstance(loaded, dict) else None
    check_state_fits(model, state, path)
    model.load_state_dict(state)
    return model


def check_state_fits(model: DroppableResNet, state: object, path: str | Path) -> None:
    """A one-line error unless ``state`` (from file ``path``) is a state dict of exactly
    ``model``'s keys and shapes (``model`` may be a storage-less skeleton)."""
    if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
        raise UserInputError(f"{path} holds no state dict (expected a torchvision weights file or a checkpoint)")
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    wrong = [k for k in expected if k in state and state[k].shape != expected[k].shape]
    if missing or unexpected or wrong:
        what = f"{model.arch} (stem={model.stem}, base_channels={model.base_channels}, classes={model.fc.out_features})"
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {missing[0]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {unexpected[0]})")
        if wrong:
            k = wrong[0]
            parts.append(f"{len(wrong)} shape mismatches (e.g. {k}: file {tuple(state[k].shape)} vs model {tuple(expected[k].shape)})")
        raise UserInputError(f"weights file {path} does not match {what}: " + "; ".join(parts))
