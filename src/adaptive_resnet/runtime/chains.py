"""Request chains: a request sent worker to worker along its route, waited for until its deadline.

A request is a chain of calls, one per contiguous run of units on a device; each call gets the
previous call's ObjectRef, so activations go from worker to worker, not through the driver.
:class:`ChainRun` is one batch of requests (one call of ``RayCluster.infer``): it submits them
all, then waits for them together; each ends exactly once, answered or failed with a reason.
A request that fails (a dead worker, a missed deadline) is recovered by :mod:`.recovery`.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models.naming import DropPlan
from adaptive_resnet.planning.step_plan import PlannedRequest, StepPlan
from adaptive_resnet.runtime.worker import from_wire, to_wire

# Deadlines. An attempt of a request may take DEADLINE_FACTOR times its predicted latency times
# the requests sent with it (they may queue on a worker: the cost model runs a step's requests
# side by side, a real worker one call at a time) plus DEADLINE_SLACK_S, all stretched by the
# time dilation, before the worker it waits on is suspected; without a prediction,
# UNPREDICTED_DEADLINE_S.
DEADLINE_FACTOR = 4.0
DEADLINE_SLACK_S = 10.0  # room for a first call's weight loading and a loaded host (2 s proved too tight here)
UNPREDICTED_DEADLINE_S = 120.0


@dataclass
class Outcome:
    """What happened to one request."""

    index: int
    logits: object | None = None  # torch.Tensor (1, classes) when answered
    error: str | None = None
    latency_s: float = 0.0  # emulated seconds: wall time divided by the cluster's time dilation
    predicted_latency_s: float = 0.0
    attempts: int = 1
    drops: DropPlan = field(default_factory=DropPlan)
    shortcut: bool = False  # completed by dropping the blocks of a dead worker, without a re-plan


@dataclass(frozen=True)
class Call:
    """One call of a chain: ``device`` runs ``units``; ``ref`` is its output."""

    device: str
    units: list[str]
    ref: object


def request_input(images, i: int):
    """Image ``i`` of a batch as a (1, C, H, W) array with memory of its own, as it travels.

    A slice ``images[i:i+1]`` shares the batch's memory, and pickling a tensor writes its whole
    storage: every request would carry the entire batch (measured: 9.6 MB instead of 0.6 MB
    per ResNet-50@224 request of a batch of 16, +40 ms latency).
    """
    return to_wire(images[i : i + 1].clone())


def request_deadline_s(cluster, predicted_latency_s: float, batch: int = 1) -> float:
    """Wall seconds one attempt of a request, sent with ``batch`` requests in all, may take
    before its worker is suspected: the cluster's ``deadline_s`` when set, else
    DEADLINE_FACTOR x the plan's prediction x ``batch`` + DEADLINE_SLACK_S, stretched by the time
    dilation (UNPREDICTED_DEADLINE_S where the plan predicts nothing)."""
    if cluster.deadline_s is not None:
        return cluster.deadline_s
    if not predicted_latency_s > 0:
        return UNPREDICTED_DEADLINE_S * cluster.time_dilation
    return (DEADLINE_FACTOR * predicted_latency_s * max(batch, 1) + DEADLINE_SLACK_S) * cluster.time_dilation


def inbound_rate_mbps(cluster, previous: str | None, device: str) -> float | None:
    """The rate a worker emulates for its input from ``previous`` (None: no transfer to wait out)."""
    if not cluster.emulate_links or previous is None or previous == device:
        return None
    names = cluster.problem.devices
    return float(cluster.problem.rate_bps[names.index(previous), names.index(device)] / 1e6)


def submit(cluster, x, segments: list[tuple[str, list[str]]], drops: DropPlan, previous: str | None = None,
           deadline_unix: float | None = None) -> list[Call]:
    """Chain one request through the workers of ``segments``; ``x`` may be an ObjectRef already
    (the output of an earlier segment on ``previous``). A call that would start after
    ``deadline_unix`` is refused by its worker."""
    ref, chain = x, []
    for device, units in segments:
        if not cluster.health.alive(device):
            raise UserInputError(f"the plan uses device {device!r}, which has no live worker")
        ref = cluster.actors[device].run.remote(ref, units, drops, inbound_rate_mbps(cluster, previous, device), deadline_unix, previous)
        chain.append(Call(device, units, ref))
        previous = device
    return chain


def answer(cluster, outcome: Outcome, logits, started: float) -> None:
    """Note a request's answer (the last worker's wire array) and its latency in emulated
    seconds, from ``started``: its first attempt's start, so that every attempt counts."""
    outcome.logits = from_wire(logits).clone()  # its own, writable memory, not the object store's
    outcome.latency_s = (time.perf_counter() - started) / cluster.time_dilation
    outcome.error = None


