"""Runs that cannot lose results: ``simulate`` and ``study`` killed at a random point, or left
with a last record cut short, resume to exactly what an uninterrupted run gives."""

from __future__ import annotations

import json
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.planning import load_problem
from adaptive_resnet.run_folder import append_record, claim, read_records, start_records
from adaptive_resnet.simulation.simulator import SimConfig, simulate
from test_data import make_image_folder

ROUNDS = 12


def rounds_without_timing(path: Path) -> list[dict]:
    with path.open() as fh:
        import csv

        return [{k: v for k, v in row.items() if k != "solve_time_s"} for row in csv.DictReader(fh)]


def kill_after(args: list[str], delay_s: float) -> None:
    """Start the command in its own process and SIGKILL it after ``delay_s`` (or let it end)."""
    proc = subprocess.Popen([sys.executable, "-m", "adaptive_resnet.cli", *args], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        proc.wait(timeout=delay_s)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGKILL)
        proc.wait()


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> list[dict]:
    out = tmp_path_factory.mktemp("whole") / "run"
    simulate(load_problem("scenarios/small.yaml"), SimConfig(rounds=ROUNDS, request_rate=3.0, seed=4), out, progress=False)
    return rounds_without_timing(out / "rounds.csv")


@pytest.mark.parametrize("seed", [1, 2])
def test_simulate_killed_at_a_random_point_resumes_to_the_same_rounds(tmp_path, uninterrupted, seed):
    out = tmp_path / "run"
    args = ["simulate", "scenarios/small.yaml", "--out", str(out), "--rounds", str(ROUNDS), "--request-rate", "3", "--seed", "4"]
    kill_after(args, random.Random(seed).uniform(1.0, 8.0))  # anywhere from start-up to the last round
    result = subprocess.run([sys.executable, "-m", "adaptive_resnet.cli", *args], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert rounds_without_timing(out / "rounds.csv") == uninterrupted


def test_a_round_cut_short_is_run_again(tmp_path, uninterrupted):
    problem = load_problem("scenarios/small.yaml")
    config = SimConfig(rounds=ROUNDS, request_rate=3.0, seed=4)
    out = tmp_path / "run"
    simulate(problem, config, out, progress=False)
    text = (out / "rounds.csv").read_text()
    cut = text[: text.rstrip("\n").rfind("\n") + 1 + 7]  # the last record's first seven characters only
    (out / "rounds.csv").write_text(cut)
    resumed = simulate(problem, config, out, progress=False)
    assert len(resumed["rounds"]) == ROUNDS
    assert rounds_without_timing(out / "rounds.csv") == uninterrupted


def test_records_damaged_before_the_last_are_refused_and_a_header_checked(tmp_path):
    path = tmp_path / "r.csv"
    start_records(path, ["round", "x"])
    for t in (1, 2, 3):
        append_record(path, ["round", "x"], {"round": t, "x": t * 10})
    assert [r["x"] for r in read_records(path, ["round", "x"], key="round")] == ["10", "20", "30"]
    lines = path.read_text().splitlines()
    path.write_text("\n".join([lines[0], lines[1], "7,70", lines[3]]) + "\n")
    with pytest.raises(UserInputError, match=r"r.csv:3: a damaged record"):
        read_records(path, ["round", "x"], key="round")
    with pytest.raises(UserInputError, match="header"):
        read_records(path, ["round", "y"])


def test_claim_resumes_the_same_run_and_refuses_another(tmp_path):
    out = tmp_path / "run"
    assert claim(out, {"a": 1, "b": {"c": 2}}) is False
    assert claim(out, {"a": 1, "b": {"c": 2}}) is True
    with pytest.raises(UserInputError, match=r"differs in: b.c"):
        claim(out, {"a": 1, "b": {"c": 3}})
    (out / "config.json").write_text("{trunc")
    with pytest.raises(UserInputError, match="not readable JSON"):
        claim(out, {"a": 1})


@pytest.fixture(scope="module")
def study_inputs(tmp_path_factory, tiny_checkpoint):
    root = tmp_path_factory.mktemp("study")
    make_image_folder(root / "ds", classes=tuple("abcdefghij"), per_class=12, size=16)
    from adaptive_resnet.study import run_study

    whole = run_study(tiny_checkpoint, root / "ds", root / "whole", batch_size=20, progress=False, device="cpu",
                      cache_dir=str(root / "cache"))
    return root, whole


def test_study_killed_at_a_random_point_resumes_to_the_same_table(study_inputs, tiny_checkpoint, tmp_path):
    root, whole = study_inputs
    out = tmp_path / "study"
    args = ["study", "--checkpoint", str(tiny_checkpoint), "--data", str(root / "ds"), "--out", str(out), "--batch-size", "20",
            "--device", "cpu"]
    kill_after(args, random.Random(3).uniform(2.0, 8.0))
    result = subprocess.run([sys.executable, "-m", "adaptive_resnet.cli", *args], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    resumed = json.loads((out / "study.json").read_text())
    assert [(r["drops"], r["correct"]) for r in resumed["rows"]] == [(r["drops"], r["correct"]) for r in whole["rows"]]


def test_a_damaged_study_state_is_counted_again(study_inputs, tiny_checkpoint, tmp_path):
    from adaptive_resnet.study import run_study

    root, whole = study_inputs
    out = tmp_path / "study"
    run_study(tiny_checkpoint, root / "ds", out, batch_size=20, progress=False, device="cpu", cache_dir=str(root / "cache"))
    (out / "state.json").write_text('{"identity": {"checkpoint"')  # cut short
    again = run_study(tiny_checkpoint, root / "ds", out, batch_size=20, progress=False, device="cpu", cache_dir=str(root / "cache"))
    assert [r["correct"] for r in again["rows"]] == [r["correct"] for r in whole["rows"]]
