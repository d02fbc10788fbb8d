"""The Ray runtime: exact logits through the cluster, drops, link emulation, a killed worker."""

from __future__ import annotations

import io
import re
import threading
import time

import numpy as np
import pytest
import torch

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models import DropPlan
from adaptive_resnet.planning import Problem
from adaptive_resnet.planning.step_plan import PlannedRequest, StepPlan
from adaptive_resnet.runtime.chains import request_input, submit
from adaptive_resnet.runtime.cluster import RayCluster, one_node
from adaptive_resnet.runtime.health import State
from adaptive_resnet.runtime.probing import probe_rounds
from adaptive_resnet.runtime.recovery import plan_for
from adaptive_resnet.system import parse_scenario
from adaptive_resnet.train import TrainConfig, build_model

pytestmark = pytest.mark.ray

SCENARIO = """
model: {arch: resnet50, input_size: 16, num_classes: 10, stem: cifar, base_channels: 4}
accuracy: paper
alpha: 0.5
beta: 0.5
accuracy_threshold: 0.5
requests: 4
devices:
  - {name: a, memory_mb: 1, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
  - {name: b, memory_mb: 1, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
  - {name: c, memory_mb: 1, speed_gmacs: 1000, compute_limit_gmac: 1000, energy_j: 1000}
rates_mbps: {default: 0.05}
"""


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    import ray

    root = tmp_path_factory.mktemp("runtime")
    config = TrainConfig(data=".", arch="resnet50", stem="cifar", base_channels=4, num_classes=10)
    torch.manual_seed(0)
    model = build_model(config).eval()
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_var.uniform_(0.5, 1.5)
    torch.save({"model": model.state_dict(), "config": config.model_dump()}, root / "ckpt.pt")
    table = AccuracyTable(0.9, {DropPlan.dc(["stage3.block2"]): 0.85, DropPlan.dc(["stage4.block3"]): 0.86}, name="t", arch="resnet50")
    problem = Problem(parse_scenario(SCENARIO), accuracy=table)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield root, model, problem
    ray.shutdown()


def at_rate(problem, rate_mbps):
    return Problem(problem.scenario, problem.profile, problem.table, rates_mbps=np.full((3, 3), rate_mbps))


