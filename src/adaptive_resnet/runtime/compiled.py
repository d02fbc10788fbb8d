"""Ray Compiled Graphs for the steady state: one request chain compiled once, then run over
shared-memory channels (~50 us a hop instead of ~1 ms a task).

Off by default: compiled actors busy-poll their channels, so on a machine with fewer cores than
workers they take compute from each other. An actor runs one compiled graph at a time, so the
cluster holds one, for the chain of the requests it serves now. At the first error the graph is
torn down and compiled graphs are switched off: those requests go the ordinary way
(:mod:`.chains`), which names failures, takes shortcuts and re-plans.
"""

from __future__ import annotations

import contextlib
import time

from adaptive_resnet.planning.step_plan import PlannedRequest, StepPlan
from adaptive_resnet.runtime.chains import answer, inbound_rate_mbps, request_input


class CompiledChains:
    def __init__(self, cluster, enabled: bool = False) -> None:
        self.cluster = cluster
        self.enabled = enabled
        self._graph = None  # (key, CompiledDAG)

    def teardown(self) -> None:
        if self._graph is not None:
            graph, self._graph = self._graph[1], None
            with contextlib.suppress(Exception):  # a graph whose actor died may fail to tear down; it is gone either way
                graph.teardown()

    def _graph_for(self, req: PlannedRequest):
        """The compiled graph for this route (and drop set), compiling it if it is not the held one."""
        from ray.dag import InputNode

        chain = req.segments()
        key = (tuple((d, tuple(u)) for d, u in chain), req.drops)
        if self._graph is not None and self._graph[0] == key:
            return self._graph[1]
        self.teardown()
        actors = self.cluster.actors
        with InputNode() as x:
            node, previous = x, None
            for device, units in chain:
                node = actors[device].run.bind(node, units, req.drops, inbound_rate_mbps(self.cluster, previous, device), None, previous)
                previous = device
        self._graph = (key, node.experimental_compile())
        return self._graph[1]

    def infer(self, images, plan: StepPlan, outcomes: list, pending: list[int], window: int = 4) -> list[int]:
        """Serve ``pending`` through compiled graphs, requests of one route together; returns the
        requests left unanswered."""
        import ray

        groups: dict[PlannedRequest, list[int]] = {}
        for i in pending:
            groups.setdefault(plan.request(i), []).append(i)  # every pending request is admitted
        left = []
        for req, members in groups.items():
            if not self.enabled or not all(self.cluster.health.alive(d) for d in req.devices()):
                left += members
                continue
            try:
                graph = self._graph_for(req)
                flying: list[tuple[int, object, float]] = []
                for k, i in enumerate(members):
                    flying.append((i, graph.execute(request_input(images, i)), time.perf_counter()))
                    if len(flying) >= window or k == len(members) - 1:  # a graph holds few executions in flight
                        while flying:
                            j, ref, started = flying.pop(0)
                            answer(self.cluster, outcomes[j], ray.get(ref), started)
            except Exception:  # noqa: BLE001  any failure of the compiled path: fall back, see above
                self.teardown()
                self.enabled = False
                left += [i for i in members if outcomes[i].logits is None]
        return left
