"""The planning problem and its cost model (paper, Eq. 5-19): the one home of every formula.

A :class:`Problem` fixes one time step: the model's unit costs, the candidate drop sets with
their accuracies g(y), the devices and the link rates. A request's plan is a drop set and a
device for every unit that still runs. :meth:`Problem.evaluate` turns a plan into latency,
accuracy, energy, memory and compute per device, and the list of violated constraints; every
solver, the simulator and the runtime's predictions go through it (or through the arrays it
precomputes, which :mod:`adaptive_resnet.planning.routing` uses for dynamic programming).

Readings of the paper we had to choose (docs/planner.md explains each):

* Latency of a request (Eq. 7-8): the units run one after another, so it is the sum of the
  compute times c_j / e_i (Eq. 9) of its units and of the transfers between consecutive units
  on different devices, K_j / rho (Eq. 10). When blocks are dropped, the next unit's input comes
  over the skip connection from the last unit that ran (Eq. 11, sigma > 1). The direct and skip
  inputs of a block are then the same tensor from the same device, so the max of Eq. 8 is that
  one transfer. A device sending to itself costs nothing.
* Normalisation in Eq. 5: latency is divided by L_ref, the full network's compute time on the
  fastest device, so both terms of W are about 1 at most.
* Energy (Eq. 19): compute time x P_c on the device that computes; transfer time x P_t on the
  device that sends.
* Memory (Eq. 13): ``paper`` counts m_j (Eq. 1) per request on the executing device;
  ``shared-weights`` counts a unit's weights once on every device that hosts it, plus m_j per
  request (activations), because requests share weights.
* A dropped identity block (DC) costs nothing anywhere and has no device. A first block with its
  DC dropped still runs its projection shortcut, and a block with its SC dropped runs its
  residual branch: both need a device.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numba
import numpy as np

from adaptive_resnet.accuracy import AccuracyTable
from adaptive_resnet.errors import UserInputError
from adaptive_resnet.models.naming import Connection, DropPlan
from adaptive_resnet.profile import ModelProfile, profile_model
from adaptive_resnet.system import Scenario

BITS_PER_BYTE = 8


@dataclass(frozen=True)
class Candidate:
    """A drop set the planner may choose, with what still runs."""

    plan: DropPlan
    accuracy: float
    estimated: bool
    units: np.ndarray  # indices (into Problem.units) of the units that still run, in order
    macs: np.ndarray  # multiplications of each running unit (c_j, after the drop)
    memory_bytes: np.ndarray  # m_j of each running unit, after the drop
    output_bytes: np.ndarray  # K_j of each running unit: what it sends to the next one
    skip_in: np.ndarray  # True where a unit's input crosses dropped blocks (Eq. 11, sigma > 1)


@dataclass(frozen=True)
class RouteCosts:
    """One request's own costs on one route (:meth:`Problem.route_costs`)."""

    latency_s: float
    memory_bytes: np.ndarray  # (N,) activations (Eq. 13), weights not included
    macs: np.ndarray  # (N,) Eq. 14
    energy_j: np.ndarray  # (N,) Eq. 19: compute where computed, transmission by the sender
    direct_bytes: float  # sent between consecutive running units (Eq. 10)
    skip_bytes: float  # sent over skip connections across dropped blocks (Eq. 11)


@dataclass
class RequestPlan:
    """One request's decision: its drop set (y, Eq. 4) and a device per running unit (x, Eq. 3)."""

    candidate: int
    devices: np.ndarray  # device index per running unit of the candidate


@dataclass
class Evaluation:
    """Everything a plan costs, and what it violates."""

    objective: float
    latency_s: float  # mean over requests
    accuracy: float  # mean over requests (Eq. 6)
    latencies_s: list[float]
    accuracies: list[float]
    energy_j: dict[str, float]
    memory_bytes: dict[str, float]
    macs: dict[str, float]
    direct_bytes: float  # sent between devices over direct connections (Eq. 10)
    skip_bytes: float  # sent over skip connections across dropped blocks (Eq. 11)
    dropped_blocks: int
    violations: list[str] = field(default_factory=list)

    @property
    def feasible(self) -> bool:
        return not self.violations