def manual_plan(problem, drops=()):
    """Units spread a, b, c in thirds; ``drops`` are DC-dropped (null placement)."""
    units = problem.units
    placement = {u: "abc"[min(3 * i // len(units), 2)] for i, u in enumerate(units)}
    for d in drops:
        placement[d] = None
    return StepPlan.of(PlannedRequest.of(placement, [f"{d}:DC" for d in drops]))


def test_segments_group_contiguous_units():
    placement = {"stage1": "a", "stage2.block1": "a", "stage2.block2": None, "stage3.block1": "b", "head": "a"}
    route = PlannedRequest.of(placement, ["stage2.block2:DC"])
    assert route.segments() == [("a", ["stage1", "stage2.block1"]), ("b", ["stage3.block1"]), ("a", ["head"])]
    with pytest.raises(UserInputError, match="runs nowhere"):
        PlannedRequest.of(placement)  # a unit placed nowhere must be a dropped block


@pytest.mark.parametrize("nodes", [
    {f"d{i}": f"n{i}" for i in range(10)},  # one device a node, even
    {f"d{i}": f"n{i}" for i in range(5)},  # odd: a node sits each round out
    {"a": "h", "b": "h", "c": "m", "d": "k"},  # two devices share a node (and its link)
])
def test_rate_probes_cover_every_link_once_in_rounds_that_share_no_node(nodes):
    rounds = probe_rounds(nodes)
    probed = [pair for r in rounds for pair in r]
    assert sorted(probed) == sorted((s, d) for s in nodes for d in nodes if nodes[s] != nodes[d])
    for r in rounds:
        ends = [nodes[s] for s, _ in r] + [nodes[d] for _, d in r]
        assert len(ends) == len(set(ends)), r
    hosts = len(set(nodes.values()))
    if hosts == len(nodes):
        assert len(rounds) == 2 * (hosts - (hosts % 2 == 0)), "circle method: 2(N-1) rounds, 2N for odd N"


def test_a_request_carries_its_own_image_not_the_batch():
    import pickle

    batch = torch.randn(8, 3, 32, 32)
    one = request_input(batch, 5)
    assert torch.equal(torch.from_numpy(one), batch[5:6])
    # What Ray ships is the pickled array: one image's bytes, not the batch's storage.
    assert len(pickle.dumps(one)) < 1.5 * 3 * 32 * 32 * 4 < len(pickle.dumps(batch[5:6]))


def test_no_drops_equals_the_monolithic_model(setup):
    root, model, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=False)
    try:
        x = torch.randn(6, 3, 16, 16)
        outcomes = cluster.infer(x, manual_plan(problem))
        with torch.no_grad():
            expected = model(x)
        got = torch.cat([o.logits for o in outcomes])
        assert torch.allclose(got, expected, atol=1e-5)
        # each worker loaded only the units it runs
        loaded = {name: set(s["loaded"]) for name, s in cluster.stats().items()}
        assert loaded["a"].isdisjoint(loaded["c"]) and "head" in loaded["c"] and "stage1" in loaded["a"]
        dropped = cluster.infer(x, manual_plan(problem, ["stage3.block2", "stage4.block3"]))
        with torch.no_grad():
            expected = model(x, DropPlan.dc(["stage3.block2", "stage4.block3"]))
        assert torch.equal(torch.cat([o.logits for o in dropped]).argmax(1), expected.argmax(1))
        assert torch.allclose(torch.cat([o.logits for o in dropped]), expected, atol=1e-5)
    finally:
        cluster.shutdown()


def test_compiled_graph_path_equals_the_model_and_falls_back_when_a_worker_dies(setup):
    import ray

    root, model, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=False, compiled=True)
    try:
        units = problem.units
        two = {u: ("a" if i < len(units) // 2 else "b") for i, u in enumerate(units)}  # two polling actors at most
        plan = StepPlan.of(PlannedRequest.of(two))
        x = torch.randn(6, 3, 16, 16)
        outcomes = cluster.infer(x, plan)
        with torch.no_grad():
            expected = model(x)
        assert cluster.compiled.enabled and cluster.compiled._graph is not None  # served through the graph
        assert torch.allclose(torch.cat([o.logits for o in outcomes]), expected, rtol=1e-4, atol=1e-4)
        ray.kill(cluster.actors["b"])
        replans = []

        def replan(dead):
            replans.append(dead)
            return plan_for(problem, "fast", dead)

        outcomes = cluster.infer(x, plan, replan=replan)
        assert not cluster.compiled.enabled and cluster.compiled._graph is None  # switched off, the ordinary path took over
        assert replans == [["b"]]
        assert all((o.logits is None) != (o.error is None) for o in outcomes)  # each answered or failed, once
        assert all(o.logits is not None for o in outcomes)  # a and c can run the whole network
    finally:
        cluster.shutdown()


def test_preload_loads_each_workers_units_before_any_request(setup):
    root, _, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=False)
    try:
        plan = manual_plan(problem, ["stage3.block2"])
        cluster.preload(plan)
        loaded = {name: set(s["loaded"]) for name, s in cluster.stats().items()}
        for device in "abc":
            wanted = set(plan.requests[0].units_on(device))
            assert loaded[device] == wanted  # exactly its units, the dropped block on none
        # A new placement: everything on a. b and c free what they held, a loads the rest.
        cluster.preload(StepPlan.of(PlannedRequest.of({u: "a" for u in problem.units})))
        stats = cluster.stats()
        assert set(stats["a"]["loaded"]) == set(problem.units) and not stats["b"]["loaded"] and not stats["c"]["loaded"]
        assert stats["a"]["weight_bytes"] == sum(u.weight_bytes for u in problem.profile.units)
        assert stats["b"]["weight_bytes"] == stats["c"]["weight_bytes"] == 0
    finally:
        cluster.shutdown()


def test_link_emulation_matches_the_cost_model(setup):
    root, _, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=True)
    try:
        plan = plan_for(problem)  # the planner's own prediction, through the one cost model
        req = plan.requests[0]
        forced = {u: ("a" if i < 3 else "b") for i, u in enumerate(problem.units)}  # one 0.05 Mb/s hop
        cand = next(c for c in problem.candidates if not c.plan)
        devices = np.array([problem.devices.index(forced[problem.units[u]]) for u in cand.units])
        predicted = problem.latency_s(cand, devices)
        doc = StepPlan.of(PlannedRequest.of(forced, latency_s=predicted))
        cluster.infer(torch.randn(1, 3, 16, 16), doc)  # warm-up: workers load their weights
        outcome = cluster.infer(torch.randn(1, 3, 16, 16), doc)[0]
        assert predicted > 0.1 and abs(outcome.latency_s - predicted) / predicted < 0.15, (outcome.latency_s, predicted)
        assert dict(req.placement)["stage1"] in problem.devices and req.latency_s > 0
    finally:
        cluster.shutdown()


def all_on_a(problem):
    """A plan running the whole network on device a (no transfer: its latency is the emulated
    compute alone), and the cost model's prediction for it."""
    cand = next(c for c in problem.candidates if not c.plan)
    predicted = problem.latency_s(cand, np.zeros(len(cand.units), int))
    return StepPlan.of(PlannedRequest.of({u: "a" for u in problem.units}, latency_s=predicted)), predicted


def test_device_emulation_matches_the_cost_model_and_serves_a_step_side_by_side(setup):
    root, _, problem = setup
    slow = Problem(problem.scenario, problem.profile, problem.table, speeds_gmacs=[0.005, 0.005, 0.005])  # compute dominates
    cluster = RayCluster(slow, str(root / "ckpt.pt"), emulate_links=True)
    try:
        doc, predicted = all_on_a(slow)
        cluster.infer(torch.randn(1, 3, 16, 16), doc)  # warm-up: the worker loads its weights
        outcomes = cluster.infer(torch.randn(4, 3, 16, 16), doc)  # one step's requests, all on one device
        assert predicted > 0.1
        for o in outcomes:  # each as the cost model predicts: side by side, not queued
            assert abs(o.latency_s - predicted) / predicted < 0.15, (o.latency_s, predicted)
        # the device counts the emulated compute time as busy, as it does for energy
        assert cluster.stats()["a"]["busy_s"] >= 5 * predicted * 0.95
    finally:
        cluster.shutdown()


def test_time_dilation_runs_slower_and_reports_emulated_time(setup):
    import time

    root, _, problem = setup
    quick = Problem(problem.scenario, problem.profile, problem.table, speeds_gmacs=[0.02, 0.02, 0.02])
    with pytest.raises(UserInputError, match="time dilation"):
        RayCluster(quick, str(root / "ckpt.pt"), emulate_links=False, time_dilation=3.0)
    cluster = RayCluster(quick, str(root / "ckpt.pt"), emulate_links=True, time_dilation=3.0)
    try:
        doc, predicted = all_on_a(quick)
        cluster.infer(torch.randn(1, 3, 16, 16), doc)  # warm-up: the worker loads its weights
        t0 = time.perf_counter()
        outcomes = cluster.infer(torch.randn(4, 3, 16, 16), doc)
        wall_s = time.perf_counter() - t0
        assert 0.03 < predicted < 0.1 and wall_s >= 3 * predicted * 0.95  # the host ran 3x slower
        for o in outcomes:  # and reported emulated time
            assert abs(o.latency_s - predicted) / predicted < 0.15, (o.latency_s, predicted)
        assert abs(cluster.stats()["a"]["busy_s"] - 5 * predicted) < 0.15 * 5 * predicted  # energy in emulated seconds too
    finally:
        cluster.shutdown()


def test_a_killed_worker_loses_no_request(setup):
    import ray

    root, model, problem = setup
    problem = at_rate(problem, 0.2)  # about 0.6 s a hop: requests are in flight when b dies
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=True)
    try:
        x = torch.randn(8, 3, 16, 16)
        plan = manual_plan(problem)
        replans = []

        def replan(dead):
            replans.append(dead)
            return plan_for(problem, "fast", dead)

        timer = threading.Timer(0.3, lambda: ray.kill(cluster.actors["b"]))
        timer.start()
        outcomes = cluster.infer(x, plan, replan=replan)
        timer.join()
        answered = [o for o in outcomes if o.logits is not None]
        failed = [o for o in outcomes if o.error]
        assert len(answered) + len(failed) == len(x)  # none lost, none twice
        assert replans == [["b"]]
        assert any(o.attempts == 2 for o in answered)  # re-planned and retried
        print(f"killed actor: sent {len(x)}, answered {len(answered)}, re-planned {sum(o.attempts > 1 for o in outcomes)}, "
              f"failed {len(failed)}")
        with torch.no_grad():
            full = model(x)
        for o in answered:
            if not o.drops:
                assert torch.allclose(o.logits[0], full[o.index], atol=1e-5)
        with pytest.raises(UserInputError, match="no live worker"):
            submit(cluster, request_input(x, 0), plan.requests[0].segments(), DropPlan())
        ray.kill(cluster.actors["c"])  # dies between steps: the energy accounting finds it
        with pytest.raises(ray.exceptions.RayActorError):  # (once Ray knows it is gone)
            for _ in range(100):
                ray.get(cluster.actors["c"].ping.remote(), timeout=10)
                time.sleep(0.1)
        stats = cluster.stats()
        assert set(stats) == {"a"} and not cluster.alive["c"]
    finally:
        cluster.shutdown()


