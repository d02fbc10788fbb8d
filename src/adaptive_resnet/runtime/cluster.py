"""The driver side: a Ray actor per device, and what the cluster does with them.

:class:`RayCluster` starts one :class:`~adaptive_resnet.runtime.worker.DeviceWorker` actor per
device of a scenario. On a real cluster an actor is pinned to its device's node through a
custom resource named ``device:<name>`` (start each node with ``--resources
'{"device:<name>": 1}'``); on one machine, where no such resource exists, all run locally.

Each job has a module of its own, and this class holds them together: request chains and their
deadlines (:mod:`.chains`), recovery from a lost worker (:mod:`.recovery`), which workers may take
work (:mod:`.health`), link probes (:mod:`.probing`) and compiled graphs (:mod:`.compiled`).
It takes the planner's typed plans (:class:`~adaptive_resnet.planning.step_plan.StepPlan`).
Every request ends answered once or failed once.
"""

from __future__ import annotations

import contextlib
import time

from adaptive_resnet.errors import UserInputError
from adaptive_resnet.planning.step_plan import StepPlan
from adaptive_resnet.runtime.chains import ChainRun, Outcome, request_deadline_s
from adaptive_resnet.runtime.compiled import CompiledChains
from adaptive_resnet.runtime.health import Health
from adaptive_resnet.runtime.recovery import HEARTBEAT_S

__all__ = ["Outcome", "RayCluster", "one_node"]

# A worker allocates every activation of every request afresh. glibc hands freed blocks over
# 128 KB back to the OS and page-faults them in again on the next request (measured: 8-13 ms
# on a two-worker ResNet-50@224 request); these keep up to 32 MB blocks and 256 MB of free heap in the process.
WORKER_MALLOC_ENV = {"MALLOC_MMAP_THRESHOLD_": str(32 << 20), "MALLOC_TRIM_THRESHOLD_": str(256 << 20),
                     "MALLOC_TOP_PAD_": str(64 << 20)}


