"""The simulator pinned to the cost model; batteries, failures, traces, resumption; experiments."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from typer.testing import CliRunner

from adaptive_resnet.cli import app
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.planning import load_problem, solve
from adaptive_resnet.simulation.experiments import run_experiment
from adaptive_resnet.simulation.simulator import SimConfig, simulate


@pytest.fixture(scope="module")
def small():
    return load_problem("scenarios/small.yaml")


def write_trace(path, rounds, rate=20.0, skip=None):
    with path.open("w") as fh:
        fh.write("round,a,b,rate_mbps\n")
        for t in range(1, rounds + 1):
            for a, b in (("camera", "phone"), ("camera", "hub"), ("phone", "hub")):
                if (t, a, b) != skip:
                    fh.write(f"{t},{a},{b},{rate}\n")


def test_a_deterministic_round_equals_the_planners_accounting(small, tmp_path):
    write_trace(tmp_path / "trace.csv", 1, rate=15.0)
    config = SimConfig(rounds=1, request_rate=2.0, rate_trace=str(tmp_path / "trace.csv"), solver="fast", seed=3)
    row = simulate(small, config, tmp_path / "sim", progress=False)["rounds"][0]
    requests = np.random.default_rng(3).poisson(2.0)  # the simulator's first draw
    rates = np.full((3, 3), 15.0)
    plan = solve(small.derive(rates_mbps=rates, requests=int(requests)), "fast")
    assert row["requests"] == requests and row["served"] == requests
    assert row["latency_mean_s"] == pytest.approx(plan.evaluation.latency_s)
    assert row["accuracy"] == pytest.approx(plan.evaluation.accuracy)
    assert row["energy_j"] == pytest.approx(sum(plan.evaluation.energy_j.values()))
    assert row["energy_j:hub"] == pytest.approx(plan.evaluation.energy_j["hub"])


def test_seeded_runs_are_reproducible(small):
    a = simulate(small, SimConfig(rounds=4, seed=7), progress=False)["rounds"]
    b = simulate(small, SimConfig(rounds=4, seed=7), progress=False)["rounds"]
    assert [r["latency_mean_s"] for r in a] == [r["latency_mean_s"] for r in b]
    assert [r["requests"] for r in a] == [r["requests"] for r in b]


def test_battery_drains_and_empty_devices_leave(small):
    devices = [d.model_copy(update={"energy_j": 15.0}) for d in small.scenario.devices]
    scenario = small.derive(small.scenario.model_copy(update={"devices": devices}))
    rows = simulate(scenario, SimConfig(rounds=6, request_rate=3.0, battery=True), progress=False)["rounds"]
    alive = [r["devices_alive"] for r in rows]
    assert alive[0] == 3 and alive[-1] < 3  # someone ran out
    assert sum(r["unserved"] for r in rows) > 0
    assert all(r["unserved_reason"] for r in rows if r["unserved"])


def test_a_failed_device_is_not_used_after_its_round(small):
    rows = simulate(small, SimConfig(rounds=4, request_rate=2.0, failures={2: ["hub"]}), progress=False)["rounds"]
    assert rows[0]["devices_alive"] == 3 and all(r["devices_alive"] == 2 for r in rows[1:])
    assert all(r["energy_j:hub"] == 0 for r in rows[1:])


def test_interrupted_run_keeps_and_resumes_rounds(small, tmp_path, monkeypatch):
    import adaptive_resnet.simulation.simulator as sim

    real = sim._round
    calls = []

    def dying(*args):
        calls.append(args[0])
        if args[0] == 3 and len(calls) == 3:
            raise KeyboardInterrupt
        return real(*args)

    monkeypatch.setattr(sim, "_round", dying)
    config = SimConfig(rounds=5, seed=1)
    with pytest.raises(KeyboardInterrupt):
        simulate(small, config, tmp_path / "run", progress=False)
    with (tmp_path / "run" / "rounds.csv").open() as fh:
        assert [int(r["round"]) for r in csv.DictReader(fh)] == [1, 2]
    calls.clear()
    resumed = simulate(small, config, tmp_path / "run", progress=False)
    assert calls == [3, 4, 5]
    fresh = simulate(small, config, progress=False)
    assert [float(r["latency_mean_s"]) for r in resumed["rounds"]] == pytest.approx([r["latency_mean_s"] for r in fresh["rounds"]])


def test_bad_traces_and_failures(small, tmp_path):
    write_trace(tmp_path / "gap.csv", 3, skip=(2, "camera", "hub"))
    with pytest.raises(UserInputError, match="round 2 has no rate for camera,hub"):
        simulate(small, SimConfig(rounds=3, rate_trace=str(tmp_path / "gap.csv")), progress=False)
    write_trace(tmp_path / "neg.csv", 1, rate=-3)
    with pytest.raises(UserInputError, match=r"neg.csv:2: rate must be positive"):
        simulate(small, SimConfig(rounds=1, rate_trace=str(tmp_path / "neg.csv")), progress=False)
    with pytest.raises(UserInputError, match="unknown device 'toaster'"):
        simulate(small, SimConfig(rounds=1, failures={1: ["toaster"]}), progress=False)


def test_experiment_on_a_reduced_sweep(tmp_path):
    scenario = load_problem("scenarios/paper.yaml")
    points = run_experiment("fig7", scenario, tmp_path, rounds=2, solvers=["fast", "no-drop"], values=[50.0, 400.0], progress=False)
    assert len(points) == 4 and (tmp_path / "fig7.png").stat().st_size > 0 and (tmp_path / "points.csv").is_file()
    fast = {p["value"]: p for p in points if p["solver"] == "fast"}
    assert fast["400.0"]["served"] >= fast["50.0"]["served"]


def test_cli_errors_exit_2():
    runner = CliRunner()
    result = runner.invoke(app, ["experiment", "fig10"])
    assert result.exit_code == 2 and "unknown experiment 'fig10'" in result.output
    result = runner.invoke(app, ["simulate", "scenarios/small.yaml", "--rounds", "0"])
    assert result.exit_code == 2 and "rounds" in result.output


def test_a_round_that_does_not_fit_is_admitted_in_one_solve(small, monkeypatch):
    from collections import Counter

    import adaptive_resnet.simulation.simulator as simulator

    solves: Counter[int] = Counter()
    real = simulator._solve_round

    def counting(problem, config, t, step):
        solves[t] += 1
        return real(problem, config, t, step)

    monkeypatch.setattr(simulator, "_solve_round", counting)
    rows = simulate(small, SimConfig(rounds=2, request_rate=200.0, seed=1), progress=False)["rounds"]
    for row in rows:
        served, requests = int(row["served"]), int(row["requests"])
        assert 0 < served < requests  # the three devices cannot take ~200 requests
        assert solve(small.derive(requests=served), "fast").feasible
        assert not solve(small.derive(requests=served + 1), "fast").feasible  # the most that fit were served
        assert solves[row["round"]] == 1  # the planner admits: no re-solve with fewer requests


def test_confidence_intervals_on_known_samples():
    from adaptive_resnet.simulation.stats import mean_ci

    mean, low, high = mean_ci([1, 2, 3, 4, 5])  # sd sqrt(2.5), t(0.975, 4) = 2.776445
    assert mean == 3 and high - mean == pytest.approx(2.776445 * np.sqrt(2.5) / np.sqrt(5), rel=1e-6) and mean - low == pytest.approx(high - mean)
    assert mean_ci([2.0, 2.0, 2.0]) == (2.0, 2.0, 2.0)
    assert mean_ci([7.5]) == (7.5, 7.5, 7.5)
    assert all(np.isnan(v) for v in mean_ci([]))
    wide = mean_ci([1, 2, 3, 4, 5], level=0.99)
    assert wide[1] < low and wide[2] > high


def _points_without_timing(path):
    import csv

    with open(path) as fh:
        return [{k: v for k, v in row.items() if k != "solve_time_s_mean"} for row in csv.DictReader(fh)]


def test_a_resumed_multi_seed_experiment_equals_an_uninterrupted_one(tmp_path, monkeypatch):
    import adaptive_resnet.simulation.experiments as experiments

    scenario = load_problem("scenarios/small.yaml")
    args = dict(rounds=2, solvers=["fast", "no-drop"], values=[50.0, 400.0], progress=False, seeds=3, jobs=1)
    whole = run_experiment("fig7", scenario, tmp_path / "whole", **args)
    real, calls = experiments.simulate, []

    def dies_on_the_fifth(*a, **k):
        calls.append(1)
        if len(calls) == 5:
            raise KeyboardInterrupt  # killed mid-experiment
        return real(*a, **k)

    monkeypatch.setattr(experiments, "simulate", dies_on_the_fifth)
    with pytest.raises(KeyboardInterrupt):
        run_experiment("fig7", scenario, tmp_path / "cut", **args)
    monkeypatch.setattr(experiments, "simulate", real)
    resumed = run_experiment("fig7", scenario, tmp_path / "cut", **args)
    assert _points_without_timing(tmp_path / "cut" / "points.csv") == _points_without_timing(tmp_path / "whole" / "points.csv")
    assert [p["accuracy_all"] for p in resumed] == [p["accuracy_all"] for p in whole]
    rows = _points_without_timing(tmp_path / "whole" / "points.csv")
    assert [r["seed"] for r in rows[:6]] == ["0", "1", "2", "mean", "ci95_low", "ci95_high"]
    assert len(rows) == 2 * 2 * (3 + 3)


def test_a_solver_or_seeds_added_to_an_experiment_run_alone(tmp_path, monkeypatch):
    import adaptive_resnet.simulation.experiments as experiments

    scenario = load_problem("scenarios/small.yaml")
    args = dict(rounds=1, values=[50.0], progress=False, jobs=1)
    run_experiment("fig7", scenario, tmp_path, solvers=["fast"], seeds=2, **args)
    real, ran = experiments.simulate, []
    monkeypatch.setattr(experiments, "simulate", lambda problem, config, *a, **k: ran.append((config.solver, config.seed)) or real(problem, config, *a, **k))
    points = run_experiment("fig7", scenario, tmp_path, solvers=["fast", "no-drop"], seeds=3, **args)
    finished_before = {("fast", 0), ("fast", 1)}
    assert {(s, k) for s, k in ran} - finished_before == {("fast", 2), ("no-drop", 0), ("no-drop", 1), ("no-drop", 2)}
    assert [p["solver"] for p in points] == ["fast", "no-drop"] and all(p["seeds"] == 3 for p in points)
    with pytest.raises(UserInputError, match="differs in: rounds"):
        run_experiment("fig7", scenario, tmp_path, solvers=["fast"], seeds=2, **{**args, "rounds": 2})


def test_experiment_runs_readings_side_by_side_and_prints_their_trends(tmp_path):
    runner = CliRunner()
    base = ["experiment", "fig8", "--out", str(tmp_path / "f8"), "--rounds", "1", "--seeds", "2", "--solver", "fast", "--jobs", "1"]
    result = runner.invoke(app, [*base, "--reading", "fastest-device", "--reading", "slowest-device"])
    assert result.exit_code == 0, result.output
    for reading in ("fastest-device", "slowest-device"):
        assert (tmp_path / f"f8-{reading}" / "points.csv").is_file() and (tmp_path / f"f8-{reading}" / "fig8.pdf").is_file()
    assert "fastest-device: reproduced | slowest-device: slope (95% CI)" in result.output
    assert "- slowest-device, fast: " in result.output
    result = runner.invoke(app, [*base, "--reading", "downsize", "--reading", "downsize"])
    assert result.exit_code == 2 and "given twice" in result.output


def test_an_experiment_figure_has_every_panel_a_legend_and_labelled_axes(tmp_path):
    from adaptive_resnet.simulation.experiments import EXPERIMENTS, PANELS, figure

    scenario = load_problem("scenarios/small.yaml")
    points = run_experiment("fig7", scenario, tmp_path, rounds=2, solvers=["fast", "no-drop"], values=[50.0, 400.0],
                            progress=False, seeds=2, jobs=1)
    assert (tmp_path / "fig7.png").stat().st_size > 0 and (tmp_path / "fig7.pdf").read_bytes().startswith(b"%PDF")
    fig = figure(points, EXPERIMENTS["fig7"], "title: scenario small, 2 rounds, 2 seeds")
    axes = fig.get_axes()
    assert [ax.get_title() for ax in axes] == [label for _, label, _ in PANELS]
    assert all(ax.get_xlabel() == EXPERIMENTS["fig7"].parameter and ax.get_ylabel() for ax in axes)
    assert all(len(ax.get_lines()) == 2 and len(ax.collections) == 2 for ax in axes)  # a line and a band per solver
    assert all(list(line.get_xdata()) == [50.0, 400.0] for ax in axes for line in ax.get_lines())  # a numeric x axis
    markers = {line.get_marker() for line in axes[0].get_lines()}
    assert len(markers) == 2  # overlapping lines stay distinguishable
    assert len(fig.legends) == 1 and [t.get_text() for t in fig.legends[0].get_texts()] == ["fast", "no-drop"]
    assert "2 seeds" in fig._suptitle.get_text()


def test_the_trend_table_is_written_from_the_results_between_its_markers(tmp_path):
    from adaptive_resnet.simulation.trends import END, START, measured_trends, slope, trend_table, write_into

    assert slope([1, 2, 3], [2, 4, 6]) == pytest.approx(2.0) and slope([1, 1], [3, 5]) == 0.0
    scenario = load_problem("scenarios/small.yaml")
    run_experiment("fig7", scenario, tmp_path / "fig7", rounds=2, solvers=["fast"], values=[25.0, 400.0], progress=False,
                   seeds=2, jobs=1)
    rows = measured_trends(tmp_path / "fig7" / "points.csv")
    assert {r["metric"] for r in rows} == {"accuracy", "latency_mean_s", "shared_mb", "gmacs", "energy_j",
                                           "shared_mb/served", "gmacs/served", "energy_j/served"}
    for r in rows:
        assert r["seeds"] == 2 and r["ci95_low"] <= r["slope"] <= r["ci95_high"]
        assert r["reproduced"] == (r["measured"] == r["claimed"])
    doc = tmp_path / "doc.md"
    doc.write_text("# Results\n\nbefore\n")
    table = trend_table({"fastest-device": rows})
    write_into(doc, table)
    write_into(doc, table)  # again: replaced between the markers, not appended twice
    text = doc.read_text()
    assert text.count(START) == 1 and text.count(END) == 1 and text.startswith("# Results\n\nbefore\n")
    assert "| fig7 | 7a: accuracy increases with capacity (less dropping) | rising | fast |" in text
    assert f"fastest-device, fast: {sum(r['reproduced'] for r in rows)} of 8 claimed trends reproduced" in text