def test_checkpoint_for_another_model_is_refused(setup):
    from adaptive_resnet.runtime.controller import check_checkpoint_matches

    root, _, problem = setup
    other = problem.scenario.model_copy(update={"model": problem.scenario.model.model_copy(update={"base_channels": 16})})
    with pytest.raises(UserInputError, match=r"is \('resnet50', 'cifar', 4, 10\).*scenario's model is \('resnet50', 'cifar', 16, 10\)"):
        check_checkpoint_matches(other, str(root / "ckpt.pt"))


def test_requests_in_flight_finish_through_the_shortcut_of_a_dead_worker(setup):
    import ray

    root, model, problem = setup
    problem = at_rate(problem, 0.2)  # about 0.3 s into b: every request is in flight when b dies
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=True)
    try:
        placement = {u: "a" for u in problem.units}
        placement["stage3.block2"] = "b"  # an identity block, droppable above the threshold
        placement["head"] = "c"
        plan = StepPlan.of(PlannedRequest.of(placement))
        x = torch.randn(6, 3, 16, 16)
        replans = []
        timer = threading.Timer(0.15, lambda: ray.kill(cluster.actors["b"]))
        timer.start()
        outcomes = cluster.infer(x, plan, replan=lambda dead: replans.append(dead))
        timer.join()
        assert replans == []  # nothing re-planned: the shortcut completed them
        assert all(o.logits is not None and o.error is None for o in outcomes)
        assert all(o.shortcut and o.drops == DropPlan.dc(["stage3.block2"]) and o.attempts == 1 for o in outcomes)
        print(f"shortcut: sent {len(outcomes)}, answered {sum(o.logits is not None for o in outcomes)}, "
              f"through the shortcut {sum(o.shortcut for o in outcomes)}, re-planned {len(replans)}, "
              f"failed {sum(o.error is not None for o in outcomes)}")
        with torch.no_grad():
            # one image at a time, as the workers run them (a batch of 6 may take other kernels)
            expected = torch.cat([model(x[i : i + 1], DropPlan.dc(["stage3.block2"])) for i in range(len(x))])
        assert torch.allclose(torch.cat([o.logits for o in outcomes]), expected, rtol=1e-4, atol=1e-4)

        # A dead worker whose unit is a first block (projection shortcut) cannot be skipped.
        placement["stage3.block2"], placement["stage4.block1"] = "a", "b"
        cluster.health.state["b"] = State.ALIVE  # pretend it is back, so that the plan is submitted
        outcome = cluster.infer(x[:1], StepPlan.of(PlannedRequest.of(placement)))[0]
        assert outcome.logits is None and not outcome.shortcut and "worker failed" in outcome.error
    finally:
        cluster.shutdown()