EMULATED_CONCURRENCY = 16  # calls an emulating worker serves at once (two time steps of the paper's lambda = 3, with room)
CONTROL_TIMEOUT_S = 30.0  # the most any wait on a worker outside a request takes (placement, stats, dilation)


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

        from adaptive_resnet.ray_connect import connect
        from adaptive_resnet.runtime.worker import DeviceWorker

        self.problem = problem
        if time_dilation < 1.0:
            raise UserInputError(f"time dilation must be >= 1 (got {time_dilation})")
        if deadline_s is not None and not deadline_s > 0:
            raise UserInputError(f"the request deadline must be positive, got {deadline_s}")
        self.deadline_s = deadline_s
        self.compiled = CompiledChains(self, compiled)
        self.actors: dict = {}
        self.health = Health(self.actors)
        connect(address, num_cpus=max(2, len(problem.devices)))
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
        self.health = Health(self.actors)

    def _check_dilation(self, time_dilation: float) -> None:
        if time_dilation < 1.0 or (time_dilation != 1.0 and not self.emulate_links):
            raise UserInputError(f"time dilation must be >= 1 and needs link emulation (got {time_dilation}, "
                                 f"emulation {'on' if self.emulate_links else 'off'})")

    def set_time_dilation(self, time_dilation: float) -> None:
        """Change the time dilation of every live worker, between requests."""
        import ray
        from ray.exceptions import RayActorError

        self._check_dilation(time_dilation)
        refs = [self.actors[n].dilate.remote(time_dilation) for n in self.health.usable()]
        for ref in refs:
            # a worker that died or hangs: the requests (or the next heartbeat) find it and recover
            with contextlib.suppress(RayActorError, ray.exceptions.GetTimeoutError):
                ray.get(ref, timeout=CONTROL_TIMEOUT_S)
        self.time_dilation = time_dilation

    def shutdown(self) -> None:
        import ray

        self.compiled.teardown()
        for actor in self.actors.values():
            with contextlib.suppress(Exception):  # an actor already gone
                ray.kill(actor)
        self.health.all_dead()

    # Views of the workers' states, for callers that ask about one kind (kept in :class:`Health`).
    @property
    def alive(self) -> dict[str, bool]:
        return {name: self.health.alive(name) for name in self.actors}

    @property
    def suspected(self) -> set[str]:
        return {n for n, s in self.health.states().items() if s == "suspected"}

    @property
    def dead(self) -> set[str]:
        return {n for n, s in self.health.states().items() if s == "dead"}

    def preload(self, plan: StepPlan) -> None:
        """Apply ``plan``'s placement: each live worker loads the weights of the units it is
        given, now, so the step's first requests do not wait for them (applying a placement is
        the re-plan's cost), and frees those of the units it no longer hosts, so a device holds
        what the plan counted on it, not everything it ever ran."""
        import ray
        from ray.exceptions import RayActorError

        hosts = plan.hosts()
        refs = [self.actors[d].place.remote(hosts.get(d, [])) for d in self.health.usable()]
        deadline = time.perf_counter() + CONTROL_TIMEOUT_S
        for ref in refs:
            # a worker that died or hangs: the requests find it and recover
            with contextlib.suppress(RayActorError, ray.exceptions.GetTimeoutError):
                ray.get(ref, timeout=max(deadline - time.perf_counter(), 0.0))

    def request_deadline_s(self, predicted_latency_s: float, batch: int = 1) -> float:
        """See :func:`~adaptive_resnet.runtime.chains.request_deadline_s`."""
        return request_deadline_s(self, predicted_latency_s, batch)

    def infer(self, images, plan: StepPlan, replan=None, max_attempts: int = 3, on_done=None) -> list[Outcome]:
        """Classify ``images`` (one request each) with ``plan``'s routes, round-robin.

        Every request ends exactly once, answered or failed with a reason; ``on_done(outcome)``
        is called as each ends (a request that does not need a hung worker is not held back by
        one that does). A request whose attempt misses its deadline (:meth:`request_deadline_s`)
        has its calls cancelled and the worker it was waiting on suspected; like a request whose
        worker died, it is completed through the shortcut where the missing blocks are
        droppable, else re-planned on the others by ``replan(unusable_devices)`` (a new
        :class:`StepPlan`) and sent again, up to ``max_attempts`` attempts.
        """
        return ChainRun(self, images, plan, replan, max_attempts, on_done).run()

    def heartbeat(self, timeout_s: float = HEARTBEAT_S) -> dict[str, str]:
        """Between steps (:meth:`Health.heartbeat`): each device's state after it."""
        return self.health.heartbeat(timeout_s)

    def probe_rates(self, nbytes: int = 1 << 18) -> dict[tuple[str, str], float]:
        """Measured Mb/s between live workers on different nodes (:func:`~.probing.probe_rates`)."""
        from adaptive_resnet.runtime.probing import probe_rates

        return probe_rates(self.health, nbytes, CONTROL_TIMEOUT_S)

    def stats(self) -> dict:
        """The counts (``DeviceWorker.stats``) of each live worker that answers within the
        heartbeat's time; one that does not is left out this time (its state is the heartbeat's
        and the deadlines' to judge), one whose actor died is marked dead."""
        import ray
        from ray.exceptions import RayActorError

        refs = {n: self.actors[n].stats.remote() for n in self.health.usable()}
        out = {}
        deadline = time.perf_counter() + HEARTBEAT_S
        for name, ref in refs.items():
            try:
                out[name] = ray.get(ref, timeout=max(deadline - time.perf_counter(), 0.0))
            except RayActorError:
                self.health.dead(name)
            except ray.exceptions.GetTimeoutError:
                pass  # read again next time; the counts are totals, nothing is lost
        return out


def one_node() -> bool:
    """Whether the connected Ray cluster is a single live node (one machine)."""
    import ray

    return sum(1 for node in ray.nodes() if node.get("Alive")) <= 1
