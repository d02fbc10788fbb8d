"""The drop study: shared evaluation equals the naive loop, resumption, tables, CLI."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.cli import app
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models import DropPlan
from adaptive_resnet.study import count_correct, count_correct_naive, run_study, study_plans
from adaptive_resnet.train import TrainConfig, train
from test_data import make_image_folder


def test_plan_list_has_singles_pairs_and_random_sets():
    names = [f"stage2.block{i}" for i in range(1, 5)]
    plans = study_plans(names, random_k=[3], random_count=2, seed=1)
    assert plans[0] == DropPlan()
    assert len(plans) == 1 + 8 + 6 + 2
    assert all(len(p.drops) == 3 for p in plans[-2:])


def test_shared_evaluation_equals_naive_on_every_plan(tiny_model):
    torch.manual_seed(0)
    x = torch.randn(16, 3, 16, 16)
    with torch.no_grad():
        y = tiny_model(x).argmax(1)  # labels the full network gets right, so drops show up
        y[::3] = (y[::3] + 1) % 10
        plans = study_plans(tiny_model.block_names, random_k=[3, 5], random_count=4)
        shared = count_correct(tiny_model, x, y, plans)
        naive = count_correct_naive(tiny_model, x, y, plans)
    assert shared == naive
    assert len(set(shared)) > 3  # the plans really differ


@pytest.fixture(scope="module")
def tiny_checkpoint(tmp_path_factory):
    root = tmp_path_factory.mktemp("study")
    make_image_folder(root / "ds", classes=("a", "b"), per_class=10, size=16)
    config = TrainConfig(data=str(root / "ds"), arch="resnet18", base_channels=4, num_classes=2, epochs=1,
                         batch_size=10, cache_dir=str(root / "cache"))
    train(config, root / "run", progress=False)
    return root


def test_study_writes_tables_the_optimizer_reads(tiny_checkpoint):
    root = tiny_checkpoint
    doc = run_study(root / "run" / "last.pt", root / "ds", root / "out", cache_dir=str(root / "cache"), batch_size=7, progress=False)
    rows = {r["drops"]: r for r in doc["rows"]}
    assert len(rows) == 1 + 16 + 28  # resnet18: 8 blocks
    assert rows["none"]["n"] == 20 and rows["stage2.block2:DC"]["macs_gain"] > 0
    assert rows["stage3.block2:SC"]["macs_gain"] == 0  # identity shortcut is free
    for name in ("study.json", "study.csv", "pairs.png"):
        assert (root / "out" / name).stat().st_size > 0
    table = AccuracyTable.load(root / "out" / "study.json")
    assert table.full_accuracy == rows["none"]["accuracy"]
    assert AccuracyTable.load(root / "out" / "study.csv").measured == table.measured


class Interrupted(Exception):
    """Stands for the process being killed mid-study."""


def test_interrupted_study_resumes_without_recomputing(tiny_checkpoint, monkeypatch):
    from adaptive_resnet import study

    root = tiny_checkpoint
    calls, resumed = [], []
    real = study.count_correct

    def counting(*args):
        calls.append(1)
        if len(calls) == 2 and not resumed:
            raise Interrupted
        return real(*args)

    monkeypatch.setattr(study, "count_correct", counting)
    with pytest.raises(Interrupted):
        run_study(root / "run" / "last.pt", root / "ds", root / "resume", cache_dir=str(root / "cache"), batch_size=7, progress=False)
    assert json.loads((root / "resume" / "state.json").read_text())["batches_done"] == 1
    calls.clear()
    resumed.append(True)
    doc = run_study(root / "run" / "last.pt", root / "ds", root / "resume", cache_dir=str(root / "cache"), batch_size=7, progress=False)
    assert len(calls) == 2  # batches 2 and 3 of 3
    fresh = run_study(root / "run" / "last.pt", root / "ds", root / "fresh", cache_dir=str(root / "cache"), batch_size=7, progress=False)
    assert [r["correct"] for r in doc["rows"]] == [r["correct"] for r in fresh["rows"]]


def test_bad_requests(tiny_checkpoint):
    root = tiny_checkpoint
    with pytest.raises(UserInputError, match="unknown block 'stage4.block3'"):
        run_study(root / "run" / "last.pt", root / "ds", root / "bad", plans=[DropPlan.dc(["stage4.block3"])],
                  cache_dir=str(root / "cache"), progress=False)
    result = CliRunner().invoke(app, ["study", "--checkpoint", str(root / "nope.pt"), "--out", str(root / "x")])
    assert result.exit_code == 2 and "nope.pt does not exist" in result.output


def test_report_compares_with_the_paper_and_measures_estimate_error(tmp_path):
    from adaptive_resnet.study_report import comparison_markdown, estimate_error, plot_singles

    rows = [{"drops": "none", "accuracy": 0.9},
            {"drops": "stage5.block2:DC", "accuracy": 0.88}, {"drops": "stage5.block3:DC", "accuracy": 0.86},
            {"drops": "stage4.block2:DC", "accuracy": 0.87},
            {"drops": "stage5.block2:DC+stage5.block3:DC", "accuracy": 0.8},
            {"drops": "stage4.block2:DC+stage5.block2:DC+stage5.block3:DC", "accuracy": 0.75}]
    (tmp_path / "s.json").write_text(json.dumps({"rows": rows}))
    err = estimate_error(tmp_path / "s.json")
    # estimate: 0.9 - (0.02 + 0.04 + 0.03) - interaction of the measured pair (0.1 - 0.06 = 0.04) = 0.77
    assert err["n"] == 1 and err["sets"][0]["estimated"] == pytest.approx(0.77)
    assert err["mean_abs_error"] == pytest.approx(0.02)
    md = comparison_markdown({"ours": tmp_path / "s.json"})
    assert "| stage5.block2 | 91.77 | 88.00 |" in md and "| pairs within 3 points | 0/1 |" in md
    plot_singles({"ours": tmp_path / "s.json"}, tmp_path / "singles.png")
    assert (tmp_path / "singles.png").stat().st_size > 0


def test_robustness_summary_counts_identity_blocks_and_reports_first_blocks_apart(tmp_path):
    from adaptive_resnet.study_report import robustness, robustness_markdown

    rows = [{"drops": "none", "accuracy": 0.9},
            {"drops": "stage5.block2:DC", "accuracy": 0.88}, {"drops": "stage5.block3:DC", "accuracy": 0.86},
            {"drops": "stage5.block1:DC", "accuracy": 0.5}, {"drops": "stage5.block1:SC", "accuracy": 0.1},
            {"drops": "stage4.block2:DC", "accuracy": 0.87},
            {"drops": "stage5.block2:DC+stage5.block3:DC", "accuracy": 0.8},
            {"drops": "stage4.block2:DC+stage5.block2:DC", "accuracy": 0.86},
            {"drops": "stage5.block1:DC+stage5.block2:DC", "accuracy": 0.2}]  # a first block: not an identity pair
    (tmp_path / "s.json").write_text(json.dumps({"rows": rows}))
    r = robustness(tmp_path / "s.json")
    assert r["worst_single"] == "stage5.block3" and r["worst_single_loss"] == pytest.approx(0.04)
    assert r["pairs"] == 2 and r["mean_pair_loss"] == pytest.approx(0.07) and r["worst_pair_loss"] == pytest.approx(0.10)
    assert r["first_blocks"] == {"stage5.block1": 0.5}
    assert "| n | 90.00 | stage5.block3 (4.00) | 7.00 | 10.00 | stage5 50.00 |" in robustness_markdown({"n": tmp_path / "s.json"})