def test_serve_answers_images_over_http_and_refuses_bad_ones(setup, tmp_path):
    import io
    import json
    import urllib.error
    import urllib.request

    from PIL import Image

    from adaptive_resnet.data import ImageSet, batches
    from adaptive_resnet.runtime.controller import Controller
    from adaptive_resnet.runtime.server import Server, serve_in_thread

    root, model, problem = setup
    controller = Controller(problem, str(root / "ckpt.pt"), "fast", emulate_links=False)
    server = Server(controller, step_s=0.3)
    url, stop = serve_in_thread(server)

    def post(data: bytes, path: str = "/classify"):
        try:
            with urllib.request.urlopen(urllib.request.Request(url + path, data=data, method="POST"), timeout=120) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def png(array, mode=None):
        buf = io.BytesIO()
        Image.fromarray(array, mode).save(buf, format="PNG")
        return buf.getvalue()

    try:
        rng = np.random.default_rng(0)
        images = rng.integers(0, 256, (3, 16, 16, 3), dtype=np.uint8)
        answers = [None] * 3

        def send(k):
            answers[k] = post(png(images[k]))

        senders = [threading.Thread(target=send, args=(k,)) for k in range(3)]
        for t in senders:
            t.start()
        for t in senders:
            t.join()
        x, _ = next(batches(ImageSet(images, np.zeros(3, np.int64), []), 3))
        for k, (status, doc) in enumerate(answers):
            assert status == 200, doc
            with torch.no_grad():
                expected = int(model(x[k : k + 1], DropPlan.of(doc["drops"])).argmax(1)[0])
            assert doc["class_index"] == expected and doc["latency_s"] > 0 and doc["shortcut"] is False
        assert post(png(images[0][:8]))[0] == 400
        assert "the model takes 16x16" in post(png(images[0][:8]))[1]["error"]
        assert "mode L" in post(png(images[0][..., 0], "L"))[1]["error"]
        assert "cannot decode" in post(b"not an image")[1]["error"]
        assert post(b"", "/nowhere")[0] == 404
        with urllib.request.urlopen(url + "/status", timeout=30) as r:
            status = json.loads(r.read())
        assert status["answered"] == 3 and status["failed"] == 0 and 1 <= status["steps"] <= 3
        assert status["devices"] == {"a": "alive", "b": "alive", "c": "alive"}
        view = status["cluster"]  # what the live page shows
        hosted = {u for d in view["devices"] for u in d["hosts"]}
        assert {d["name"] for d in view["devices"]} == {"a", "b", "c"} and {"stage1", "head"} <= hosted
        assert set(view["links_mbps"]) == {"a,b", "a,c", "b,c"} and view["recent"]["requests"] == 3
        assert 0.5 <= view["recent"]["accuracy_mean"] <= 1 and all(d["battery_j"] > 0 for d in view["devices"])
        with urllib.request.urlopen(url + "/metrics", timeout=30) as r:
            assert 'adaptive_resnet_requests_total{outcome="answered"} 3.0' in r.read().decode()
    finally:
        stop()
        server.close()
        controller.shutdown()


def test_controller_measures_device_speeds_from_what_workers_ran(setup):
    from adaptive_resnet.runtime.controller import Controller, RunReport

    root, _, problem = setup
    controller = Controller(problem, str(root / "ckpt.pt"), "fast", emulate_links=False)
    try:
        assert controller.measure_speeds  # a real network (no emulation): measure by default
        report = RunReport()
        x, y = torch.randn(4, 3, 16, 16), torch.zeros(4, dtype=torch.long)
        outcomes = controller.step(x, y, report)
        stats = controller.cluster.stats()
        # The workers' MAC counts are the cost model's for the drop sets that ran.
        plan = controller.problem
        expected = sum(next(c for c in plan.candidates if c.plan == o.drops).macs.sum() for o in outcomes)
        assert report.answered == 4 and sum(s["macs"] for s in stats.values()) == pytest.approx(expected)
        measured = {name: s["macs"] / s["busy_s"] / 1e9 for name, s in stats.items() if s["busy_s"] > 0}
        for name, speed in measured.items():
            assert controller.speeds_gmacs[plan.devices.index(name)] == pytest.approx(speed)
        controller.step(x, y, report)  # the next step plans with the measured speeds
        used = controller.problem.speed_macs / 1e9
        assert all(0 < s < 1000 for s in used[[plan.devices.index(n) for n in measured]])  # host speed, not the configured 1000
        assert report.speeds_gmacs == dict(zip(plan.devices, used.tolist()))
    finally:
        controller.shutdown()