class Problem:
    """One time step of the paper's optimisation (Eq. 12-19), ready for any solver."""

    def __init__(
        self,
        scenario: Scenario,
        profile: ModelProfile | None = None,
        accuracy: AccuracyTable | None = None,
        *,
        rates_mbps: np.ndarray | None = None,
        requests: int | None = None,
        energy_j: np.ndarray | None = None,
        available: np.ndarray | None = None,
        speeds_gmacs: np.ndarray | None = None,
    ) -> None:
        self.scenario = scenario
        self.profile = profile or scenario_profile(scenario)
        if accuracy is None:
            try:
                accuracy = AccuracyTable.load(scenario.accuracy)
            except UserInputError as exc:
                raise UserInputError(f"{scenario.where('accuracy')}: {exc}") from None
        self.table = accuracy
        self.units = self.profile.unit_names
        self.devices = scenario.device_names
        n = len(self.devices)
        self.requests = scenario.requests if requests is None else requests
        self.alpha, self.beta = scenario.alpha, scenario.beta
        self.threshold = scenario.accuracy_threshold
        self.shared_weights = scenario.memory_mode == "shared-weights"
        configured_speed = np.array([d.speed_gmacs * 1e9 for d in scenario.devices])
        # Measured speeds (the runtime's controller) replace the configured ones in Eq. 9.
        self.speed_macs = configured_speed if speeds_gmacs is None else np.asarray(speeds_gmacs, float) * 1e9
        self.compute_limit_macs = np.array([d.compute_limit_gmac * 1e9 for d in scenario.devices])
        self.memory_limit_bytes = np.array([d.memory_mb * 1e6 for d in scenario.devices])
        self.energy_limit_j = np.array([d.energy_j for d in scenario.devices]) if energy_j is None else np.asarray(energy_j, float)
        self.available = np.ones(n, bool) if available is None else np.asarray(available, bool)
        rates = scenario.rate_matrix() if rates_mbps is None else np.array(rates_mbps, float)
        np.fill_diagonal(rates, np.inf)
        self.rate_bps = rates * 1e6
        self.compute_w, self.transmit_w = scenario.power.compute_w, scenario.power.transmit_w
        self.weight_bytes = np.array([u.weight_bytes for u in self.profile.units], float)
        # L_ref: the full network's compute time on the fastest device (Eq. 5's normalisation).
        # L_ref stays on the configured speeds, so objectives of different steps compare.
        # ``objective_normalisation`` (the paper's readings of Eq. 5) chooses another L_ref.
        normalisation = scenario.objective_normalisation
        speed = configured_speed.min() if normalisation == "slowest-device" else configured_speed.max()
        self.reference_latency_s = self.profile.total("macs") / speed * (self.requests if normalisation == "printed-eq5" else 1)
        if self.table.arch and self.table.arch != self.profile.arch:
            raise UserInputError(f"{scenario.where('accuracy')}: accuracy source {self.table.name} is for {self.table.arch}, "
                                 f"the scenario's model is {self.profile.arch}")
        self.candidates = self._candidates()

    def derive(self, scenario: Scenario | None = None, **step) -> Problem:
        """A problem for the same model profile and accuracy source (read once): another time
        step (``rates_mbps``, ``requests``, ``energy_j``, ``available``, ``speeds_gmacs``, as
        the constructor takes them) and/or a variant of the scenario (an experiment's point)."""
        return Problem(scenario or self.scenario, self.profile, self.table, **step)

    def subset(self, devices, requests: int, memory_bytes=None, compute_macs=None, energy_j=None) -> Problem:
        """The same step on ``devices`` (indices) only, for ``requests`` requests: a pool of a
        large fleet (:mod:`~adaptive_resnet.planning.pools`). Capacities are this problem's, or
        what is left of them (``memory_bytes``, ``compute_macs``, ``energy_j``, per device of the
        subset). L_ref stays this problem's, so objectives of a pool and of the fleet compare; a
        plan of the subset maps back through ``devices``."""
        import copy

        idx = np.asarray(devices, int)
        clone = copy.copy(self)
        for cache in [k for k in clone.__dict__ if k.startswith("_")]:
            del clone.__dict__[cache]  # the fleet's caches (per drop set, per route) are not the pool's
        clone.devices = [self.devices[i] for i in idx]
        clone.requests = int(requests)
        clone.speed_macs = self.speed_macs[idx]
        clone.compute_limit_macs = (self.compute_limit_macs[idx] if compute_macs is None else np.asarray(compute_macs, float)).copy()
        clone.memory_limit_bytes = (self.memory_limit_bytes[idx] if memory_bytes is None else np.asarray(memory_bytes, float)).copy()
        clone.energy_limit_j = (self.energy_limit_j[idx] if energy_j is None else np.asarray(energy_j, float)).copy()
        clone.available = self.available[idx].copy()
        clone.rate_bps = self.rate_bps[np.ix_(idx, idx)].copy()
        return clone

    def _candidates(self) -> list[Candidate]:
        return self._candidates_from(self.table.candidates(self.threshold, include_estimates=self.scenario.allow_estimates))

    def _candidates_from(self, found) -> list[Candidate]:
        if not found:
            raise UserInputError(
                f"{self.scenario.where('accuracy_threshold')}: {self.threshold} is above every drop set's accuracy "
                f"(best: {self.table.best_possible():.4f} from {self.table.name})"
            )
        out = []
        for plan, acc in found:
            try:
                plan.validate(self.units[1:-1])
            except UserInputError as exc:
                raise UserInputError(f"{self.scenario.where('accuracy')}: {self.table.name} names a block the model lacks: {exc}") from None
            idx, macs, mem, out_b, skip = [], [], [], [], []
            gap = False
            for u, name in enumerate(self.units):
                dropped = plan.dropped(name)
                c, m = self.profile.kept_cost(name, dropped)
                if dropped is Connection.DC and c == 0 and m == 0:
                    gap = True  # nothing runs: the tensor passes through untouched
                    continue
                idx.append(u)
                macs.append(c)
                mem.append(m)
                out_b.append(self.profile[name].output_bytes)
                skip.append(gap)
                gap = False
            out.append(Candidate(plan, acc.value, acc.estimated, np.array(idx), np.array(macs, float),
                                 np.array(mem, float), np.array(out_b, float), np.array(skip)))
        return out

    def widened(self, *, keep_threshold: bool) -> Problem:
        """The same step with every drop set its accuracy source knows as a candidate: measured
        ones, and those estimated from singles and pairs of up to ``max(2,
        scenario.downsize_max_drops)`` blocks, best first. With ``keep_threshold``, Eq. 16 is
        still checked against the scenario's threshold (``evaluate`` reports a request below it
        as a violation: reading a plan file); without, the threshold is lifted (downsizing
        serves below it). Drop sets are renumbered: a plan of this problem indexes its own
        ``candidates``."""
        import copy

        clone = copy.copy(self)
        for cache in [k for k in clone.__dict__ if k.startswith("_")]:
            del clone.__dict__[cache]  # caches keyed by drop-set number are this problem's
        depth = max(2, self.scenario.downsize_max_drops)
        clone.candidates = clone._candidates_from(self.table.candidates(0.0, include_estimates=True, max_drops=depth))
        clone.threshold = self.threshold if keep_threshold else min(c.accuracy for c in clone.candidates)
        return clone

    def remaining(self, plan: list[RequestPlan]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Per device, the memory (bytes), multiplications and energy (J) left beside ``plan``.
        The weights a device already hosts count as used, so a plan for the remainder that
        hosts them again is on the safe side (it may leave out a request that would fit)."""
        ev = self.evaluate(plan, requests=len(plan))
        used = {k: np.array([getattr(ev, k)[d] for d in self.devices]) for k in ("memory_bytes", "macs", "energy_j")}
        return (np.maximum(self.memory_limit_bytes - used["memory_bytes"], 0.0),
                np.maximum(self.compute_limit_macs - used["macs"], 0.0),
                np.maximum(self.energy_limit_j - used["energy_j"], 0.0))

    def restricted_to(self, keep) -> Problem:
        """A copy whose candidate drop sets are those for which ``keep(candidate)`` is true.

        Baselines that never drop blocks use it; plans of the copy evaluate as plans of the
        original, since candidates keep their order.
        """
        import copy

        clone = copy.copy(self)
        clone.candidates = [c for c in self.candidates if keep(c)]
        if not clone.candidates:
            raise UserInputError("no drop set is left for this restriction (is the full network below the threshold?)")
        return clone

    # -- per-request cost arrays, shared by the evaluator and the dynamic programs ---------------

    def compute_s(self, cand: Candidate) -> np.ndarray:
        """(L, N): Eq. 9, c_j / e_i, for every running unit on every device (read-only)."""
        return self.per_candidate("compute_s", cand, lambda: _read_only(cand.macs[:, None] / self.speed_macs[None, :]))

    def transfer_s(self, cand: Candidate) -> np.ndarray:
        """(L, N, N): Eq. 10/11, K_j / rho(i, k), unit l's output sent from device i to device k (read-only)."""
        return self.per_candidate("transfer_s", cand, lambda: _read_only(self.unit_transfer_s()[cand.units]))

    def unit_transfer_s(self, barred_self: bool = False) -> np.ndarray:
        """(units, N, N): :meth:`transfer_s` by unit rather than by a drop set's running unit (a
        unit sends the same tensor whatever is dropped around it), so every drop set shares
        one table (building one per drop set took 2.7 ms of a ~10 ms ``fast`` solve at N = 30).
        ``barred_self``: with a device sending to itself at inf, as the segment DP takes it (a
        segment boundary changes device). Read-only."""
        cache = self.__dict__.setdefault("_unit_transfer", {})
        if barred_self not in cache:
            out_b = np.array([self.profile[name].output_bytes for name in self.units], float)
            table = out_b[:, None, None] * BITS_PER_BYTE / self.rate_bps[None, :, :]
            if barred_self:
                N = len(self.devices)
                table[:, np.arange(N), np.arange(N)] = np.inf
            cache[barred_self] = _read_only(table)
        return cache[barred_self]

    def per_candidate(self, name: str, cand: Candidate, make):
        """``make()`` once per (name, drop set) of this problem: the searches ask for the same
        arrays many times a step (~2 ms a solve at N = 30). Speeds and rates are fixed for a
        Problem's life; callers must not change what they get (the arrays here are read-only)."""
        cache = self.__dict__.setdefault("_per_candidate", {})
        key = (name, id(cand))
        if key not in cache:
            cache[key] = (cand, make())  # holding cand keeps its id from being reused
        return cache[key][1]

    def latency_s(self, cand: Candidate, devices: np.ndarray) -> float:
        """Eq. 7-8 for one request: compute plus transfers along its chain of running units."""
        return route_latency(np.asarray(devices, np.int64), cand.macs, cand.output_bytes, self.speed_macs, self.rate_bps)

    def route_costs(self, c: int, devices: np.ndarray) -> RouteCosts:
        """Everything one request of drop set ``c`` on ``devices`` costs by itself (weights
        aside), from the compiled formulas :func:`route_latency` and :func:`route_usage`
        (activation memory, Eq. 13; multiplications, Eq. 14; energy, Eq. 19, compute where
        computed and transmission by the sender; weights count once per hosting device,
        apart); kept per route for the problem's life (read-only), since plans repeat routes and the heuristics check the
        same few routes again and again (a greedy pass: ~240 checks, ~60 routes)."""
        cand = self.candidates[c]
        devices = np.asarray(devices, np.int64)
        # Keyed by the drop set itself, not its index: a restricted copy (restricted_to) shares
        # this dict and numbers its drop sets differently.
        cache = self.__dict__.setdefault("_route_costs", {})
        key = (id(cand), devices.tobytes())
        if key not in cache:
            latency, memory, macs, energy, direct, skip = _route_costs(
                devices, cand.macs, cand.memory_bytes, cand.output_bytes, cand.skip_in, self.speed_macs, self.rate_bps,
                self.compute_w, self.transmit_w)
            costs = RouteCosts(latency, _read_only(memory), _read_only(macs), _read_only(energy), direct, skip)
            cache[key] = (cand, costs)  # holding cand keeps its id from being reused
        return cache[key][1]

    def objective(self, mean_latency_s: float, mean_accuracy: float) -> float:
        """Eq. 5: W = alpha * latency / L_ref + beta * (1 - accuracy)."""
        return self.alpha * mean_latency_s / self.reference_latency_s + self.beta * (1.0 - mean_accuracy)

    # -- evaluation -----------------------------------------------------------------------------

    def evaluate(self, plan: list[RequestPlan], requests: int | None = None) -> Evaluation:
        """Cost and constraint check of a whole time step's plan (Eq. 5-19); ``requests``: how
        many requests the plan must serve (default: the step's; fewer when admission left some
        out, :attr:`Solution.served`)."""
        n = len(self.devices)
        energy, memory, macs = np.zeros(n), np.zeros(n), np.zeros(n)
        hosted = np.zeros((len(self.units), n), bool)
        latencies, accuracies, violations = [], [], []
        direct_b = skip_b = 0.0
        dropped = 0
        expected = self.requests if requests is None else requests
        if len(plan) != expected:
            violations.append(f"requests: plan has {len(plan)} requests, the time step has {expected}")
        # Requests of a step repeat a few routes (the heuristics keep a route while it fits):
        # each distinct route is costed and checked once, and counted as often as it is used.
        routes: dict[tuple[int, bytes], list] = {}
        for r, req in enumerate(plan):
            cand = self.candidates[req.candidate]
            dev = np.asarray(req.devices, np.int64)
            if dev.shape != cand.units.shape:
                raise ValueError(f"request {r}: {dev.shape[0]} devices for {cand.units.shape[0]} running units")
            key = (req.candidate, dev.tobytes())
            if key not in routes:
                gone = dev[~self.available[dev]]
                routes[key] = [req.candidate, dev, self.route_costs(req.candidate, dev), 0, int(gone[0]) if len(gone) else -1]
            costs = routes[key][2]
            routes[key][3] += 1
            latencies.append(costs.latency_s)
            accuracies.append(cand.accuracy)
            dropped += len(cand.plan.drops)
            if cand.accuracy < self.threshold:
                violations.append(f"accuracy[request {r}]: {cand.accuracy:.4f} < threshold {self.threshold}")
            if routes[key][4] >= 0:
                violations.append(f"placement[request {r}]: uses unavailable device {self.devices[routes[key][4]]}")
        for c, dev, costs, count, _ in routes.values():
            memory += count * costs.memory_bytes
            macs += count * costs.macs
            energy += count * costs.energy_j
            hosted[self.candidates[c].units, dev] = True
            direct_b += count * costs.direct_bytes
            skip_b += count * costs.skip_bytes
        if self.shared_weights:
            memory += (hosted * self.weight_bytes[:, None]).sum(0)
        over_memory = memory > self.memory_limit_bytes * (1 + 1e-9)
        over_macs = macs > self.compute_limit_macs * (1 + 1e-9)
        over_energy = energy > self.energy_limit_j * (1 + 1e-9)
        for i in np.flatnonzero(over_memory | over_macs | over_energy):  # device by device, as the messages are read
            name = self.devices[i]
            if over_memory[i]:
                violations.append(f"memory[{name}]: {memory[i] / 1e6:.2f} MB > {self.memory_limit_bytes[i] / 1e6:.2f} MB")
            if over_macs[i]:
                violations.append(f"compute[{name}]: {macs[i] / 1e9:.3f} GMAC > {self.compute_limit_macs[i] / 1e9:.3f} GMAC")
            if over_energy[i]:
                violations.append(f"energy[{name}]: {energy[i]:.2f} J > {self.energy_limit_j[i]:.2f} J")
        mean_lat = float(np.mean(latencies)) if latencies else 0.0
        mean_acc = float(np.mean(accuracies)) if accuracies else 0.0
        return Evaluation(
            objective=self.objective(mean_lat, mean_acc), latency_s=mean_lat, accuracy=mean_acc,
            latencies_s=latencies, accuracies=accuracies,
            energy_j=dict(zip(self.devices, energy.tolist())), memory_bytes=dict(zip(self.devices, memory.tolist())),
            macs=dict(zip(self.devices, macs.tolist())), direct_bytes=direct_b, skip_bytes=skip_b,
            dropped_blocks=dropped, violations=violations,
        )

    # -- plan <-> JSON placement maps -----------------------------------------------------------

    def placement(self, req: RequestPlan) -> dict[str, str | None]:
        """Unit name -> device name, or None where the unit does not run."""
        cand = self.candidates[req.candidate]
        out: dict[str, str | None] = dict.fromkeys(self.units)
        for u, d in zip(cand.units, req.devices, strict=True):
            out[self.units[u]] = self.devices[int(d)]
        return out


def scenario_profile(scenario: Scenario) -> ModelProfile:
    """The cost profile a scenario's model has: its ``profile`` file when it names one, else
    measured from the architecture. The one place a scenario's model becomes unit costs."""
    m = scenario.model
    if not m.profile:
        return profile_model(m.arch, m.input_size, m.num_classes, m.stem, m.base_channels)
    try:
        profile = ModelProfile.load(m.profile)
    except UserInputError as exc:
        raise UserInputError(f"{scenario.where('model', 'profile')}: {exc}") from None
    return profile


def load_problem(path) -> Problem:
    """Read a scenario file into the planner's :class:`Problem`: the scenario validated, its
    model's profile and its accuracy source read, and each checked against the others. Every
    command that takes a scenario reads it here, so they all plan the same problem."""
    from adaptive_resnet.system import load_scenario

    return Problem(load_scenario(path))


@numba.njit(cache=True)
def compute_seconds(macs, speed_macs):
    """Eq. 9: a unit's compute time, its multiplications over the device's speed. The one home
    of the rule: the route formulas below and the runtime's device emulation call it."""
    return macs / speed_macs


@numba.njit(cache=True)
def transfer_seconds(nbytes, rate_bps):
    """Eq. 10/11: the time to send ``nbytes`` over a link of ``rate_bps``. The one home of the
    rule: the route formulas below and the runtime's link emulation call it."""
    return nbytes * BITS_PER_BYTE / rate_bps


@numba.njit(cache=True)
def device_energy_j(compute_s, transmit_s, compute_w, transmit_w):
    """Eq. 19 for one device: compute time x P_c plus the time it spends *sending* x P_t (the
    sender pays). The route formulas below and the runtime's energy accounting call it."""
    return compute_s * compute_w + transmit_s * transmit_w


@numba.njit(cache=True)
def route_latency(devices, macs, output_bytes, speed_macs, rate_bps):
    """The formula of :meth:`Problem.latency_s`, compiled (the heuristics ask it for every new
    route): compute times (Eq. 9), then transfers between consecutive units on different
    devices (Eq. 10/11; a device sending to itself costs nothing)."""
    compute = 0.0
    for u in range(devices.shape[0]):
        compute += compute_seconds(macs[u], speed_macs[devices[u]])
    transfer = 0.0
    for u in range(devices.shape[0] - 1):
        if devices[u] != devices[u + 1]:
            transfer += transfer_seconds(output_bytes[u], rate_bps[devices[u], devices[u + 1]])
    return compute + transfer


@numba.njit(cache=True)
def route_usage(devices, macs, memory_bytes, output_bytes, speed_macs, rate_bps, compute_w, transmit_w):
    """One request's (memory, MACs, energy) per device on ``devices`` (Eq. 13, 14, 19; weights
    not included), compiled: :meth:`Problem.route_costs` reads it, and the route search of ``fast`` checks routes with
    it inside its own compiled loop (:func:`~adaptive_resnet.planning.routing.capacity_route`)."""
    N = speed_macs.shape[0]
    memory, used, energy = np.zeros(N), np.zeros(N), np.zeros(N)
    for u in range(devices.shape[0]):
        k = devices[u]
        used[k] += macs[u]
        memory[k] += memory_bytes[u]
        sent_s = 0.0
        if u + 1 < devices.shape[0] and devices[u + 1] != k:  # Eq. 10/11, paid by the sender
            sent_s = transfer_seconds(output_bytes[u], rate_bps[k, devices[u + 1]])
        energy[k] += device_energy_j(compute_seconds(macs[u], speed_macs[k]), sent_s, compute_w, transmit_w)
    return memory, used, energy


@numba.njit(cache=True)
def _route_costs(devices, macs, memory_bytes, output_bytes, skip_in, speed_macs, rate_bps, compute_w, transmit_w):
    """:meth:`Problem.route_costs` in one compiled call, from the formulas above: (latency,
    memory, MACs, energy, bytes sent between consecutive units, bytes sent over skips). In
    numpy around them it took ~35 us a route, and a fast solve meets ~60 new routes."""
    memory, used, energy = route_usage(devices, macs, memory_bytes, output_bytes, speed_macs, rate_bps, compute_w, transmit_w)
    direct, skip = 0.0, 0.0
    for u in range(devices.shape[0] - 1):
        if devices[u] != devices[u + 1]:
            if skip_in[u + 1]:
                skip += output_bytes[u]
            else:
                direct += output_bytes[u]
    return route_latency(devices, macs, output_bytes, speed_macs, rate_bps), memory, used, energy, direct, skip


@numba.njit(cache=True)
def weights_to_host(devices, units, weight_bytes, hosted):
    """Per device, the weights a route adds where its units are not hosted yet (a unit's
    weights count once on each device that hosts it, in ``shared-weights`` mode)."""
    out = np.zeros(hosted.shape[1])
    for u in range(devices.shape[0]):
        if not hosted[units[u], devices[u]]:
            out[devices[u]] += weight_bytes[units[u]]
    return out


def _read_only(array: np.ndarray) -> np.ndarray:
    array.setflags(write=False)
    return array
