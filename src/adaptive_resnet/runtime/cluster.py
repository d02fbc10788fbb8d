"""The driver side: Ray actors per device, requests chained through them, failures survived.

:class:`RayCluster` starts one :class:`~adaptive_resnet.runtime.worker.DeviceWorker` actor per
device of a scenario. On a real cluster an actor is pinned to its device's node through a
custom resource named ``device:<name>`` (start each node with ``--resources
'{"device:<name>": 1}'``); on one machine, where no such resource exists, all run locally.

A request is a chain of calls, one per contiguous run of units on a device; each call gets the
previous call's ObjectRef, so activations go from worker to worker, not through the driver.
:meth:`RayCluster.infer` submits a whole batch of requests, then waits for them together.

When a worker dies, a request in flight whose missing units are all identity blocks is completed
through their shortcuts: the activation that reached the dead worker's predecessor goes on to
the next live worker with those blocks' DC dropped, if that drop set still meets the accuracy
threshold (the paper's resilience argument, Section III). Other requests are re-planned on the
surviving devices and sent again; a request that cannot be completed gets an explicit error.
Every request ends answered once or failed once.
"""

from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field

import numpy as np

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.runtime.worker import from_wire, to_wire


@dataclass
class Outcome:
    """What happened to one request."""

    index: int
    logits: object | None = None  # torch.Tensor (1, classes) when answered
    error: str | None = None
    latency_s: float = 0.0  # emulated seconds: wall time divided by the cluster's time dilation
    predicted_latency_s: float = 0.0
    attempts: int = 1
    drops: list[str] = field(default_factory=list)
    shortcut: bool = False  # completed by dropping the blocks of a dead worker, without a re-plan


# A worker allocates every activation of every request afresh. glibc hands freed blocks over
# 128 KB back to the OS and page-faults them in again on the next request (measured: 8-13 ms
# on a two-worker ResNet-50@224 request); these keep up to 32 MB blocks and 256 MB of free heap in the process.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
                     "MALLOC_TOP_PAD_": str(64 << 20)}


EMULATED_CONCURRENCY = 16  # calls an emulating worker serves at once (two time steps of the paper's lambda = 3, with room)

# Deadlines. An attempt of a request may take DEADLINE_FACTOR times its predicted latency times
# the requests sent with it (they may queue on a worker: the cost model runs a step's requests
# side by side, a real worker one call at a time) plus DEADLINE_SLACK_S, all stretched by the
# time dilation, before the worker it waits on is suspected; without a prediction,
# UNPREDICTED_DEADLINE_S. A worker that does not answer a ping within HEARTBEAT_S is suspected
# too, and rejoins when it answers again. CONTROL_TIMEOUT_S bounds every other wait on a worker
# (placement, stats, probes).
DEADLINE_FACTOR = 4.0
DEADLINE_SLACK_S = 10.0  # room for a first call's weight loading and a loaded host (2 s proved too tight here)
UNPREDICTED_DEADLINE_S = 120.0
HEARTBEAT_S = 2.0
CONTROL_TIMEOUT_S = 30.0


def segments(placement: dict[str, str | None]) -> list[tuple[str, list[str]]]:
    """Contiguous runs of running units per device, in order: [(device, [unit, ...]), ...]."""
    out: list[tuple[str, list[str]]] = []
    for unit, device in placement.items():
        if device is None:
            continue  # a dropped block: nothing runs, its input passes on
        if out and out[-1][0] == device:
            out[-1][1].append(unit)
        else:
            out.append((device, [unit]))
    return out


def assign(outcome: Outcome, requests: list[dict]) -> dict:
    """The plan's request for ``outcome`` (round-robin over the plan's requests), its predicted
    latency and drops noted on the outcome."""
    req = requests[outcome.index % len(requests)]
    outcome.predicted_latency_s = float(req.get("latency_s", 0.0))
    outcome.drops = list(req.get("drops", []))
    return req