class ChainRun:
    """One batch of requests through the cluster (see ``RayCluster.infer``)."""

    def __init__(self, cluster, images, plan: StepPlan, replan=None, max_attempts: int = 3, on_done=None) -> None:
        self.cluster, self.images, self.plan = cluster, images, plan
        self.replan, self.max_attempts, self.on_done = replan, max_attempts, on_done
        self.outcomes = [Outcome(i) for i in range(len(images))]
        self.finished: set[int] = set()
        self.first_start: dict[int, float] = {}
        self.missed: set[int] = set()  # requests whose last attempt missed its deadline

    def finish(self, i: int, error: str | None = None) -> None:
        if i in self.finished:
            return
        if error is not None and self.outcomes[i].logits is None:
            self.outcomes[i].error = error
        self.finished.add(i)
        if self.on_done is not None:
            self.on_done(self.outcomes[i])

    def route(self, i: int, plan: StepPlan) -> PlannedRequest | None:
        """Request ``i``'s route in ``plan`` (None: not admitted); its prediction and drops noted
        on its outcome."""
        req = plan.request(i)
        if req is None:
            return None
        self.outcomes[i].predicted_latency_s = req.latency_s
        self.outcomes[i].drops = req.drops
        return req

    def deadline_unix(self, i: int, batch: int) -> float:
        """The wall-clock instant (epoch seconds, as workers compare it) an attempt starting now
        must be answered by; :meth:`gather` waits until about the same instant."""
        return time.time() + request_deadline_s(self.cluster, self.outcomes[i].predicted_latency_s, batch)

    def run(self) -> list[Outcome]:
        from adaptive_resnet.runtime import recovery

        cluster, plan, outcomes = self.cluster, self.plan, self.outcomes
        if not plan.requests:
            for i in range(len(outcomes)):
                self.finish(i, plan.error or "no feasible plan for this step")
            return outcomes
        pending = list(range(len(outcomes)))
        if plan.request(len(outcomes) - 1) is None:  # admission served fewer than came: the rest fail at once
            for i in range(len(plan.requests), len(outcomes)):
                self.finish(i, f"not admitted: {plan.unserved_reason}")
            pending = pending[: len(plan.requests)]
        if cluster.compiled.enabled:
            for i in pending:
                self.route(i, plan)
            pending = cluster.compiled.infer(self.images, plan, outcomes, pending)
            for i in range(len(outcomes)):
                if i not in pending:
                    self.finish(i)
        attempt = 0
        while pending and attempt < self.max_attempts:
            attempt += 1
            chains: dict[int, list[Call]] = {}
            for i in pending:
                req = self.route(i, plan)
                if req is None:  # a re-plan admitted fewer
                    outcomes[i].error = f"not admitted: {plan.unserved_reason}"
                    continue
                outcomes[i].attempts = attempt
                try:
                    chains[i] = submit(cluster, request_input(self.images, i), req.segments(), req.drops,
                                       deadline_unix=self.deadline_unix(i, len(pending)))
                    self.first_start.setdefault(i, time.perf_counter())
                except UserInputError as exc:
                    outcomes[i].error = str(exc)
            failed = [i for i in pending if i not in chains] + self.gather(chains)
            if not failed:
                break
            unusable = recovery.unusable(cluster, chains, failed, self.missed)
            if unusable:  # first the shortcut, which needs no new plan
                shortcut = {}
                for i in failed:
                    if i not in chains:
                        continue
                    done = recovery.shortcut(cluster, request_input(self.images, i), chains[i], outcomes[i].drops,
                                             self.deadline_unix(i, len(failed)))
                    if done is not None:
                        chains[i], outcomes[i].drops = done
                        outcomes[i].shortcut = True
                        shortcut[i] = chains[i]
                failed = [i for i in failed if i not in shortcut] + self.gather(shortcut)
                for i in failed:
                    outcomes[i].shortcut = False
            if not failed or self.replan is None or not unusable or attempt >= self.max_attempts:
                break
            try:
                plan = self.replan(cluster.health.unusable())
            except Exception as exc:  # noqa: BLE001  a failed re-plan fails these requests, not the answered ones
                plan = StepPlan.failed(f"re-plan failed: {type(exc).__name__}: {exc}")
            if not plan.feasible or not plan.requests:
                for i in failed:
                    outcomes[i].error = plan.error or "no feasible plan on the devices still answering"
                break
            pending = failed
        for i in range(len(outcomes)):
            self.finish(i, outcomes[i].error or "not completed")
        return outcomes

    def gather(self, chains: dict[int, list[Call]]) -> list[int]:
        """Wait for the last call of each chain until its deadline; answered requests are
        finished at once; returns the requests that failed or missed their deadline (whose
        calls are cancelled, so that none of them runs later)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        outcomes = self.outcomes
        waiting = {chain[-1].ref: i for i, chain in chains.items()}
        budget = {i: request_deadline_s(self.cluster, outcomes[i].predicted_latency_s, len(chains)) for i in chains}
        deadline = {i: time.perf_counter() + budget[i] for i in chains}
        failed = []
        for i in chains:
            self.missed.discard(i)
        while waiting:
            wait_s = max(min(deadline[i] for i in waiting.values()) - time.perf_counter(), 0.0)
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=wait_s)
            if not ready:
                now = time.perf_counter()
                for ref, i in [(r, i) for r, i in waiting.items() if deadline[i] <= now]:
                    del waiting[ref]
                    failed.append(i)
                    self.missed.add(i)
                    outcomes[i].error = f"deadline: no answer within {budget[i]:.2f} s"
                    for call in chains[i]:
                        with contextlib.suppress(Exception):  # finished or gone already
                            ray.cancel(call.ref)
                continue
            i = waiting.pop(ready[0])
            try:
                answer(self.cluster, outcomes[i], ray.get(ready[0]), self.first_start[i])
                self.finish(i)
            except (RayActorError, RayTaskError) as exc:
                failed.append(i)
                outcomes[i].error = f"worker failed: {type(exc).__name__}"
        return failed
