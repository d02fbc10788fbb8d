"""Scenario files: validation errors name the field and the YAML line."""

from __future__ import annotations

import numpy as np
import pytest

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.planning import load_problem
from adaptive_resnet.system import load_scenario, parse_scenario

BASE = """\
name: t
alpha: 0.5
beta: 0.5
accuracy_threshold: 0.8
devices:
  - {name: a, memory_mb: 100, speed_gmacs: 1, compute_limit_gmac: 5, energy_j: 100}
  - {name: b, memory_mb: 100, speed_gmacs: 2, compute_limit_gmac: 5, energy_j: 100}
  - {name: c, memory_mb: 100, speed_gmacs: 2, compute_limit_gmac: 5, energy_j: 100}
rates_mbps:
  default: 20
"""


def test_example_scenarios_load():
    for path in ("scenarios/paper.yaml", "scenarios/small.yaml"):
        scenario = load_scenario(path)
        rates = scenario.rate_matrix()
        assert np.isinf(np.diag(rates)).all() and np.allclose(rates, rates.T)
    paper = load_scenario("scenarios/paper.yaml")
    off = paper.rate_matrix()[~np.eye(10, dtype=bool)]
    assert len(paper.devices) == 10 and off.min() >= 7.2 and off.max() <= 72.2


def test_rates_matrix_pairs_default():
    s = parse_scenario(BASE.replace("  default: 20", "  default: 20\n  pairs: {\"a,c\": 5}"))
    assert s.rate_matrix()[0, 2] == 5 and s.rate_matrix()[2, 0] == 5 and s.rate_matrix()[0, 1] == 20


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda t: t.replace("name: t", "name: t\ncolour: red"), r"<s>:2: colour: unknown key"),
        (lambda t: t.replace("memory_mb: 100, speed_gmacs: 2", "memory_mb: -5, speed_gmacs: 2", 1), r"<s>:7: devices.1.memory_mb: Input should be greater than 0"),
        (lambda t: t.replace("beta: 0.5", "beta: 0.7"), r"alpha \+ beta must be 1"),
        (lambda t: t.replace("{name: c,", "{name: a,"), r"<s>:8: devices.2.name: device 'a' named twice"),
        (lambda t: t.replace("  default: 20", "  pairs: {\"a,b\": 10}"), r"no rate for the pair a,c"),
        (lambda t: t.replace("  default: 20", "  default: 0"), r"<s>:10: rates_mbps.default: Input should be greater than 0"),
        (lambda t: t.replace("  default: 20", "  matrix: [[0, 1], [1, 0]]"), r"must be 3x3"),
        (lambda t: t + "  pairs: {\"a,zz\": 3}\n", r"'a,zz' must be 'a,b' with a and b device names"),
        (lambda t: t.replace("alpha: 0.5", "alpha: [0.5"), r"<s>:\d+: not valid YAML"),
    ],
)
def test_bad_scenarios_name_field_and_line(edit, message):
    with pytest.raises(UserInputError, match=message):
        parse_scenario(edit(BASE), "<s>")


def test_missing_file():
    with pytest.raises(UserInputError, match="scenario file not found"):
        load_scenario("nope.yaml")


def test_unreachable_threshold_and_bad_accuracy_source_name_the_line(tmp_path):
    path = tmp_path / "s.yaml"
    path.write_text(BASE.replace("accuracy_threshold: 0.8", "accuracy_threshold: 0.97"))
    with pytest.raises(UserInputError, match=r"s.yaml:4: accuracy_threshold: 0.97 is above every drop set's accuracy \(best: 0.9473"):
        load_problem(path)
    path.write_text("accuracy: nowhere.json\n" + BASE)
    with pytest.raises(UserInputError, match=r"s.yaml:1: accuracy: accuracy source .*nowhere.json' is neither 'paper'"):
        load_problem(path)