def request_input(images, i: int):
    """Image ``i`` of a batch as a (1, C, H, W) array with memory of its own, as it travels.

    A slice ``images[i:i+1]`` shares the batch's memory, and pickling a tensor writes its whole
    storage: every request would carry the entire batch (measured: 9.6 MB instead of 0.6 MB
    per ResNet-50@224 request of a batch of 16, +40 ms latency).
    """
    return to_wire(images[i : i + 1].clone())


class RayCluster:
    """Workers for the devices of ``problem``, the planner's problem for the current step.

    Under emulation (``emulate_links``, on by default on one machine) a worker stands for an IoT
    device: it sleeps out each inbound transfer (size / rate) and stretches its compute to the
    device's configured speed (MACs / speed, Eq. 9), so a request takes what the cost model
    predicts. The cost model serves the requests of a time step side by side (the step's
    compute limit, not a queue, bounds a device), so an emulating worker is a threaded actor
    taking ``EMULATED_CONCURRENCY`` calls at once. Without emulation Ray fetches the inputs before a call starts,
    so one call at a time suffices, and it is faster (measured: threaded actors added 12-17 ms
    to a two-worker ResNet-50@224 request here).

    A host emulates those side-by-side requests only while it has the compute to spare: on 2
    cores, 8 CIFAR requests of one step on one emulated 2 GMAC/s device (31 ms each by the cost
    model) ran serially in one worker and took 35-66 ms. ``time_dilation`` K runs every
    emulated duration K times slower and reports latencies (and workers their busy and
    transfer times) divided by K, so the host's own costs count K times less. They are real
    costs on a real cluster too: a dilated run checks the network's behaviour (transfers,
    compute, contention as modelled), an undilated one the whole stack.
    """

    def __init__(self, problem, checkpoint: str, address: str | None = None, emulate_links: bool | None = None, threads_per_worker: int = 1,
                 compiled: bool = False, time_dilation: float = 1.0, deadline_s: float | None = None) -> None:
        import ray

        from adaptive_resnet.runtime.worker import DeviceWorker

        self.problem = problem
        if time_dilation < 1.0:
            raise UserInputError(f"time dilation must be >= 1 (got {time_dilation})")
        if not ray.is_initialized():
            try:
                if address:
                    ray.init(address=address, log_to_driver=False)
                else:
                    ray.init(num_cpus=max(2, len(problem.devices)), include_dashboard=False, log_to_driver=False)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                raise UserInputError(f"cannot reach Ray at {address or 'a new local instance'}: {str(exc).splitlines()[0]}") from None
        # Emulation by default where the whole cluster is one machine (one Ray node standing for
        # the network), not where workers sit on several nodes with a real network between them.
        self.emulate_links = one_node() if emulate_links is None else emulate_links
        self._check_dilation(time_dilation)
        self.time_dilation = time_dilation
        resources = ray.cluster_resources()
        # Each worker counts the multiplications it runs from the profile's numbers (the one
        # cost model), so the controller can measure every device's speed.
        from adaptive_resnet.models.naming import Connection

        unit_macs = {u.name: {"full": u.macs, **{c.value: problem.profile.kept_cost(u.name, c)[0] for c in Connection}}
                     for u in problem.profile.units}
        pinned = [name for name in problem.devices if f"device:{name}" in resources]
        if pinned and len(pinned) < len(problem.devices):  # a real cluster missing a node: do not run it on another one unnoticed
            missing = [name for name in problem.devices if name not in pinned]
            raise UserInputError(f"no Ray node offers device {', '.join(repr(m) for m in missing)} (start its node with "
                                 f"ray start --resources '{{\"device:{missing[0]}\": 1}}'); {', '.join(pinned)} have theirs")
        self.actors = {}
        # Pings run in a concurrency group of their own, so that a worker busy with a long call
        # still answers its heartbeat; a hung one answers nothing.
        remote = ray.remote(concurrency_groups={"control": 1})(DeviceWorker)
        for name in problem.devices:
            # Out of order: a call waiting for its input (from a worker that hangs) must not hold
            # up the calls queued behind it whose inputs are there (head-of-line blocking).
            options = {"num_cpus": 0, "max_restarts": 0, "max_concurrency": EMULATED_CONCURRENCY if self.emulate_links else 1,
                       "allow_out_of_order_execution": True, "runtime_env": {"env_vars": dict(WORKER_MALLOC_ENV)}}
            if f"device:{name}" in resources:
                options["resources"] = {f"device:{name}": 1}
            speed = float(problem.speed_macs[problem.devices.index(name)]) if self.emulate_links else None
            self.actors[name] = remote.options(**options).remote(name, checkpoint, threads_per_worker, unit_macs, speed, time_dilation)
        try:
            ray.get([a.ping.remote() for a in self.actors.values()], timeout=max(CONTROL_TIMEOUT_S, 120.0))  # fail here, not mid-request
        except ray.exceptions.GetTimeoutError:
            self.shutdown()
            raise UserInputError("the workers did not start within 120 s (is the Ray cluster short of memory or CPUs?)") from None
        self.alive = {name: True for name in problem.devices}
        # Suspected workers: alive as actors but missing a deadline or a heartbeat. They take no
        # new work until they answer a heartbeat again (and rejoin); a worker whose actor died
        # is dead for good.
        self.suspected: set[str] = set()
        self.dead: set[str] = set()
        self._pings: dict[str, object] = {}  # a worker's outstanding heartbeat ping
        self._deadline_missed: set[int] = set()  # requests of the current infer that missed a deadline
        if deadline_s is not None and not deadline_s > 0:
            raise UserInputError(f"the request deadline must be positive, got {deadline_s}")
        self.deadline_s = deadline_s
        # Ray Compiled Graphs for the steady state: one request chain compiled once and then run
        # over shared-memory channels (~50 us a hop instead of ~1 ms a task). Off by default:
        # compiled actors busy-poll their channels, so on a machine with fewer cores than
        # workers they take compute from each other. An actor runs one compiled graph at a time,
        # so the cluster holds one, for the chain of the requests it serves now.
        self.compiled = compiled
        self._graph = None  # (key, CompiledDAG)

    def _check_dilation(self, time_dilation: float) -> None:
        if time_dilation < 1.0 or (time_dilation != 1.0 and not self.emulate_links):
            raise UserInputError(f"time dilation must be >= 1 and needs link emulation (got {time_dilation}, "
                                 f"emulation {'on' if self.emulate_links else 'off'})")

    def set_time_dilation(self, time_dilation: float) -> None:
        """Change the time dilation of every live worker, between requests."""
        import ray
        from ray.exceptions import RayActorError

        self._check_dilation(time_dilation)
        refs = [a.dilate.remote(time_dilation) for n, a in self.actors.items() if self.alive[n]]
        for ref in refs:
            # a worker that died or hangs: the requests (or the next heartbeat) find it and recover
            with contextlib.suppress(RayActorError, ray.exceptions.GetTimeoutError):
                ray.get(ref, timeout=CONTROL_TIMEOUT_S)
        self.time_dilation = time_dilation

    def shutdown(self) -> None:
        import ray

        self._drop_graph()
        for actor in self.actors.values():
            with contextlib.suppress(Exception):  # an actor already gone
                ray.kill(actor)
        for name in self.alive:
            self.alive[name] = False

    def _submit(self, x, placement: dict[str, str | None], drops: list[str], previous: str | None = None,
                deadline_unix: float | None = None):
        """Chain one request through the workers; returns [(device, units, ObjectRef), ...].

        ``x`` may be an ObjectRef already (the output of an earlier segment on ``previous``).
        A call that would start after ``deadline_unix`` is refused by its worker.
        """
        ref, chain = x, []
        for device, units in segments(placement):
            if not self.alive.get(device, False):
                raise UserInputError(f"the plan uses device {device!r}, which has no live worker")
            ref = self.actors[device].run.remote(ref, units, drops, self._inbound_rate_mbps(previous, device), deadline_unix, previous)
            chain.append((device, units, ref))
            previous = device
        return chain

    def _inbound_rate_mbps(self, previous: str | None, device: str) -> float | None:
        """The rate a worker emulates for its input from ``previous`` (None: no transfer to wait out)."""
        if not self.emulate_links or previous is None or previous == device:
            return None
        names = self.problem.devices
        return float(self.problem.rate_bps[names.index(previous), names.index(device)] / 1e6)

    def _shortcut(self, x, chain, drops: list[str], deadline_unix: float | None = None):
        """Resubmit a request whose chain hit dead workers, dropping their units' DC, if allowed.

        Returns (new chain, new drops) or None when a lost unit is not an identity block (its
        DC drop would still need a device) or the drop set misses the accuracy threshold.
        """
        from adaptive_resnet.models.naming import Connection, DropPlan

        first = next((k for k, (device, _, _) in enumerate(chain) if not self.alive[device]), None)
        if first is None:
            return None  # it failed for another reason than a dead worker on its way
        lost = [u for device, units, _ in chain[first:] if not self.alive[device] for u in units]
        profile = self.problem.profile
        ends = (profile.unit_names[0], profile.unit_names[-1])  # the stem and the head cannot be dropped
        already = {d.split(":")[0] for d in drops}
        if any(u in ends or u in already or profile.kept_cost(u, Connection.DC) != (0, 0) for u in lost):
            return None
        new_drops = list(drops) + [f"{u}:DC" for u in lost]
        plan = DropPlan.of(new_drops)
        if not any(c.plan == plan for c in self.problem.candidates):
            return None  # not allowed: below the threshold (or unknown to the accuracy source)
        placement = {u: (device if self.alive[device] else None) for device, units, _ in chain[first:] for u in units}
        source, previous = (x, None) if first == 0 else (chain[first - 1][2], chain[first - 1][0])
        return self._submit(source, placement, new_drops, previous, deadline_unix), new_drops

    def preload(self, plan_doc: dict) -> None:
        """Apply ``plan_doc``'s placement: each live worker loads the weights of the units it is
        given, now, so the step's first requests do not wait for them (applying a placement is
        the re-plan's cost), and frees those of the units it no longer hosts, so a device holds
        what the plan counted on it, not everything it ever ran."""
        import ray

        wanted: dict[str, set[str]] = {name: set() for name, ok in self.alive.items() if ok}
        for req in plan_doc.get("requests", []):
            for unit, device in req["placement"].items():
                if device is not None and device in wanted:
                    wanted[device].add(unit)
        from ray.exceptions import RayActorError

        order = {u: k for k, u in enumerate(self.problem.units)}
        refs = [self.actors[d].place.remote(sorted(units, key=order.get)) for d, units in wanted.items()]
        deadline = time.perf_counter() + CONTROL_TIMEOUT_S
        for ref in refs:
            # a worker that died or hangs: the requests find it and recover
            with contextlib.suppress(RayActorError, ray.exceptions.GetTimeoutError):
                ray.get(ref, timeout=max(deadline - time.perf_counter(), 0.0))

    def _drop_graph(self) -> None:
        if self._graph is not None:
            graph, self._graph = self._graph[1], None
            with contextlib.suppress(Exception):  # a graph whose actor died may fail to tear down; it is gone either way
                graph.teardown()

    def _compiled_graph(self, placement: dict[str, str | None], drops: list[str]):
        """The compiled graph for this chain (and drop set), compiling it if it is not the held one."""
        from ray.dag import InputNode

        chain = segments(placement)
        key = (tuple((d, tuple(u)) for d, u in chain), tuple(drops))
        if self._graph is not None and self._graph[0] == key:
            return self._graph[1]
        self._drop_graph()
        with InputNode() as x:
            node, previous = x, None
            for device, units in chain:
                node = self.actors[device].run.bind(node, units, list(drops), self._inbound_rate_mbps(previous, device), None, previous)
                previous = device
        self._graph = (key, node.experimental_compile())
        return self._graph[1]

    def _infer_compiled(self, images, requests: list[dict], outcomes: list[Outcome], pending: list[int], window: int = 4) -> list[int]:
        """Serve ``pending`` through compiled graphs, requests of one chain together; returns
        the requests left unanswered. At the first error the graph is torn down and compiled
        graphs are switched off: those requests go the ordinary way, which names failures,
        takes shortcuts and re-plans."""
        import ray

        groups: dict[tuple, list[int]] = {}
        for i in pending:
            req = assign(outcomes[i], requests)
            groups.setdefault((tuple(req["placement"].items()), tuple(outcomes[i].drops)), []).append(i)
        left = []
        for (placement, drops), members in groups.items():
            if not self.compiled or not all(self.alive.get(d, False) for _, d in placement if d is not None):
                left += members
                continue
            try:
                graph = self._compiled_graph(dict(placement), list(drops))
                flying: list[tuple[int, object, float]] = []
                for k, i in enumerate(members):
                    flying.append((i, graph.execute(request_input(images, i)), time.perf_counter()))
                    if len(flying) >= window or k == len(members) - 1:  # a graph holds few executions in flight
                        while flying:
                            j, ref, started = flying.pop(0)
                            self._answer(outcomes[j], ray.get(ref), started)
            except Exception:  # noqa: BLE001  any failure of the compiled path: fall back, see above
                self._drop_graph()
                self.compiled = False
                left += [i for i in members if outcomes[i].logits is None]
        return left

    def _answer(self, outcome: Outcome, logits, started: float) -> None:
        """Note a request's answer (the last worker's wire array) and its latency in emulated
        seconds, from ``started``: its first attempt's start, so that every attempt counts."""
        outcome.logits = from_wire(logits).clone()  # its own, writable memory, not the object store's
        outcome.latency_s = (time.perf_counter() - started) / self.time_dilation
        outcome.error = None

    def request_deadline_s(self, predicted_latency_s: float, batch: int = 1) -> float:
        """Wall seconds one attempt of a request, sent with ``batch`` requests in all, may take
        before its worker is suspected: the cluster's ``deadline_s`` when set, else
        DEADLINE_FACTOR x the plan's prediction x ``batch`` + DEADLINE_SLACK_S, stretched by the
        time dilation (UNPREDICTED_DEADLINE_S where the plan predicts nothing)."""
        if self.deadline_s is not None:
            return self.deadline_s
        if not predicted_latency_s > 0:
            return UNPREDICTED_DEADLINE_S * self.time_dilation
        return (DEADLINE_FACTOR * predicted_latency_s * max(batch, 1) + DEADLINE_SLACK_S) * self.time_dilation

    def _deadline_unix(self, outcome: Outcome, batch: int) -> float:
        """The wall-clock instant (epoch seconds, as workers compare it) an attempt starting now
        must be answered by; :meth:`_gather` waits until about the same instant."""
        return time.time() + self.request_deadline_s(outcome.predicted_latency_s, batch)

    def infer(self, images, plan_doc: dict, replan=None, max_attempts: int = 3, on_done=None) -> list[Outcome]:
        """Classify ``images`` (one request each) with ``plan_doc``'s requests, round-robin.

        Every request ends exactly once, answered or failed with a reason; ``on_done(outcome)``
        is called as each ends (a request that does not need a hung worker is not held back by
        one that does). A request whose attempt misses its deadline (:meth:`request_deadline_s`)
        has its calls cancelled and the worker it was waiting on suspected; like a request whose
        worker died, it is completed through the shortcut where the missing blocks are
        droppable, else re-planned on the others by ``replan(unusable_devices)`` (a new plan
        document) and sent again, up to ``max_attempts`` attempts.
        """

        requests = plan_doc.get("requests") or []
        outcomes = [Outcome(i) for i in range(len(images))]
        finished: set[int] = set()
        self._deadline_missed = set()

        def finish(i: int, error: str | None = None) -> None:
            if i in finished:
                return
            if error is not None and outcomes[i].logits is None:
                outcomes[i].error = error
            finished.add(i)
            if on_done is not None:
                on_done(outcomes[i])

        if not requests:
            for i in range(len(images)):
                finish(i, plan_doc.get("error") or "no feasible plan for this step")
            return outcomes
        pending = list(range(len(images)))
        if self.compiled:
            pending = self._infer_compiled(images, requests, outcomes, pending)
            for i in range(len(images)):
                if i not in pending:
                    finish(i)
        first_start: dict[int, float] = {}
        attempt = 0
        while pending and attempt < max_attempts:
            attempt += 1
            chains: dict[int, list] = {}
            for i in pending:
                req = assign(outcomes[i], requests)
                outcomes[i].attempts = attempt
                try:
                    chains[i] = self._submit(request_input(images, i), req["placement"], outcomes[i].drops,
                                             deadline_unix=self._deadline_unix(outcomes[i], len(pending)))
                    first_start.setdefault(i, time.perf_counter())
                except UserInputError as exc:
                    outcomes[i].error = str(exc)
            failed = [i for i in pending if i not in chains]
            failed += self._gather(chains, outcomes, first_start, finish)
            if not failed:
                break
            unusable = self._unusable(chains, failed)
            if unusable:  # first the shortcut, which needs no new plan
                shortcut = {}
                for i in failed:
                    if i not in chains:
                        continue
                    done = self._shortcut(request_input(images, i), chains[i], outcomes[i].drops,
                                          self._deadline_unix(outcomes[i], len(failed)))
                    if done is not None:
                        chains[i], outcomes[i].drops = done
                        outcomes[i].shortcut = True
                        shortcut[i] = chains[i]
                failed = [i for i in failed if i not in shortcut] + self._gather(shortcut, outcomes, first_start, finish)
                for i in failed:
                    outcomes[i].shortcut = False
            if not failed:
                break
            if replan is None or not unusable or attempt >= max_attempts:
                break
            try:
                plan_doc = replan(sorted(n for n, ok in self.alive.items() if not ok))
            except Exception as exc:  # noqa: BLE001  a failed re-plan fails these requests, not the answered ones
                plan_doc = {"feasible": False, "error": f"re-plan failed: {type(exc).__name__}: {exc}"}
            if not plan_doc or not plan_doc.get("feasible", False) or not plan_doc.get("requests"):
                reason = (plan_doc or {}).get("error") or "no feasible plan on the devices still answering"
                for i in failed:
                    outcomes[i].error = reason
                break
            requests = plan_doc["requests"]
            pending = failed
        for i in range(len(images)):
            finish(i, outcomes[i].error or "not completed")
        return outcomes

    def _gather(self, chains: dict[int, list], outcomes: list[Outcome], first_start: dict[int, float], finish) -> list[int]:
        """Wait for the last call of each chain until its deadline; answered requests are
        finished at once; returns the requests that failed or missed their deadline (whose
        calls are cancelled, so that none of them runs later)."""
        import ray
        from ray.exceptions import RayActorError, RayTaskError

        waiting = {chain[-1][2]: i for i, chain in chains.items()}
        budget = {i: self.request_deadline_s(outcomes[i].predicted_latency_s, len(chains)) for i in chains}
        deadline = {i: time.perf_counter() + budget[i] for i in chains}
        failed = []
        while waiting:
            wait_s = max(min(deadline[i] for i in waiting.values()) - time.perf_counter(), 0.0)
            ready, _ = ray.wait(list(waiting), num_returns=1, timeout=wait_s)
            if not ready:
                now = time.perf_counter()
                for ref, i in [(r, i) for r, i in waiting.items() if deadline[i] <= now]:
                    del waiting[ref]
                    failed.append(i)
                    self._deadline_missed.add(i)
                    outcomes[i].error = f"deadline: no answer within {budget[i]:.2f} s"
                    for _, _, call in chains[i]:
                        with contextlib.suppress(Exception):  # finished or gone already
                            ray.cancel(call)
                continue
            i = waiting.pop(ready[0])
            try:
                self._answer(outcomes[i], ray.get(ready[0]), first_start[i])
                finish(i)
            except (RayActorError, RayTaskError) as exc:
                failed.append(i)
                outcomes[i].error = f"worker failed: {type(exc).__name__}"
        return failed

    def _unusable(self, chains: dict[int, list], failed: list[int]) -> list[str]:
        """Workers to route around after ``failed`` requests: those on their chains whose actors
        died (dead for good) and, for a request that missed its deadline, the first worker of its
        chain that had not answered (suspected until a heartbeat hears from it again)."""
        import ray

        used = {device for i in failed if i in chains for device, _, _ in chains[i]}
        self._ping({d for d in used if self.alive[d]}, HEARTBEAT_S, suspect_silent=False)
        for i in failed:
            if i not in chains or i not in self._deadline_missed:
                continue
            calls = [call for _, _, call in chains[i]]
            done, _ = ray.wait(calls, num_returns=len(calls), timeout=0)
            stuck = next((device for device, _, call in chains[i] if call not in done), None)
            if stuck is not None and stuck not in self.dead and self.alive.get(stuck):
                self.alive[stuck] = False
                self.suspected.add(stuck)
        return sorted(d for d in used if not self.alive[d])

    def heartbeat(self, timeout_s: float = HEARTBEAT_S) -> dict[str, str]:
        """Between steps: ping every worker not dead for good. A worker thought alive has
        ``timeout_s`` to answer, else it is suspected; a suspected one is not waited for (its
        last ping is checked, and it rejoins once that is answered), so a hung worker costs a
        step at most once; one whose actor died is dead. Returns each device's state:
        ``alive``, ``suspected`` or ``dead``."""
        self._ping({n for n, ok in self.alive.items() if ok}, timeout_s, suspect_silent=True)
        self._ping({n for n in self.suspected if n not in self.dead}, 0.0, suspect_silent=True)
        return {n: "dead" if n in self.dead else "suspected" if n in self.suspected else "alive" for n in self.alive}

    def _ping(self, names: set[str], timeout_s: float, suspect_silent: bool) -> None:
        """Ping ``names`` (a suspected worker keeps its one outstanding ping) and wait up to
        ``timeout_s``: an answer makes a worker alive, a dead actor dead, and silence, with
        ``suspect_silent``, suspected."""
        import ray
        from ray.exceptions import RayActorError

        refs = {}
        for name in sorted(names):
            ref = self._pings.get(name)
            if ref is None:
                ref = self._pings[name] = self.actors[name].ping.options(concurrency_group="control").remote()
            refs[ref] = name
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        for ref, name in refs.items():
            if ref not in ready:
                if suspect_silent:
                    self.alive[name] = False
                    self.suspected.add(name)
                continue
            del self._pings[name]
            try:
                ray.get(ref, timeout=0)
                self.alive[name] = True
                self.suspected.discard(name)
            except RayActorError:
                self.alive[name] = False
                self.dead.add(name)
                self.suspected.discard(name)

    def probe_rates(self, nbytes: int = 1 << 18) -> dict[tuple[str, str], float]:
        """Measured Mb/s between live workers on different nodes.

        Each object is made on the sender's node and fetched by the receiver; it is over Ray's
        100 KB inlining limit, so it crosses the network as activations of that size do. Pairs
        on one node share memory, not a link, and are not probed. Probes run in rounds
        (:func:`probe_rounds`) in which no node sends or receives twice, so a step costs about
        2(N-1) fetch times for N nodes, not N(N-1), and no two probes share a node's link.
        """
        import ray

        live = {n: a for n, a in self.actors.items() if self.alive[n]}
        nodes = dict(zip(live, ray.get([a.node_id.remote() for a in live.values()], timeout=CONTROL_TIMEOUT_S), strict=True))
        rates = {}
        for pairs in probe_rounds(nodes):
            made = [live[src].blob.remote(nbytes) for src, _ in pairs]
            ray.wait(made, num_returns=len(made), fetch_local=False, timeout=CONTROL_TIMEOUT_S)  # made, not pulled to the driver
            seconds = ray.get([live[dst].fetch_s.remote([ref]) for (_, dst), ref in zip(pairs, made, strict=True)],
                              timeout=CONTROL_TIMEOUT_S)
            for pair, s in zip(pairs, seconds, strict=True):
                rates[pair] = nbytes * 8 / max(s, 1e-6) / 1e6
        return rates

    def stats(self) -> dict:
        """Each live worker's counts (``DeviceWorker.stats``); a worker found dead here is marked
        dead and left out, as the requests would find it."""
        import ray
        from ray.exceptions import RayActorError

        refs = {n: a.stats.remote() for n, a in self.actors.items() if self.alive[n]}
        out = {}
        deadline = time.perf_counter() + HEARTBEAT_S
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=max(deadline - time.perf_counter(), 0.0))
            except RayActorError:
                self.alive[name] = False
                self.dead.add(name)
            except ray.exceptions.GetTimeoutError:
                self.alive[name] = False  # its counts are read again once it answers
                self.suspected.add(name)
        return out


