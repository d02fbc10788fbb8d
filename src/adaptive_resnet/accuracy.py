"""g(y): the accuracy of the network with a given set of blocks dropped.

Two kinds of source, one interface:

* ``paper``: the paper's Table II (the drop sets it measured above 80%), transcribed in
  ``data_files/paper_accuracy.json`` with a note on every inconsistency found in it.
* a study table written by ``adaptive-resnet study`` (JSON or CSV): our own measurements.

:meth:`AccuracyTable.accuracy` returns the measured value where the table has the drop set.
Otherwise it estimates from singles and pairs (second-order inclusion-exclusion of accuracy
losses) and says so: the result carries ``estimated=True``. The estimate's error against measured
k-block sets is what ``adaptive-resnet study --random-k`` measures.
"""

from __future__ import annotations

import csv
import itertools
import json
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models.naming import Connection, DropPlan

PAPER = "paper"


@dataclass(frozen=True)
class Accuracy:
    """An accuracy in [0, 1] and whether it was measured or estimated."""

    value: float
    estimated: bool


class AccuracyTable:
    """Measured accuracies keyed by drop plan, with the full network's accuracy."""

    def __init__(self, full_accuracy: float, measured: dict[DropPlan, float], name: str, arch: str | None = None):
        if not 0.0 <= full_accuracy <= 1.0:
            raise UserInputError(f"full-network accuracy must be in [0, 1], got {full_accuracy}")
        self.full_accuracy = full_accuracy
        self.measured = dict(measured)
        self.measured[DropPlan()] = full_accuracy
        self.name = name
        self.arch = arch

    # -- sources ------------------------------------------------------------------------------

    @classmethod
    def load(cls, source: str | Path) -> AccuracyTable:
        """``"paper"`` or the path of a study table (``.json`` or ``.csv``)."""
        if str(source) == PAPER:
            return cls.paper()
        path = Path(source)
        if not path.is_file():
            raise UserInputError(f"accuracy source {source!r} is neither 'paper' nor an existing study table")
        try:
            if path.suffix == ".csv":
                with path.open(encoding="utf-8") as fh:
                    rows = list(csv.DictReader(fh))
                meta: dict = {}
            else:
                doc = json.loads(path.read_text(encoding="utf-8"))
                if not isinstance(doc, dict) or not isinstance(doc.get("rows"), list):
                    raise UserInputError(f"malformed study table {path}: expected an object with a 'rows' list (as `study` writes it)")
                rows, meta = doc["rows"], doc
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, csv.Error) as exc:
            raise UserInputError(f"malformed study table {path}: {type(exc).__name__}: {exc}") from None
        measured = {}
        full = None
        for i, row in enumerate(rows):
            where = f"{path}: row {i + 1}" if path.suffix == ".csv" else f"{path}: rows[{i}]"
            if not isinstance(row, dict) or not isinstance(row.get("drops"), str) or row.get("accuracy") in (None, ""):
                raise UserInputError(f"{where}: needs 'drops' (e.g. 'stage3.block2:DC' or 'none') and 'accuracy'")
            try:
                acc = float(row["accuracy"])
            except (TypeError, ValueError):
                raise UserInputError(f"{where}: accuracy {row['accuracy']!r} is not a number") from None
            if not 0.0 <= acc <= 1.0:  # also refuses NaN
                raise UserInputError(f"{where}: accuracy must be a fraction in [0, 1], got {row['accuracy']!r}")
            try:
                plan = DropPlan.parse(row["drops"])
            except UserInputError as exc:
                raise UserInputError(f"{where}: {exc}") from None
            if plan in measured or (not plan and full is not None):
                raise UserInputError(f"{where}: drop set {plan} appears twice")
            if not plan:
                full = acc
            else:
                measured[plan] = acc
        if full is None:
            raise UserInputError(f"study table {path} has no row for the full network (drops 'none')")
        return cls(full, measured, name=str(path), arch=meta.get("arch"))

    @classmethod
    def paper(cls) -> AccuracyTable:
        doc = paper_document()
        measured: dict[DropPlan, float] = {}
        for row in doc["table_ii"]:
            plan = DropPlan.dc(row["drops"])
            if "ignored" in row or plan in measured:
                continue
            measured[plan] = row["accuracy_percent"] / 100
        return cls(doc["full_accuracy_percent"] / 100, measured, name=PAPER, arch="resnet50")

    # -- g(y) ---------------------------------------------------------------------------------

    def accuracy(self, plan: DropPlan) -> Accuracy | None:
        """Measured accuracy of ``plan``; else the singles-and-pairs estimate; None if neither."""
        if plan in self.measured:
            return Accuracy(self.measured[plan], estimated=False)
        drops = sorted(plan.drops)
        single_loss = {}
        for drop in drops:
            single = DropPlan(frozenset([drop]))
            if single not in self.measured:
                return None
            single_loss[drop] = self.full_accuracy - self.measured[single]
        loss = sum(single_loss.values())
        for a, b in itertools.combinations(drops, 2):
            pair = DropPlan(frozenset([a, b]))
            if pair in self.measured:  # interaction beyond the two single losses
                loss += (self.full_accuracy - self.measured[pair]) - single_loss[a] - single_loss[b]
        return Accuracy(min(max(self.full_accuracy - loss, 0.0), 1.0), estimated=True)

    def candidates(self, threshold: float, include_estimates: bool = False, max_drops: int = 2) -> list[tuple[DropPlan, Accuracy]]:
        """Drop sets whose accuracy is at least ``threshold``, best first.

        Measured sets always; with ``include_estimates``, also every DC set of up to
        ``max_drops`` blocks built from measured singles.
        """
        found = {plan: Accuracy(acc, False) for plan, acc in self.measured.items() if acc >= threshold}
        if include_estimates:
            blocks = sorted({b for p in self.measured for b, c in p.drops if c is Connection.DC})
            for k in range(2, max_drops + 1):
                for combo in itertools.combinations(blocks, k):
                    plan = DropPlan.dc(combo)
                    acc = self.accuracy(plan)
                    if plan not in found and acc is not None and acc.value >= threshold:
                        found[plan] = acc
        return sorted(found.items(), key=lambda kv: (-kv[1].value, str(kv[0])))

    def best_possible(self) -> float:
        return max(self.measured.values())


def paper_document() -> dict:
    """The transcription of the paper's Tables I and II, with its notes."""
    text = resources.files("adaptive_resnet.data_files").joinpath("paper_accuracy.json").read_text()
    return json.loads(text)
