"""Opt-in: two Ray nodes in separate network namespaces, joined by a veth link shaped with tc.

Run with ``pytest -m netns`` (root, ``ip netns`` and ``tc`` needed; skipped otherwise). The
link is shaped with tbf (netem is absent on this kernel); the controller probes it, plans with
what it measured, and re-plans when the rate is changed at run time.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytestmark = [pytest.mark.netns, pytest.mark.ray]

NS, VETH_HOST, VETH_NS = "arnstest", "arnt0", "arnt1"
HOST_IP, NS_IP, PORT = "10.78.0.1", "10.78.0.2", 6397
RAY = str(Path(sys.executable).with_name("ray"))


def sh(command: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(command, shell=True, check=check, capture_output=True, text=True)


def shape(rate_mbit: float, verb: str = "change") -> None:
    tbf = f"tbf rate {rate_mbit}mbit burst 32kbit latency 400ms"
    sh(f"tc qdisc {verb} dev {VETH_HOST} root {tbf}")
    sh(f"ip netns exec {NS} tc qdisc {verb} dev {VETH_NS} root {tbf}")


def teardown_network() -> None:
    env = "RAY_AUTH_MODE=disabled"
    sh(f"ip netns exec {NS} env {env} {RAY} stop --force", check=False)
    sh(f"env {env} {RAY} stop --force", check=False)
    sh(f"ip netns del {NS}", check=False)
    sh(f"ip link del {VETH_HOST}", check=False)


@pytest.fixture()
def two_namespaces():
    if os.geteuid() != 0 or not shutil.which("ip") or not shutil.which("tc"):
        pytest.skip("needs root, ip and tc")
    if sh(f"ip netns add {NS}", check=False).returncode != 0:
        pytest.skip("ip netns is not available here")
    try:
        sh(f"ip link add {VETH_HOST} type veth peer name {VETH_NS}")
        sh(f"ip link set {VETH_NS} netns {NS}")
        sh(f"ip addr add {HOST_IP}/24 dev {VETH_HOST} && ip link set {VETH_HOST} up")
        sh(f"ip netns exec {NS} ip addr add {NS_IP}/24 dev {VETH_NS}")
        sh(f"ip netns exec {NS} ip link set {VETH_NS} up && ip netns exec {NS} ip link set lo up")
        shape(20, "add")
        # Ray 2.60 turns token auth on by default: the same mode on every node and the driver.
        env = "RAY_AUTH_MODE=disabled"
        sh(f"env {env} {RAY} start --head --node-ip-address {HOST_IP} --port {PORT} --num-cpus 1 "
           f"--resources '{{\"device:a\": 1}}' --include-dashboard false --disable-usage-stats")
        sh(f"ip netns exec {NS} env {env} {RAY} start --address {HOST_IP}:{PORT} --node-ip-address {NS_IP} "
           f"--num-cpus 1 --resources '{{\"device:b\": 1}}' --disable-usage-stats")
        yield f"{HOST_IP}:{PORT}"
    finally:
        teardown_network()


def test_controller_probes_the_shaped_link_and_replans_when_it_changes(two_namespaces, tmp_path, monkeypatch):
    import ray

    from adaptive_resnet.planning import Problem
    from adaptive_resnet.planning.plan_file import request_plan
    from adaptive_resnet.profile import profile_model
    from adaptive_resnet.runtime.controller import Controller, RunReport
    from adaptive_resnet.system import parse_scenario
    from adaptive_resnet.train import TrainConfig, build_model

    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    if ray.is_initialized():
        ray.shutdown()
    config = TrainConfig(data=".", arch="resnet50", stem="cifar", base_channels=4, num_classes=10)
    torch.save({"model": build_model(config).state_dict(), "config": config.model_dump()}, tmp_path / "ckpt.pt")
    # Each device can take 60% of a request's multiplications: every plan crosses the link.
    limit_gmac = 0.6 * profile_model("resnet50", 16, 10, "cifar", 4).total("macs") / 1e9
    scenario = parse_scenario(f"""
model: {{arch: resnet50, input_size: 16, num_classes: 10, stem: cifar, base_channels: 4}}
accuracy: paper
accuracy_threshold: 0.9
requests: 1
devices:
  - {{name: a, memory_mb: 100, speed_gmacs: 1, compute_limit_gmac: {limit_gmac}, energy_j: 1000}}
  - {{name: b, memory_mb: 100, speed_gmacs: 1, compute_limit_gmac: {limit_gmac}, energy_j: 1000}}
rates_mbps: {{default: 50}}
""")
    controller = Controller(Problem(scenario), str(tmp_path / "ckpt.pt"), "exact", emulate_links=False, address=two_namespaces,
                            measure_speeds=False)  # rates alone change between the steps
    try:
        assert controller.probe_rates
        report = RunReport()
        x, y = torch.randn(1, 3, 16, 16), torch.zeros(1, dtype=torch.long)
        controller.step(x, y, report)
        fast_rate = controller.problem.rate_bps[0, 1] / 1e6
        fast_plan = controller.plan(1)
        shape(2)  # the link slows down at run time
        controller.step(x, y, report)
        slow_rate = controller.problem.rate_bps[0, 1] / 1e6
        slow_plan = controller.plan(1)
        assert 14 < fast_rate < 26 and 1.4 < slow_rate < 2.6, (fast_rate, slow_rate)
        assert set(controller.measured_rates) == {("a", "b"), ("b", "a")}
        # Re-planned with what was measured: the old plan now costs more, and the new one is at
        # least as good as keeping it (exact solver, same problem).
        slow = controller.problem
        kept = slow.evaluate([request_plan(slow, r, k) for k, r in enumerate(fast_plan["requests"])])
        assert kept.latency_s > fast_plan["latency_s"] + 1e-4
        assert slow_plan["objective"] <= kept.objective + 1e-12
        assert report.answered == 2 and report.failed == 0
    finally:
        controller.shutdown()
        ray.shutdown()
