"""Block names in the paper's numbering, and drop plans.

The paper (Sec. III, Fig. 2) splits ResNet-50 into stages: stage 1 is the stem (conv, BN, ReLU,
max-pool) and is never dropped; stages 2-5 are torchvision's ``layer1``-``layer4``. Blocks are
numbered from 1 within a stage, so ``stage2.block1`` is ``layer1[0]``, the convolutional block
with the projection shortcut. Users only ever see these names; torchvision's names stay inside
the model so that standard state dicts load unchanged.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from adaptive_resnet.errors import UserInputError, unknown_choice

STEM = "stage1"
HEAD = "head"
_BLOCK_RE = re.compile(r"^stage(\d+)\.block(\d+)$")


def block_name(stage: int, block: int) -> str:
    """``block_name(2, 1) == "stage2.block1"`` (paper numbering, both from 1)."""
    return f"stage{stage}.block{block}"


def block_names(layers: Iterable[int]) -> list[str]:
    """All block names of a ResNet whose four stages hold ``layers`` blocks, in order."""
    return [block_name(s + 2, b + 1) for s, n in enumerate(layers) for b in range(n)]


def parse_block_name(name: str) -> tuple[int, int]:
    """(stage, block) of a block name; raises for anything that is not ``stageS.blockB``."""
    match = _BLOCK_RE.match(name)
    if not match:
        raise UserInputError(f"malformed block name {name!r}; expected e.g. 'stage2.block1'")
    return int(match.group(1)), int(match.group(2))


def torchvision_path(name: str) -> str:
    """The torchvision module path of a block: ``stage2.block1`` -> ``layer1.0``."""
    stage, block = parse_block_name(name)
    return f"layer{stage - 1}.{block - 1}"


class Connection(str, enum.Enum):
    """Which path of a residual block is dropped (paper, Figs. 3-5 and Table I)."""

    DC = "DC"  # direct connection: the residual branch (the block's convolutions)
    SC = "SC"  # skip connection: the shortcut (identity or projection)


@dataclass(frozen=True)
class DropPlan:
    """Which connection, if any, is dropped in each block. Immutable and hashable.

    A block appears at most once: dropping both of its paths would cut the network.
    """

    drops: frozenset[tuple[str, Connection]] = frozenset()

    @classmethod
    def of(cls, drops: Mapping[str, Connection | str] | Iterable[str] = ()) -> DropPlan:
        """Build a plan from ``{"stage2.block2": "DC"}`` or ``["stage2.block2:DC", ...]``.

        A bare block name in the list form means its DC is dropped, the paper's usual case.
        """
        items: list[tuple[str, str]] = []
        if isinstance(drops, Mapping):
            items = [(k, str(v.value if isinstance(v, Connection) else v)) for k, v in drops.items()]
        else:
            for entry in drops:
                name, _, conn = entry.partition(":")
                items.append((name, conn or "DC"))
        seen: dict[str, Connection] = {}
        for name, conn in items:
            name = name.strip()
            if name == STEM:
                raise UserInputError(f"{STEM} (the stem) cannot be dropped; only residual blocks can")
            parse_block_name(name)
            try:
                connection = Connection(conn.upper())
            except ValueError:
                raise unknown_choice("connection", conn, [c.value for c in Connection]) from None
            if name in seen and seen[name] is not connection:
                raise UserInputError(f"block {name!r} cannot drop both DC and SC")
            seen[name] = connection
        return cls(frozenset(seen.items()))

    @classmethod
    def parse(cls, text: str) -> DropPlan:
        """The inverse of ``str(plan)``: ``"none"`` or ``"stage3.block2:DC+stage4.block3:SC"``."""
        return cls.of([d for d in str(text).split("+") if d.strip() and d.strip() != "none"])

    @classmethod
    def dc(cls, names: Iterable[str]) -> DropPlan:
        """The plan that drops the residual branch (DC) of each named block."""
        return cls.of({name: Connection.DC for name in names})

    def dropped(self, name: str) -> Connection | None:
        """The connection dropped in block ``name``, or None."""
        for block, connection in self.drops:
            if block == name:
                return connection
        return None

    def blocks(self) -> list[str]:
        """Names of the blocks this plan touches, sorted in network order."""
        return sorted((b for b, _ in self.drops), key=parse_block_name)

    def validate(self, valid_blocks: Iterable[str]) -> DropPlan:
        """Raise a one-line error for a block the model does not have (the stem included)."""
        valid = list(valid_blocks)
        for name, _ in self.drops:
            if name not in valid:
                raise unknown_choice("block", name, valid)
        return self

    def entries(self) -> list[str]:
        """``["stage3.block2:DC", ...]`` in network order: the list form :meth:`of` reads."""
        return [f"{b}:{self.dropped(b).value}" for b in self.blocks()]  # type: ignore[union-attr]

    def __bool__(self) -> bool:
        return bool(self.drops)

    def __str__(self) -> str:
        if not self.drops:
            return "none"
        return "+".join(self.entries())