def one_node() -> bool:
    """Whether the connected Ray cluster is a single live node (one machine)."""
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive")) <= 1


def probe_rounds(nodes: dict[str, str]) -> list[list[tuple[str, str]]]:
    """Every ordered pair of devices on different nodes (``nodes``: device -> node), in rounds
    in which no node takes part twice, as sender or receiver.

    Node pairs follow the circle method of round-robin tournaments (N-1 rounds of disjoint
    pairs for N nodes, each pair once), each direction in a round of its own; several devices
    on one node take turns on its link. About 2(N-1) rounds for one device a node.
    """
    hosts = list(dict.fromkeys(nodes.values()))
    if len(hosts) % 2:
        hosts.append(None)  # the node paired with None sits the round out
    order, node_rounds = hosts[1:], []
    for _ in range(len(hosts) - 1):
        ring = [hosts[0], *order]
        pairs = [(ring[i], ring[-1 - i]) for i in range(len(ring) // 2)]
        pairs = [(a, b) for a, b in pairs if a is not None and b is not None]
        node_rounds += [pairs, [(b, a) for a, b in pairs]]
        order = order[-1:] + order[:-1]
    on = {h: [d for d, n in nodes.items() if n == h] for h in hosts if h is not None}
    rounds = []
    for node_pairs in node_rounds:
        # devices of a node pair take turns: the k-th sub-round sends the k-th (src, dst) of each
        per_pair = [[(s, d) for s in on[a] for d in on[b]] for a, b in node_pairs]
        for k in range(max((len(p) for p in per_pair), default=0)):
            rounds.append([p[k] for p in per_pair if k < len(p)])
    return [r for r in rounds if r]


def plan_for(problem, solver: str = "fast", dead: list[str] | None = None) -> dict:
    """A plan document for ``problem``, with ``dead`` devices excluded."""
    from adaptive_resnet.planning import solve

    if dead:
        available = np.array([name not in dead for name in problem.devices])
        problem = problem.derive(rates_mbps=problem.rate_bps / 1e6, requests=problem.requests, energy_j=problem.energy_limit_j,
                                 available=available & problem.available, speeds_gmacs=problem.speed_macs / 1e9)
    return solve(problem, solver).to_json(problem)
