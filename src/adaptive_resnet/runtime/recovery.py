"""What happens to a request whose chain broke: which workers to route around, the shortcut
through a lost worker's droppable blocks, and the re-plan without the lost workers.

When a worker dies or hangs, a request whose missing units are all identity blocks is completed
through their shortcuts: the activation that reached the lost worker's predecessor goes on to the
next live worker with those blocks' DC dropped, if that drop set still meets the accuracy
threshold (the paper's resilience argument, Section III). Other requests are re-planned on the
devices still answering (:func:`plan_for`) and sent again.
"""

from __future__ import annotations

import numpy as np

from adaptive_resnet.models.naming import Connection, DropPlan
from adaptive_resnet.planning.step_plan import StepPlan
from adaptive_resnet.runtime.chains import Call, submit

HEARTBEAT_S = 2.0  # a worker that does not answer a ping within this is suspected


def unusable(cluster, chains: dict[int, list[Call]], failed: list[int], missed: set[int]) -> list[str]:
    """Workers to route around after ``failed`` requests: those on their chains whose actors died
    (dead for good) and, for a request that missed its deadline (``missed``), the first worker of
    its chain that had not answered (suspected until a heartbeat hears from it again)."""
    import ray

    health = cluster.health
    used = {call.device for i in failed if i in chains for call in chains[i]}
    health.ping({d for d in used if health.alive(d)}, HEARTBEAT_S, suspect_silent=False)
    for i in failed:
        if i not in chains or i not in missed:
            continue
        refs = [call.ref for call in chains[i]]
        done, _ = ray.wait(refs, num_returns=len(refs), timeout=0)
        stuck = next((call.device for call in chains[i] if call.ref not in done), None)
        if stuck is not None:
            health.suspect(stuck)
    return sorted(d for d in used if not health.alive(d))


def shortcut(cluster, x, chain: list[Call], drops: DropPlan, deadline_unix: float | None = None):
    """Resubmit a request whose chain hit lost workers, dropping their units' DC, if allowed.

    Returns (new chain, new drops) or None when a lost unit is not an identity block (its DC drop
    would still need a device) or the drop set misses the accuracy threshold.
    """
    health, profile = cluster.health, cluster.problem.profile
    first = next((k for k, call in enumerate(chain) if not health.alive(call.device)), None)
    if first is None:
        return None  # it failed for another reason than a lost worker on its way
    lost = [u for call in chain[first:] if not health.alive(call.device) for u in call.units]
    ends = (profile.unit_names[0], profile.unit_names[-1])  # the stem and the head cannot be dropped
    already = set(drops.blocks())
    if any(u in ends or u in already or profile.kept_cost(u, Connection.DC) != (0, 0) for u in lost):
        return None
    new_drops = DropPlan(drops.drops | {(u, Connection.DC) for u in lost})
    if not any(c.plan == new_drops for c in cluster.problem.candidates):
        return None  # not allowed: below the threshold (or unknown to the accuracy source)
    segments: list[tuple[str, list[str]]] = []
    for call in chain[first:]:
        if not health.alive(call.device):
            continue
        if segments and segments[-1][0] == call.device:
            segments[-1][1].extend(call.units)
        else:
            segments.append((call.device, list(call.units)))
    source, previous = (x, None) if first == 0 else (chain[first - 1].ref, chain[first - 1].device)
    return submit(cluster, source, segments, new_drops, previous, deadline_unix), new_drops


def without(problem, dead: list[str]):
    """``problem`` with the ``dead`` devices unavailable."""
    available = np.array([name not in dead for name in problem.devices])
    return problem.derive(rates_mbps=problem.rate_bps / 1e6, requests=problem.requests, energy_j=problem.energy_limit_j,
                          available=available & problem.available, speeds_gmacs=problem.speed_macs / 1e9)


def plan_for(problem, solver: str = "fast", dead: list[str] | None = None) -> StepPlan:
    """The plan for ``problem``, with ``dead`` devices excluded."""
    from adaptive_resnet.planning import admit

    if dead:
        problem = without(problem, dead)
    return StepPlan.from_solution(admit(problem, solver), problem)