def test_calibration_doubles_the_dilation_and_charges_nothing(setup):
    from adaptive_resnet.runtime.controller import Controller, RunReport

    root, _, problem = setup
    scenario = parse_scenario(SCENARIO.replace("{default: 0.05}", "{range: [40, 60], seed: 3}"))
    controller = Controller(problem.derive(scenario), str(root / "ckpt.pt"), "fast", emulate_links=True)
    try:
        x = torch.randn(4, 3, 16, 16)
        rng_state = controller.rng.bit_generator.state
        trials = controller.calibrate(x, tolerance=-1.0, max_dilation=4.0)  # never close enough: up to the cap
        assert [k for k, _ in trials] == [1.0, 2.0, 4.0]
        assert all(np.isfinite(r) and r > 0 for _, r in trials)
        assert controller.cluster.time_dilation == 4.0
        assert controller.rng.bit_generator.state == rng_state  # the run's rates are drawn as without it
        controller._account()
        assert not controller._spent.any()  # calibration requests charge no battery
        assert [k for k, _ in controller.calibrate(x, tolerance=1e9)] == [4.0]  # close enough at once: kept
        report = RunReport()
        controller.step(x, torch.zeros(4, dtype=torch.long), report)
        assert report.answered == 4 and controller._spent.sum() > 0  # a real step is charged
        assert all(o >= 0 for o in report.latencies_s)
    finally:
        controller.shutdown()


def test_run_time_dilation_option_takes_auto_or_a_number_at_least_one():
    from adaptive_resnet.cli.runtime_options import time_dilation_choice

    assert time_dilation_choice("auto") == (1.0, True)
    assert time_dilation_choice("4") == (4.0, False)
    for bad in ("0.5", "fast", "nan"):
        with pytest.raises(UserInputError, match="time-dilation"):
            time_dilation_choice(bad)


def test_run_command_classifies_a_folder_through_the_cluster_with_calibrated_dilation(setup, tmp_path, monkeypatch):
    from PIL import Image
    from typer.testing import CliRunner

    from adaptive_resnet.cli import app

    root, _, _ = setup
    rng = np.random.default_rng(0)
    for label in ("cat", "dog"):
        (tmp_path / "images" / "test" / label).mkdir(parents=True)
        for k in range(4):
            Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(tmp_path / "images" / "test" / label / f"{k}.png")
    # devices at 0.05 GMAC/s: ~26 ms a request by the cost model, enough to compare with
    (tmp_path / "scenario.yaml").write_text(SCENARIO.replace("{default: 0.05}", "{default: 50}").replace("speed_gmacs: 1000", "speed_gmacs: 0.05"))
    pairs = [("a", "b"), ("a", "c"), ("b", "c")]
    (tmp_path / "trace.csv").write_text("round,a,b,rate_mbps\n" + "".join(f"{t},{a},{b},{40 + t}\n" for t in (1, 2) for a, b in pairs))
    monkeypatch.chdir(tmp_path)  # the image cache goes under ./runs
    result = CliRunner().invoke(app, ["run", "scenario.yaml", "--checkpoint", str(root / "ckpt.pt"), "--images", "images",
                                      "--limit", "8", "--per-step", "4", "--rate-trace", "trace.csv"])
    assert result.exit_code == 0, result.output
    assert "time dilation auto: x1 measured/predicted" in result.output
    assert "sent 8, answered 8, failed 0" in result.output
    measured, predicted = (float(v) for v in re.search(r"measured ([\d.]+) s, predicted ([\d.]+) s", result.output).groups())
    assert predicted > 0 and measured > 0
    assert re.search(r"median [\d.]+ s, 95th percentile [\d.]+ s, max [\d.]+ s", result.output)
    bad = CliRunner().invoke(app, ["run", "scenario.yaml", "--checkpoint", str(root / "ckpt.pt"), "--images", "images",
                                   "--time-dilation", "slow"])
    assert bad.exit_code != 0 and "--time-dilation takes a number >= 1 or 'auto'" in bad.output
    short = CliRunner().invoke(app, ["run", "scenario.yaml", "--checkpoint", str(root / "ckpt.pt"), "--images", "images",
                                     "--limit", "8", "--per-step", "2", "--rate-trace", "trace.csv"])  # 4 steps, 2 rounds
    assert short.exit_code != 0 and "round 3 has no rows" in short.output


