"""One reading of a scenario: every command plans the Problem that ``load_problem`` reads, and a
scenario given a profile file plans exactly like the same scenario given its architecture."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from adaptive_resnet.cli import app
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.planning import load_problem, solve
from adaptive_resnet.planning.plan_file import request_plan
from adaptive_resnet.simulation.simulator import SimConfig, simulate

runner = CliRunner()


def test_a_profile_file_plans_and_evaluates_exactly_like_the_architecture(tmp_path):
    text = Path("scenarios/cifar-cluster.yaml").read_text()
    by_arch = load_problem("scenarios/cifar-cluster.yaml")
    m = by_arch.scenario.model
    written = runner.invoke(app, ["profile", "--arch", m.arch, "--input-size", str(m.input_size), "--num-classes", str(m.num_classes),
                                  "--stem", m.stem, "--base-channels", str(m.base_channels), "--format", "json"])
    assert written.exit_code == 0, written.output
    (tmp_path / "profile.json").write_text(written.output)
    lines = text.splitlines()
    model_line = next(i for i, line in enumerate(lines) if line.startswith("model:"))
    lines[model_line] = "model: {profile: profile.json}"
    study = Path(by_arch.scenario.accuracy).resolve()  # the same study table, named from the new folder
    lines = [f"accuracy: {study}" if line.startswith("accuracy:") else line for line in lines]
    (tmp_path / "s.yaml").write_text("\n".join(lines) + "\n")
    by_file = load_problem(tmp_path / "s.yaml")
    assert by_file.profile == by_arch.profile
    assert len(by_file.candidates) == len(by_arch.candidates)
    for a, b in zip(by_arch.candidates, by_file.candidates, strict=True):
        assert a.plan == b.plan and a.accuracy == b.accuracy
        for field in ("units", "macs", "memory_bytes", "output_bytes", "skip_in"):
            assert np.array_equal(getattr(a, field), getattr(b, field)), (a.plan, field)
    for solver in ("fast", "exact"):
        options = {"time_limit_s": 1.0} if solver == "exact" else {}
        plan_a = solve(by_arch, solver, **options)
        doc = json.loads(json.dumps(plan_a.to_json(by_arch)))
        again = [request_plan(by_file, r, i) for i, r in enumerate(doc["requests"])]
        assert by_file.evaluate(again) == plan_a.evaluation


def test_a_profile_file_missing_a_field_is_refused(tmp_path):
    doc = json.loads(runner.invoke(app, ["profile", "--format", "json"]).output)
    del doc["units"][3]["shortcut_memory_bytes"]
    (tmp_path / "p.json").write_text(json.dumps(doc))
    from adaptive_resnet.profile import ModelProfile

    with pytest.raises(UserInputError, match=r"units\[3\] has no 'shortcut_memory_bytes'"):
        ModelProfile.load(tmp_path / "p.json")


class Read(Exception):
    pass


@pytest.mark.parametrize("args", [
    ["plan", "S"], ["evaluate", "S", "P"], ["pareto", "S", "--out", "O"], ["simulate", "S", "--out", "O"],
    ["experiment", "fig8", "--scenario", "S", "--out", "O"], ["demo", "--scenario", "S", "--out", "O"],
    ["run", "S", "--checkpoint", "P"], ["serve", "S", "--checkpoint", "P"],
])
def test_every_command_reads_its_scenario_through_load_problem(args, tmp_path, monkeypatch):
    import adaptive_resnet.planning as planning

    seen = []

    def reading(path):
        seen.append(Path(path))
        raise UserInputError("read through load_problem")

    monkeypatch.setattr(planning, "load_problem", reading)
    (tmp_path / "plan.json").write_text("{}")
    filled = [{"S": "scenarios/small.yaml", "P": str(tmp_path / "plan.json"), "O": str(tmp_path / "out")}.get(a, a) for a in args]
    result = runner.invoke(app, filled)
    assert result.exit_code == 2 and "read through load_problem" in result.output, result.output
    assert seen == [Path("scenarios/small.yaml")]


def test_the_simulator_plans_with_the_scenarios_own_rates():
    """small.yaml has fixed rates (a default and one slow pair): every simulated round plans
    with them, as ``plan`` does, rather than with rates of the simulator's own."""
    problem = load_problem("scenarios/small.yaml")
    rows = simulate(problem, SimConfig(rounds=3, request_rate=2.0, seed=5), progress=False)["rounds"]
    requests = np.random.default_rng(5).poisson(2.0, 1)  # the simulator's first draw
    first = solve(problem.derive(requests=int(requests[0])), "fast")
    assert rows[0]["requests"] == requests[0]
    assert rows[0]["latency_mean_s"] == pytest.approx(first.evaluation.latency_s)
    assert rows[0]["energy_j"] == pytest.approx(sum(first.evaluation.energy_j.values()))
