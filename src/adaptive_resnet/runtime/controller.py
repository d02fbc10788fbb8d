"""The online loop: each time step, re-plan from what the workers report, and run the requests.

Each step the controller draws (or is given) the links' rates, charges every device the energy
its worker reports having spent (compute time x P_c, emulated send time x P_t), re-plans with
the planner through the one cost model, and runs the step's requests through the cluster with
the new placement and drops; workers load the weights of newly placed units on demand, so the
cluster is never restarted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.planning.step_plan import StepPlan
from adaptive_resnet.runtime.cluster import Outcome, RayCluster
from adaptive_resnet.runtime.recovery import HEARTBEAT_S, plan_for

# Measured latency within this of the predicted, an emulated step is faithful (docs/runtime.md promises 15%).
CALIBRATION_TOLERANCE = 0.10
MAX_DILATION = 32.0  # a step's emulated time runs up to this many times slower on the host


@dataclass
class RunReport:
    sent: int = 0
    answered: int = 0
    failed: int = 0
    retried: int = 0
    shortcut: int = 0  # completed through a dead worker's shortcut, without a re-plan
    correct: int = 0
    latencies_s: list[float] = field(default_factory=list)
    predicted_s: list[float] = field(default_factory=list)
    energy_j: dict[str, float] = field(default_factory=dict)
    speeds_gmacs: dict[str, float] = field(default_factory=dict)  # what the planner used last
    replans: int = 0


def check_checkpoint_matches(scenario, checkpoint: str) -> None:
    """A one-line error when the checkpoint is unreadable, is not the scenario's model, or holds
    weights that do not fit its own configuration: checked before any worker starts (a worker
    would otherwise fail on its first unit). The file is mapped, not read: only the
    configuration and the tensors' shapes are looked at."""
    from adaptive_resnet.models.resnet import check_state_fits
    from adaptive_resnet.train import build_skeleton, checkpoint_config, load_checkpoint

    ckpt = load_checkpoint(checkpoint, mmap=True)
    config = checkpoint_config(ckpt, checkpoint)
    m = scenario.model
    theirs = (config.arch, config.stem, config.base_channels, config.num_classes)
    ours = (m.arch, m.stem, m.base_channels, m.num_classes)
    if theirs != ours:
        raise UserInputError(f"checkpoint {checkpoint} is {theirs} (arch, stem, width, classes) but the scenario's model is {ours}")
    check_state_fits(build_skeleton(config), ckpt["model"], checkpoint)