def test_a_worker_holds_only_the_weights_of_the_units_it_hosts(setup):
    from adaptive_resnet.runtime.worker import DeviceWorker, from_wire, to_wire

    root, model, problem = setup
    worker = DeviceWorker("a", root / "ckpt.pt")  # a plain object: no Ray needed
    assert worker.weight_bytes() == 0  # a skeleton without storage until units are placed
    units = problem.units[4:8]
    worker.load(units)
    # exactly the cost model's weights for those units (Eq. 1's weight part), no more
    assert worker.weight_bytes() == sum(problem.profile[u].weight_bytes for u in units)
    assert worker.stats()["weight_bytes"] == worker.weight_bytes()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        inbound = model.run_units(problem.units[:4], x)
        expected = model.run_units(units, inbound)
    got = from_wire(worker.run(to_wire(inbound), units, DropPlan()))
    assert torch.allclose(got, expected, atol=1e-6)
    # Placed elsewhere: the worker frees what it no longer hosts, and runs a unit again when asked.
    worker.place(units[2:])
    assert worker.weight_bytes() == sum(problem.profile[u].weight_bytes for u in units[2:])
    assert all(t.is_meta for k, t in worker.model.state_dict().items() if k.startswith(worker.model.unit_prefixes(units[0])))
    again = from_wire(worker.run(to_wire(inbound), units, DropPlan()))
    assert torch.allclose(again, expected, atol=1e-6)


def test_a_rate_trace_sets_the_emulated_links_step_by_step_and_repeats(setup, tmp_path):
    from adaptive_resnet.runtime.controller import Controller
    from adaptive_resnet.simulation.simulator import read_trace

    root, _, problem = setup
    rows = ["round,a,b,rate_mbps"] + [f"{t},{a},{b},{10 * t + k}" for t in (1, 2) for k, (a, b) in enumerate([("a", "b"), ("a", "c"), ("b", "c")])]
    (tmp_path / "trace.csv").write_text("\n".join(rows) + "\n")
    trace = read_trace(tmp_path / "trace.csv", ["a", "b", "c"])  # as many steps as the file has
    assert sorted(trace) == [1, 2]
    with pytest.raises(UserInputError, match="round 3 has no rows"):
        read_trace(tmp_path / "trace.csv", ["a", "b", "c"], 3)  # a run of 3 steps needs 3 rounds
    with pytest.raises(UserInputError, match="rate trace sets emulated links"):
        Controller(problem, str(root / "ckpt.pt"), emulate_links=False, rate_trace=trace)
    controller = Controller(problem, str(root / "ckpt.pt"), emulate_links=True, rate_trace=trace)
    try:
        x = torch.randn(2, 3, 16, 16)
        for step in (1, 2, 1):  # the third step starts the trace again
            outcomes, _ = controller.serve_step(x)
            assert all(o.error is None for o in outcomes)
            rates = controller.problem.rate_bps / 1e6
            assert rates[0, 1] == pytest.approx(10 * step) and rates[0, 2] == pytest.approx(10 * step + 1)
            assert rates[1, 2] == pytest.approx(10 * step + 2) and rates[2, 1] == pytest.approx(10 * step + 2)
    finally:
        controller.shutdown()


def test_link_emulation_is_on_by_default_where_the_cluster_is_one_machine(setup):
    root, _, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"))  # no choice made: decided by the cluster
    try:
        assert one_node() and cluster.emulate_links
    finally:
        cluster.shutdown()


def test_a_hung_worker_is_routed_around_within_the_deadline_and_rejoins(setup):
    """SIGSTOP one worker under load: the requests that need it finish through the shortcut
    once their deadline passes, those that do not are answered first, its late calls never run,
    and after SIGCONT a heartbeat brings it back."""
    import os
    import signal

    import ray

    root, model, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=False, deadline_s=3.0)
    pid_b = ray.get(cluster.actors["b"].pid.remote())
    try:
        around = {u: "a" for u in problem.units}
        around["head"] = "c"
        through = dict(around)
        through["stage3.block2"] = "b"  # an identity block, droppable above the threshold
        plan = StepPlan.of(PlannedRequest.of(around), PlannedRequest.of(through))
        x = torch.randn(8, 3, 16, 16)
        cluster.infer(x[:2], plan)  # warm: every worker has loaded its units
        before = ray.get(cluster.actors["b"].stats.remote())["macs"]
        os.kill(pid_b, signal.SIGSTOP)
        order, replans = [], []
        outcomes = cluster.infer(x, plan, replan=lambda dead: replans.append(dead), on_done=lambda o: order.append(o.index))
        needs_b = [i for i in range(len(x)) if i % 2 == 1]
        assert sorted(order) == list(range(len(x)))  # every request ended, once
        assert set(order[: len(x) - len(needs_b)]) == set(range(0, len(x), 2))  # those not needing b ended first
        assert all(outcomes[i].logits is not None and not outcomes[i].shortcut and outcomes[i].attempts == 1
                   for i in range(0, len(x), 2))
        assert all(outcomes[i].shortcut and outcomes[i].drops == DropPlan.dc(["stage3.block2"]) and outcomes[i].error is None
                   for i in needs_b)
        assert replans == [] and cluster.suspected == {"b"} and not cluster.alive["b"]
        assert all(outcomes[i].latency_s >= 3.0 for i in needs_b)  # their latency counts the attempt that timed out
        with torch.no_grad():
            expected = torch.cat([model(x[i : i + 1], DropPlan.dc(["stage3.block2"])) for i in needs_b])
        assert torch.allclose(torch.cat([outcomes[i].logits for i in needs_b]), expected, rtol=1e-4, atol=1e-4)
        assert cluster.heartbeat(timeout_s=0.5)["b"] == "suspected"  # still silent
        print(f"hung worker: sent {len(x)}, answered {sum(o.logits is not None for o in outcomes)}, "
              f"through the shortcut {sum(o.shortcut for o in outcomes)}, re-planned {len(replans)}, "
              f"failed {sum(o.error is not None for o in outcomes)}, lost {len(x) - len(order)}")
    finally:
        os.kill(pid_b, signal.SIGCONT)
    try:
        states = {}
        for _ in range(100):  # until its outstanding ping is answered (the machine may be slow)
            states = cluster.heartbeat(timeout_s=0.5)
            if states["b"] == "alive":
                break
            time.sleep(0.1)
        assert states["b"] == "alive" and cluster.alive["b"] and not cluster.suspected
        late = ray.get(cluster.actors["b"].stats.remote())["macs"]
        assert late == before  # the calls that waited in its queue were refused, not run late
        again = cluster.infer(x[:2], plan)
        assert all(o.logits is not None and not o.shortcut for o in again)  # it serves again
    finally:
        cluster.shutdown()


