"""What is left of each device's memory, compute and energy while a plan is built request by
request: the bookkeeping that ``fast``, ``exact`` (its rounding and local search) and column
generation share."""

from __future__ import annotations

import numba
import numpy as np

from adaptive_resnet.planning.problem import Problem, weights_to_host
from adaptive_resnet.planning.routing import FIT_TOLERANCE, route_overflow


class Residual:
    """Remaining memory, compute and energy per device while requests are placed."""

    def __init__(self, problem: Problem) -> None:
        self.p = problem
        self.memory = problem.memory_limit_bytes.copy()
        self.compute = problem.compute_limit_macs.copy()
        self.energy = problem.energy_limit_j.copy()
        self.hosted = np.zeros((len(problem.units), len(problem.devices)), bool)

    def fits(self, cand_index: int, devices: np.ndarray) -> bool:
        """Whether the route fits what is left: no resource of any device overflows by more than
        the tolerance (:func:`~adaptive_resnet.planning.routing.route_overflow`)."""
        p, cand = self.p, self.p.candidates[cand_index]
        costs = p.route_costs(cand_index, devices)
        return _fits(np.asarray(devices, np.int64), cand.units, p.weight_bytes, self.hosted, p.shared_weights, costs.memory_bytes,
                     costs.macs, costs.energy_j, self.memory, self.compute, self.energy)

    def could_fit(self, cand) -> bool:
        """A necessary condition for any route of ``cand`` to fit: the devices' remaining compute
        in total covers its multiplications, and every unit fits alone on some device. It
        spares the route search for drop sets that cannot fit (most of a hopeless request's)."""
        p = self.p
        return _could_fit(cand.macs, cand.memory_bytes, cand.units, p.weight_bytes, self.hosted, p.shared_weights,
                          self.compute, self.memory, p.available)

    def take(self, cand_index: int, devices: np.ndarray) -> None:
        p, cand = self.p, self.p.candidates[cand_index]
        costs = p.route_costs(cand_index, devices)
        _take(np.asarray(devices, np.int64), cand.units, p.weight_bytes, self.hosted, p.shared_weights, costs.memory_bytes,
              costs.macs, costs.energy_j, self.memory, self.compute, self.energy)


# fits and take run for nearly every route a greedy pass weighs (~1,400 calls in a fast solve
# at N = 30, R = 30); compiled, without the arrays numpy builds around them, they cost a few us each.
@numba.njit(cache=True)
def _memory_added(devices, units, weight_bytes, hosted, shared, memory):
    """The memory a route adds per device: its activations (``memory``, from
    :meth:`~adaptive_resnet.planning.problem.Problem.route_costs`) and, in ``shared-weights``
    mode, the weights of the units it hosts anew."""
    return memory + weights_to_host(devices, units, weight_bytes, hosted) if shared else memory


@numba.njit(cache=True)
def _fits(devices, units, weight_bytes, hosted, shared, memory, macs, energy, memory_left, compute_left, energy_left):
    """:meth:`Residual.fits`: what the route adds against the one fit rule."""
    memory = _memory_added(devices, units, weight_bytes, hosted, shared, memory)
    return route_overflow(memory, macs, energy, memory_left, compute_left, energy_left).max() <= FIT_TOLERANCE


@numba.njit(cache=True)
def _take(devices, units, weight_bytes, hosted, shared, memory, macs, energy, memory_left, compute_left, energy_left):
    """:meth:`Residual.take`, in place: what the route adds leaves the devices, its units become hosted."""
    memory_left -= _memory_added(devices, units, weight_bytes, hosted, shared, memory)
    compute_left -= macs
    energy_left -= energy
    for u in range(devices.shape[0]):
        hosted[units[u], devices[u]] = True


@numba.njit(cache=True)
def _could_fit(macs, activations, units, weight_bytes, hosted, shared, compute, memory, live):
    """:meth:`Residual.could_fit`, compiled (asked for most drop sets a request tries)."""
    tol = 1 + 1e-9
    total = 0.0
    for k in range(compute.shape[0]):
        if live[k]:
            total += compute[k]
    if macs.sum() > total * tol:
        return False
    for u in range(macs.shape[0]):
        fits_somewhere = False
        for k in range(compute.shape[0]):
            need = activations[u] + (weight_bytes[units[u]] if shared and not hosted[units[u], k] else 0.0)
            if live[k] and macs[u] <= compute[k] * tol and need <= memory[k] * tol:
                fits_somewhere = True
                break
        if not fits_somewhere:
            return False
    return True