class Controller:
    def __init__(self, problem, checkpoint: str, solver: str = "fast", emulate_links: bool | None = None, address: str | None = None, seed: int = 0,
                 measure_speeds: bool | None = None, probe_rates: bool | None = None, compiled_graphs: bool = False,
                 time_dilation: float = 1.0, rate_trace: dict[int, np.ndarray] | None = None, deadline_s: float | None = None):
        scenario = problem.scenario  # ``problem``: the scenario as load_problem reads it
        check_checkpoint_matches(scenario, checkpoint)
        self.scenario, self.solver = scenario, solver
        self.base = problem
        self.rng = np.random.default_rng(seed)
        self.battery = np.array([d.energy_j for d in scenario.devices], float)
        self.problem = problem
        self.cluster = RayCluster(self.problem, checkpoint, address=address, emulate_links=emulate_links, compiled=compiled_graphs,
                                  time_dilation=time_dilation, deadline_s=deadline_s)
        emulate_links = self.cluster.emulate_links  # None: decided by the cluster (one node or several)
        if rate_trace is not None and not emulate_links:
            self.cluster.shutdown()
            raise UserInputError("a rate trace sets emulated links, and links are not emulated here (--no-emulate-links, or "
                                 "workers on several nodes: a real network, whose rates are probed)")
        self._spent = np.zeros(len(scenario.devices))
        self.replans = 0
        # Measured compute speeds replace the configured ones on a real cluster; under link
        # emulation the host's speed is not the emulated device's, so the default follows it.
        self.measure_speeds = (not emulate_links) if measure_speeds is None else measure_speeds
        self.speeds_gmacs = np.array([d.speed_gmacs for d in scenario.devices], float)
        # Link rates: probed between workers on different nodes each step on a real network;
        # under emulation they are the scenario's (drawn per step, or its trace).
        self.probe_rates = (not emulate_links) if probe_rates is None else probe_rates
        self.measured_rates: dict[tuple[str, str], float] = {}
        # A rate trace (the simulator's ``read_trace``: step 1, 2, ... -> Mb/s) sets the emulated links
        # step by step, from its first step again after its last; a real network is probed.
        self.rate_trace = rate_trace
        self.steps = 0  # time steps served so far
        self.current_plan: StepPlan | None = None
        self._seen = {name: (0.0, 0.0) for name in scenario.device_names}  # (busy_s, macs) so far
        # Workers' counts (DeviceWorker.stats): the last read of each (a worker that died keeps
        # what it had counted), and the part of them that calibration runs made (not charged).
        self._last_stats: dict[str, dict] = {}
        self._set_aside: dict[str, dict] = {name: _zero_stats() for name in scenario.device_names}
        self._steps_measured = np.zeros(len(scenario.devices), int)

    def plan(self, requests: int, rates_mbps: np.ndarray | None = None) -> StepPlan:
        """Re-plan for this step with the given (or freshly drawn) rates and what is left of batteries."""
        from adaptive_resnet.planning import admit

        if rates_mbps is None and self.probe_rates:
            self.measured_rates = self.cluster.probe_rates()
            if self.measured_rates:
                rates_mbps = self.problem.rate_bps / 1e6
                names = self.problem.devices
                for (src, dst), mbps in self.measured_rates.items():
                    rates_mbps[names.index(src), names.index(dst)] = mbps
        if rates_mbps is None and self.rate_trace is not None:
            rates_mbps = self.rate_trace[self.steps % len(self.rate_trace) + 1]
        if rates_mbps is None and self.scenario.rates_mbps.range is not None:
            rates_mbps = self.scenario.rate_matrix(self.rng)  # a fresh draw from the scenario's range each step
        alive = np.array([self.cluster.health.alive(d) for d in self.problem.devices])
        self.problem = self.base.derive(rates_mbps=rates_mbps, requests=requests, energy_j=np.maximum(self.battery - self._spent, 0.0),
                                        available=alive, speeds_gmacs=self.speeds_gmacs if self.measure_speeds else None)
        self.cluster.problem = self.problem  # the emulated links follow the step's rates
        return StepPlan.from_solution(admit(self.problem, self.solver), self.problem)

    def serve_step(self, images, on_done=None) -> tuple[list[Outcome], StepPlan]:
        """One time step without labels: a heartbeat (suspected workers that answer rejoin,
        silent ones are left out), re-plan, run ``images`` through the cluster, account energy.
        ``on_done(outcome)`` is called as each request ends (:meth:`RayCluster.infer`)."""
        health = self.cluster.health
        health.heartbeat(HEARTBEAT_S)
        plan = self.plan(len(images)) if health.any_alive() else StepPlan.failed("no device alive")
        self.steps += 1
        self.replans += 1
        self.current_plan = plan  # what this step runs, for status pages, before its requests end
        if plan.feasible:
            self.cluster.preload(plan)

        def replan(unusable: list[str]) -> StepPlan:
            self.replans += 1
            if not health.any_alive():
                return StepPlan.failed("no device alive")
            return plan_for(self.problem, self.solver, unusable)

        outcomes = self.cluster.infer(images, plan, replan=replan, on_done=on_done)
        self._account()
        return outcomes, plan

    def step(self, images, labels, report: RunReport) -> list[Outcome]:
        before = self.replans
        outcomes, _ = self.serve_step(images)
        report.replans += self.replans - before
        for o in outcomes:
            report.sent += 1
            report.retried += o.attempts > 1
            report.shortcut += o.shortcut
            if o.logits is None:
                report.failed += 1
                continue
            report.answered += 1
            report.correct += int(int(o.logits.argmax(1)[0]) == int(labels[o.index]))
            report.latencies_s.append(o.latency_s)
            report.predicted_s.append(o.predicted_latency_s)
        report.energy_j = dict(zip(self.problem.devices, self._spent.tolist()))
        report.speeds_gmacs = dict(zip(self.problem.devices, (self.problem.speed_macs / 1e9).tolist()))
        return outcomes

    def calibrate(self, images, tolerance: float = CALIBRATION_TOLERANCE, max_dilation: float = MAX_DILATION) -> list[tuple[float, float]]:
        """Choose the time dilation for this host: run ``images`` as one step (after a warm-up
        run of the same step), compare measured with predicted latency, and double the dilation
        until they agree within ``tolerance`` or it reaches ``max_dilation``.

        A host too small to emulate a step's requests side by side (the cost model serves them
        at once; two cores run them in turn) measures more than the plan predicts, however good
        the plan; a dilated run shrinks the host's own costs against the emulated ones. Returns
        the trials as (dilation, measured / predicted); the cluster keeps the last dilation.
        Calibration requests are not reported, draw no rates from the run's generator, and
        charge no energy: what the workers count meanwhile is set aside.
        """
        trials: list[tuple[float, float]] = []
        if not self.cluster.emulate_links:
            return trials  # a real network is not emulated: nothing to dilate
        rng_state = self.rng.bit_generator.state
        plan = self.plan(len(images))
        self.rng.bit_generator.state = rng_state
        if not plan.feasible:
            return trials
        before = self.cluster.stats()
        self.cluster.preload(plan)
        self.cluster.infer(images, plan)  # warm-up: first calls of a placement run cold
        dilation = self.cluster.time_dilation
        while True:
            self.cluster.set_time_dilation(dilation)
            answered = [o for o in self.cluster.infer(images, plan) if o.logits is not None]
            predicted = sum(o.predicted_latency_s for o in answered)
            if not answered or predicted <= 0:
                break  # nothing to compare
            trials.append((dilation, sum(o.latency_s for o in answered) / predicted))
            if trials[-1][1] <= 1 + tolerance or dilation >= max_dilation:
                break
            dilation = min(2 * dilation, max_dilation)
        for name, s in self.cluster.stats().items():
            was, aside = before.get(name, _zero_stats()), self._set_aside[name]
            aside["busy_s"] += s["busy_s"] - was["busy_s"]
            aside["macs"] += s["macs"] - was["macs"]
            for sender, seconds in s["received_s"].items():
                aside["received_s"][sender] = aside["received_s"].get(sender, 0.0) + seconds - was["received_s"].get(sender, 0.0)
        return trials

    def _account(self) -> None:
        """Energy spent per device, through the planner's Eq. 19 (``device_energy_j``): its
        compute time x P_c, plus x P_t the time its receivers spent taking what it *sent* (the
        sender pays, as the planner charges it); and (when measuring) each device's speed over
        the last step."""
        from adaptive_resnet.planning.problem import device_energy_j

        p = self.problem
        self._last_stats.update(self.cluster.stats())
        charged = {name: self._charged(name) for name in p.devices}
        for i, name in enumerate(p.devices):
            sent_s = sum(charged[receiver]["received_s"].get(name, 0.0) for receiver in p.devices)
            self._spent[i] = device_energy_j(charged[name]["busy_s"], sent_s, p.compute_w, p.transmit_w)
            total_busy, total_macs = charged[name]["busy_s"], charged[name]["macs"]
            busy, macs = total_busy - self._seen[name][0], total_macs - self._seen[name][1]
            self._seen[name] = (total_busy, total_macs)
            if self.measure_speeds and busy > 1e-4 and macs > 0:
                # An average over steps damps one slow step (a cold cache, a busy host).
                measured = macs / busy / 1e9
                self.speeds_gmacs[i] = measured if self._steps_measured[i] == 0 else 0.5 * (self.speeds_gmacs[i] + measured)
                self._steps_measured[i] += 1

    def _charged(self, name: str) -> dict:
        """A worker's counts so far less those of calibration runs."""
        s, aside = self._last_stats.get(name, _zero_stats()), self._set_aside[name]
        return {"busy_s": s["busy_s"] - aside["busy_s"], "macs": s["macs"] - aside["macs"],
                "received_s": {k: v - aside["received_s"].get(k, 0.0) for k, v in s["received_s"].items()}}

    def shutdown(self) -> None:
        self.cluster.shutdown()


def _zero_stats() -> dict:
    return {"busy_s": 0.0, "macs": 0.0, "received_s": {}}