def test_every_worker_dead_fails_each_request_with_a_reason(setup):
    import ray

    root, _, problem = setup
    from adaptive_resnet.runtime.controller import Controller

    controller = Controller(problem, str(root / "ckpt.pt"), "fast", emulate_links=False)
    try:
        for actor in controller.cluster.actors.values():
            ray.kill(actor)
        for _ in range(100):  # until Ray knows they are gone (ray.kill is asynchronous)
            if all(s == "dead" for s in controller.cluster.heartbeat(timeout_s=1.0).values()):
                break
            time.sleep(0.1)
        ended = []
        outcomes, plan = controller.serve_step(torch.randn(3, 3, 16, 16), on_done=ended.append)
        assert plan.error == "no device alive" and not plan.feasible and len(ended) == 3
        assert all(o.logits is None and o.error == "no device alive" for o in outcomes)
    finally:
        controller.shutdown()


def test_the_runtimes_energy_is_the_planners_for_the_plan_it_ran(setup):
    """One cost model: under emulation, the energy the controller charges each device after a
    step equals Problem.evaluate's for the step's plan (the sender pays transmit energy), and
    each request takes at least the latency the planner predicts for it."""
    from adaptive_resnet.runtime.controller import Controller

    root, _, problem = setup
    quick = problem.derive(parse_scenario(SCENARIO.replace("{default: 0.05}", "{default: 5}")))
    controller = Controller(quick, str(root / "ckpt.pt"), "fast", emulate_links=True)
    try:
        outcomes, plan = controller.serve_step(torch.randn(4, 3, 16, 16))
        assert all(o.logits is not None for o in outcomes)
        step = controller.problem
        evaluation = step.evaluate(plan.solution.requests)  # the very plan objects the runtime ran
        charged = dict(zip(step.devices, controller._spent.tolist()))
        assert any(v > 0 for v in evaluation.energy_j.values())
        for name in step.devices:
            assert charged[name] == pytest.approx(evaluation.energy_j[name], rel=1e-6, abs=1e-12), name
        for o, predicted in zip(outcomes, evaluation.latencies_s, strict=True):
            assert o.predicted_latency_s == pytest.approx(predicted)
            assert o.latency_s >= predicted * 0.999  # emulation waits out at least the modelled times
    finally:
        controller.shutdown()


