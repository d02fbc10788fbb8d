"""g(y): the paper's table, study tables, and estimates that say they are estimates."""

from __future__ import annotations

import json

import pytest

from adaptive_resnet.accuracy import AccuracyTable, paper_document
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models import DropPlan


def test_paper_table_ii_values():
    table = AccuracyTable.paper()
    assert table.full_accuracy == pytest.approx(0.9473)
    assert table.accuracy(DropPlan.dc(["stage5.block2"])).value == pytest.approx(0.9177)
    assert table.accuracy(DropPlan.dc(["stage2.block3"])).value == pytest.approx(0.8911)  # row 7, not 10
    pair = table.accuracy(DropPlan.dc(["stage4.block3", "stage5.block3"]))
    assert pair.value == pytest.approx(0.8019) and not pair.estimated
    # 21 printed rows, two ignored duplicates (rows 10 and 18), plus the full network.
    assert len(table.measured) == 20
    assert all(len(row["drops"]) in (1, 2) for row in paper_document()["table_ii"])


def test_estimate_from_singles_and_pairs_is_marked():
    table = AccuracyTable(0.9, {
        DropPlan.dc(["stage2.block2"]): 0.85, DropPlan.dc(["stage3.block2"]): 0.8,
        DropPlan.dc(["stage4.block2"]): 0.88,
        DropPlan.dc(["stage2.block2", "stage3.block2"]): 0.7,
    }, name="t")
    est = table.accuracy(DropPlan.dc(["stage2.block2", "stage3.block2", "stage4.block2"]))
    # losses 0.05 + 0.1 + 0.02, plus the measured pair's interaction (0.2 - 0.15 = 0.05)
    assert est.estimated and est.value == pytest.approx(0.9 - 0.22)
    assert table.accuracy(DropPlan.dc(["stage5.block2"])) is None  # no single measured


def test_candidates_respect_threshold_and_sort():
    table = AccuracyTable.paper()
    cands = table.candidates(0.85)
    values = [a.value for _, a in cands]
    assert values == sorted(values, reverse=True) and min(values) >= 0.85
    assert cands[0][0] == DropPlan() and len(cands) == 1 + 8 + 2
    with_estimates = table.candidates(0.85, include_estimates=True)
    assert len(with_estimates) > len(cands) and any(a.estimated for _, a in with_estimates)


def test_study_table_json_and_csv(tmp_path):
    rows = [
        {"drops": "none", "accuracy": 0.93},
        {"drops": "stage2.block2:DC", "accuracy": 0.91},
        {"drops": "stage2.block2:DC+stage3.block3:DC", "accuracy": 0.88},
    ]
    (tmp_path / "s.json").write_text(json.dumps({"arch": "resnet50", "rows": rows}))
    table = AccuracyTable.load(tmp_path / "s.json")
    assert table.full_accuracy == 0.93 and table.arch == "resnet50"
    assert table.accuracy(DropPlan.dc(["stage3.block3", "stage2.block2"])).value == 0.88
    (tmp_path / "s.csv").write_text("drops,accuracy\nnone,0.93\nstage2.block2:DC,0.91\n")
    assert AccuracyTable.load(tmp_path / "s.csv").accuracy(DropPlan.dc(["stage2.block2"])).value == 0.91


def test_bad_sources(tmp_path):
    with pytest.raises(UserInputError, match="neither 'paper' nor"):
        AccuracyTable.load("papr")
    (tmp_path / "x.json").write_text(json.dumps({"rows": [{"drops": "stage2.block2:DC", "accuracy": 0.9}]}))
    with pytest.raises(UserInputError, match="no row for the full network"):
        AccuracyTable.load(tmp_path / "x.json")
    (tmp_path / "y.json").write_text(json.dumps({"rows": [{"drops": "stage2.blk2", "accuracy": 0.9}]}))
    with pytest.raises(UserInputError, match="malformed block name"):
        AccuracyTable.load(tmp_path / "y.json")
