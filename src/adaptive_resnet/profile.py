"""Per-unit cost profile of a ResNet: parameters, weight bytes, multiplications, memory, output.

The paper's cost inputs (Sec. IV-A) come from here and nowhere else:

* ``macs`` is Eq. 2, c_j: the multiply-accumulates of the unit's convolutions and linear layers
  (``n_(k-1) * s_k * n_k * O_k``: input channels per group x kernel area x output elements).
  Batch norm, ReLU, pooling and the residual addition are not counted, as in the paper and in
  torchvision's published operation counts.
* ``memory_bytes`` is Eq. 1, m_j: the sum, over the same layers, of the size of each layer's
  input, times b = 4 bytes. For ResNet-50 at 224x224 this gives the paper's 4.82/2.41/1.20/0.60 MB
  for identity blocks of stages 2-5.
* ``output_bytes`` is K_j of Eq. 10-11: the unit's output activation, float32.
* ``shortcut_macs`` / ``shortcut_memory_bytes``: the part of a first block's cost that is its
  projection shortcut, which still runs when the block's DC is dropped (zero for identity
  blocks, whose shortcut is free).

Everything is measured by shape propagation: the model is built on PyTorch's ``meta`` device
(no weights allocated), one image is pushed through it, and forward hooks on every Conv2d and
Linear record their input and output shapes. No table is consulted, so any architecture and
input size in :data:`~adaptive_resnet.models.resnet.ARCHS` is profiled the same way.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, fields
from pathlib import Path

from adaptive_resnet.errors import UserInputError, unknown_choice
from adaptive_resnet.models.naming import Connection, DropPlan

BYTES_PER_VALUE = 4  # the paper's b: float32 weights and activations


@dataclass(frozen=True)
class UnitCost:
    """Cost of one unit (``stage1``, a block, or ``head``) for one image."""

    name: str
    params: int
    weight_bytes: int  # the unit's state-dict tensors: parameters and BN statistics
    macs: int  # Eq. 2, c_j
    memory_bytes: int  # Eq. 1, m_j
    output_bytes: int  # K_j
    shortcut_macs: int = 0
    shortcut_memory_bytes: int = 0


@dataclass(frozen=True)
class ModelProfile:
    """The ordered unit costs of one architecture at one input size."""

    arch: str
    input_size: int
    num_classes: int
    stem: str
    base_channels: int
    units: tuple[UnitCost, ...]

    def __getitem__(self, name: str) -> UnitCost:
        for unit in self.units:
            if unit.name == name:
                return unit
        raise unknown_choice("unit", name, [u.name for u in self.units])

    @property
    def unit_names(self) -> list[str]:
        return [u.name for u in self.units]

    def total(self, field: str) -> int:
        return sum(getattr(u, field) for u in self.units)

    def kept_cost(self, name: str, dropped: Connection | None) -> tuple[int, int]:
        """(macs, memory_bytes) that unit ``name`` still costs with ``dropped`` removed.

        A dropped DC leaves the projection shortcut of a first block (nothing for an identity
        block); a dropped SC leaves the residual branch. The one home of this rule: the study's
        gains, the planner and the simulator all call it.
        """
        unit = self[name]
        if dropped is None:
            return unit.macs, unit.memory_bytes
        if dropped is Connection.DC:
            return unit.shortcut_macs, unit.shortcut_memory_bytes
        return unit.macs - unit.shortcut_macs, unit.memory_bytes - unit.shortcut_memory_bytes

    def savings(self, plan: DropPlan) -> tuple[int, int]:
        """(macs, memory_bytes) that ``plan`` saves against the full network (Table II's gains)."""
        macs = memory = 0
        for name, connection in plan.drops:
            kept_macs, kept_memory = self.kept_cost(name, connection)
            macs += self[name].macs - kept_macs
            memory += self[name].memory_bytes - kept_memory
        return macs, memory

    def to_dict(self) -> dict:
        d = asdict(self)
        d["units"] = [asdict(u) for u in self.units]
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelProfile:
        """A profile from :meth:`to_dict`'s form; every field is required (a unit without its
        shortcut costs would make a dropped first block look free) and every number must be a
        non-negative integer."""
        if not isinstance(d, dict):
            raise UserInputError("malformed profile: expected a JSON object with arch, input_size, ..., units")
        top = ("arch", "input_size", "num_classes", "stem", "base_channels", "units")
        missing = [k for k in top if k not in d]
        if missing:
            raise UserInputError(f"malformed profile: missing field {missing[0]!r}")
        if not isinstance(d["units"], list) or not d["units"]:
            raise UserInputError("malformed profile: 'units' must be a non-empty list")
        names = [f.name for f in fields(UnitCost)]
        units = []
        for i, u in enumerate(d["units"]):
            if not isinstance(u, dict):
                raise UserInputError(f"malformed profile: units[{i}] is not an object")
            absent = [k for k in names if k not in u]
            if absent:
                raise UserInputError(f"malformed profile: units[{i}] has no {absent[0]!r} (write profiles with "
                                     f"`adaptive-resnet profile --format json`)")
            extra = [k for k in u if k not in names]
            if extra:
                raise UserInputError(f"malformed profile: units[{i}] has unknown field {extra[0]!r}")
            for k in names[1:]:
                if isinstance(u[k], bool) or not isinstance(u[k], int) or u[k] < 0:
                    raise UserInputError(f"malformed profile: units[{i}].{k} must be a non-negative integer, got {u[k]!r}")
            units.append(UnitCost(**u))
        for k in ("input_size", "num_classes", "base_channels"):
            if isinstance(d[k], bool) or not isinstance(d[k], int) or d[k] < 1:
                raise UserInputError(f"malformed profile: {k} must be a positive integer, got {d[k]!r}")
        return cls(str(d["arch"]), d["input_size"], d["num_classes"], str(d["stem"]), d["base_channels"], tuple(units))

    @classmethod
    def load(cls, path: str | Path) -> ModelProfile:
        try:
            text = Path(path).read_text(encoding="utf-8")
            doc = json.loads(text)
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise UserInputError(f"cannot read profile {path}: {exc}") from None
        try:
            return cls.from_dict(doc)
        except UserInputError as exc:
            raise UserInputError(f"{path}: {exc}") from None


def profile_cache_dir() -> Path:
    """Where measured profiles are kept: ``$ADAPTIVE_RESNET_CACHE/profiles``, by default
    ``~/.cache/adaptive-resnet/profiles``."""
    import os

    root = os.environ.get("ADAPTIVE_RESNET_CACHE") or Path.home() / ".cache" / "adaptive-resnet"
    return Path(root) / "profiles"


def profile_model(
    arch: str = "resnet50",
    input_size: int = 224,
    num_classes: int = 1000,
    stem: str = "imagenet",
    base_channels: int = 64,
    cache: bool = True,
) -> ModelProfile:
    """Measure the per-unit costs of a :class:`DroppableResNet` for one ``input_size`` image.

    With ``cache``, a profile measured once is kept in :func:`profile_cache_dir`, keyed by the
    arguments, the torch and torchvision versions and the source of this module and of the
    model, so that planning a scenario need not import torch (seconds) each time; a damaged
    or unwritable cache is measured again.
    """
    if cache:
        key = _cache_key(arch, input_size, num_classes, stem, base_channels)
        path = profile_cache_dir() / f"{arch}-{input_size}-{key}.json"
        try:
            return ModelProfile.from_dict(json.loads(path.read_text()))
        except (OSError, ValueError):  # absent or damaged (UserInputError is a ValueError)
            pass
        profile = profile_model(arch, input_size, num_classes, stem, base_channels, cache=False)
        try:
            from adaptive_resnet.run_folder import write_atomic

            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, json.dumps(profile.to_dict()))
        except OSError:
            pass  # a read-only home: measure each time
        return profile
    import torch
    from torch import nn

    from adaptive_resnet.models import DroppableResNet

    if input_size < 1:
        raise UserInputError(f"input size must be positive, got {input_size}")
    with torch.device("meta"):
        model = DroppableResNet(arch, num_classes=num_classes, stem=stem, base_channels=base_channels).eval()
    # Smallest input that survives five stride-2 reductions (imagenet stem) or three (cifar).
    min_size = 32 if stem == "imagenet" else 8
    if input_size < min_size:
        raise UserInputError(f"input size {input_size} is too small for the {stem} stem; need >= {min_size}")

    records: list[tuple[nn.Module, int, int]] = []  # (layer, macs, input values)

    def hook(module: nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        x = inputs[0]
        if isinstance(module, nn.Conv2d):
            kh, kw = module.kernel_size
            macs = output.numel() * (module.in_channels // module.groups) * kh * kw
        else:
            macs = output.numel() * module.in_features
        records.append((module, macs, x.numel()))

    handles = [m.register_forward_hook(hook) for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    units = []
    x = torch.empty(1, 3, input_size, input_size, device="meta")
    with torch.no_grad():
        for name in model.unit_names:
            records.clear()
            x = model.run_unit(name, x)
            modules = model.unit_modules(name)
            shortcut_layers = set()
            if name not in ("stage1", "head") and getattr(modules[0], "downsample", None) is not None:
                shortcut_layers = set(modules[0].downsample.modules())
            state = model.unit_state_dict(name)
            units.append(
                UnitCost(
                    name=name,
                    params=sum(p.numel() for m in modules for p in m.parameters()),
                    weight_bytes=sum(t.numel() * t.element_size() for t in state.values()),
                    macs=sum(r[1] for r in records),
                    memory_bytes=sum(r[2] for r in records) * BYTES_PER_VALUE,
                    output_bytes=x.numel() * BYTES_PER_VALUE,
                    shortcut_macs=sum(r[1] for r in records if r[0] in shortcut_layers),
                    shortcut_memory_bytes=sum(r[2] for r in records if r[0] in shortcut_layers) * BYTES_PER_VALUE,
                )
            )
    for h in handles:
        h.remove()
    return ModelProfile(arch, input_size, num_classes, stem, base_channels, tuple(units))


def _cache_key(*args: object) -> str:
    import hashlib
    from importlib.metadata import version

    h = hashlib.sha1(repr(args).encode())
    for package in ("torch", "torchvision"):
        h.update(version(package).encode())
    models = Path(__file__).parent / "models"
    for source in (Path(__file__), models / "resnet.py", models / "naming.py"):
        h.update(source.read_bytes())
    return h.hexdigest()[:16]