def test_a_worker_hung_mid_step_costs_the_service_one_step_over_http(setup):
    """SIGSTOP the worker a step's plan relies on, after the step has placed its units and before
    its requests go out (so that the hang is met mid-step, not by the heartbeat): that step's
    requests miss their deadline, are re-planned on the other workers and answered (200, two
    attempts); the next step does not wait for the hung worker (planned without it, one attempt,
    /status says suspected); after SIGCONT it rejoins. Every request has exactly one outcome."""
    import json
    import os
    import signal
    import urllib.error
    import urllib.request

    import ray
    from PIL import Image

    from adaptive_resnet.runtime.controller import Controller
    from adaptive_resnet.runtime.server import Server, serve_in_thread

    root, _, problem = setup
    controller = Controller(problem, str(root / "ckpt.pt"), "fast", emulate_links=False, deadline_s=3.0)
    server = Server(controller, step_s=0.3)
    url, stop = serve_in_thread(server)
    buf = io.BytesIO()
    Image.fromarray(np.random.default_rng(0).integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(buf, format="PNG")
    image = buf.getvalue()
    sent, answers = 0, []

    def post() -> tuple[int, dict]:
        try:
            with urllib.request.urlopen(urllib.request.Request(url + "/classify", data=image, method="POST"), timeout=300) as r:
                return r.status, json.loads(r.read())
        except urllib.error.HTTPError as err:
            return err.code, json.loads(err.read())

    def step(n: int = 4) -> list[tuple[int, dict]]:
        nonlocal sent
        got: list = [None] * n

        def one(k: int) -> None:
            got[k] = post()

        threads = [threading.Thread(target=one, args=(k,)) for k in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        sent += n
        answers.extend(got)
        return got

    def status() -> dict:
        with urllib.request.urlopen(url + "/status", timeout=30) as r:
            return json.loads(r.read())

    hung: dict[str, int] = {}
    preload = controller.cluster.preload

    def preload_then_hang(plan):
        preload(plan)
        if hung.get("armed"):
            hung["armed"] = 0
            hosts = plan.hosts()
            victim = max(hosts, key=lambda d: ("head" in hosts[d], d))  # one every request passes through
            hung["pid"] = ray.get(controller.cluster.actors[victim].pid.remote(), timeout=30)
            hung["name"] = victim
            os.kill(hung["pid"], signal.SIGSTOP)

    controller.cluster.preload = preload_then_hang
    try:
        assert all(s == 200 and d["attempts"] == 1 for s, d in step())  # warm: every worker has its units
        hung["armed"] = 1
        during = step()
        assert "pid" in hung, "the step did not run"
        victim = hung["name"]
        assert all(s == 200 for s, _ in during), during  # recovered, not failed
        assert any(d["attempts"] == 2 or d["shortcut"] for _, d in during)  # they needed the hung worker
        assert status()["devices"][victim] == "suspected"
        after = step()
        assert all(s == 200 and d["attempts"] == 1 and not d["shortcut"] for s, d in after), after
        assert victim not in controller.current_plan.hosts()  # planned without it: nothing waits on it
    finally:
        if "pid" in hung:
            os.kill(hung["pid"], signal.SIGCONT)
    try:
        for _ in range(20):  # a heartbeat each step hears from it again
            step(1)
            if status()["devices"][victim] == "alive":
                break
            time.sleep(0.2)
        final = status()
        assert final["devices"][victim] == "alive"
        answered = sum(s == 200 for s, _ in answers)
        failed = [d.get("error") for s, d in answers if s != 200]
        print(f"hung worker over HTTP: sent {sent}, answered {answered}, failed {len(failed)} {failed}, "
              f"lost {sent - len(answers)}; server counts answered {final['answered']}, failed {final['failed']}")
        assert len(answers) == sent and final["answered"] + final["failed"] == sent and not failed
    finally:
        stop()
        server.close()
        controller.shutdown()


def test_requests_beyond_what_the_plan_admits_fail_at_once_with_the_binding_resource(setup):
    """A step's plan that admits fewer requests than came (the planner's admission): the
    admitted ones run, the others end at once with the reason, none runs, none is lost."""
    root, _, problem = setup
    cluster = RayCluster(problem, str(root / "ckpt.pt"), emulate_links=False)
    try:
        route = manual_plan(problem).requests[0]
        plan = StepPlan((route, route), True, 0.5, None, None, "compute[b]: 9.3 GMAC > 5.0 GMAC")
        ended = []
        outcomes = cluster.infer(torch.randn(5, 3, 16, 16), plan, on_done=ended.append)
        assert sorted(o.index for o in ended) == list(range(5))
        assert [o.logits is not None for o in outcomes] == [True, True, False, False, False]
        assert all(o.error == "not admitted: compute[b]: 9.3 GMAC > 5.0 GMAC" for o in outcomes[2:])
        assert sum(s["macs"] for s in cluster.stats().values()) > 0
    finally:
        cluster.shutdown()


def test_an_experiment_on_ray_tasks_equals_one_in_processes(setup, tmp_path):
    """Seeds as Ray tasks (the runs computed in Ray's workers, written by the driver) give the
    points.csv of the process pool, and a re-run there resumes with nothing left to run."""
    import csv

    import adaptive_resnet.simulation.experiments as experiments
    from adaptive_resnet.planning import load_problem

    def points(path):
        with open(path) as fh:
            return [{k: v for k, v in row.items() if k != "solve_time_s_mean"} for row in csv.DictReader(fh)]

    scenario = load_problem("scenarios/small.yaml")
    args = dict(rounds=2, solvers=["fast"], values=[50.0, 400.0], progress=False, seeds=2)
    experiments.run_experiment("fig7", scenario, tmp_path / "procs", jobs=1, **args)
    experiments.run_experiment("fig7", scenario, tmp_path / "ray", on_ray=True, jobs=2, **args)
    assert points(tmp_path / "ray" / "points.csv") == points(tmp_path / "procs" / "points.csv")
    assert sorted(p.name for p in (tmp_path / "ray" / "runs").iterdir()) == sorted(p.name for p in (tmp_path / "procs" / "runs").iterdir())
    import adaptive_resnet.simulation.simulator as simulator

    def no_task_expected(*a, **k):
        raise AssertionError("a finished run was sent to Ray again")

    real = simulator.save_run  # every task's result is saved: none may run on a re-run
    try:
        simulator.save_run = no_task_expected
        again = experiments.run_experiment("fig7", scenario, tmp_path / "ray", on_ray=True, jobs=2, **args)
    finally:
        simulator.save_run = real
    assert len(again) == 2
