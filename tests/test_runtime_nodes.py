"""A node removed under load, on a several-node Ray cluster on one machine."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models import DropPlan
from adaptive_resnet.planning import Problem
from adaptive_resnet.planning.step_plan import PlannedRequest, StepPlan
from adaptive_resnet.runtime.cluster import RayCluster, one_node
from adaptive_resnet.runtime.recovery import plan_for
from adaptive_resnet.system import parse_scenario
from adaptive_resnet.train import TrainConfig, build_model

pytestmark = pytest.mark.ray

SCENARIO = """
model: {arch: resnet18, input_size: 16, num_classes: 10, stem: cifar, base_channels: 4}
accuracy: paper
accuracy_threshold: 0.5
requests: 6
devices:
  - {name: a, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
  - {name: b, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
  - {name: c, memory_mb: 5, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
rates_mbps: {default: 0.05}
"""


def test_node_removed_under_load(tmp_path):
    import ray
    from ray.cluster_utils import Cluster

    config = TrainConfig(data=".", arch="resnet18", stem="cifar", base_channels=4, num_classes=10)
    torch.manual_seed(0)
    model = build_model(config).eval()
    torch.save({"model": model.state_dict(), "config": config.model_dump()}, tmp_path / "ckpt.pt")
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 1, "resources": {"device:a": 1}})
    nodes = {name: cluster.add_node(num_cpus=1, resources={f"device:{name}": 1}) for name in ("b", "c")}
    try:
        ray.init(address=cluster.address, log_to_driver=False)
        table = AccuracyTable(0.9, {DropPlan.dc(["stage3.block2"]): 0.85}, name="t", arch="resnet18")
        problem = Problem(parse_scenario(SCENARIO), accuracy=table)
        assert not one_node()  # several nodes: by default a real network, not emulated
        four = parse_scenario(SCENARIO.replace("devices:\n", "devices:\n  - {name: d, memory_mb: 5, speed_gmacs: 1000, "
                                                               "compute_limit_gmac: 1000, energy_j: 1000}\n"))
        with pytest.raises(UserInputError, match="no Ray node offers device 'd'"):
            RayCluster(Problem(four, accuracy=table), str(tmp_path / "ckpt.pt"))
        runtime = RayCluster(problem, str(tmp_path / "ckpt.pt"), emulate_links=True)
        placement = {u: "abc"[min(3 * i // len(problem.units), 2)] for i, u in enumerate(problem.units)}
        plan = StepPlan.of(PlannedRequest.of(placement))
        x = torch.randn(6, 3, 16, 16)
        runtime.infer(x[:1], plan)  # warm-up
        rates = runtime.probe_rates()  # every link between the three nodes, in rounds
        assert sorted(rates) == [(s, d) for s in "abc" for d in "abc" if s != d]
        assert all(mbps > 0 for mbps in rates.values())
        replans = []

        def replan(dead):
            replans.append(dead)
            return plan_for(problem, "fast", dead)

        killer = threading.Timer(0.3, lambda: cluster.remove_node(nodes["b"]))
        killer.start()
        outcomes = runtime.infer(x, plan, replan=replan)
        killer.join()
        answered = [o for o in outcomes if o.logits is not None]
        failed = [o for o in outcomes if o.error]
        assert len(answered) + len(failed) == len(x)
        assert replans and replans[0] == ["b"]
        with torch.no_grad():
            for o in answered:  # re-planned requests may run with blocks dropped
                expected = model(x[o.index : o.index + 1], o.drops)
                assert torch.allclose(o.logits, expected, atol=1e-5)
        print(f"sent {len(x)}, answered {len(answered)}, re-planned {sum(o.attempts > 1 for o in outcomes)}, failed {len(failed)}")
        assert np.isfinite([o.latency_s for o in answered]).all()
    finally:
        ray.shutdown()
        cluster.shutdown()
