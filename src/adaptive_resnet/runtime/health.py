"""Which workers may take work: one state per device, and the heartbeat that changes it.

A worker is ``alive``, ``suspected`` (its actor exists but it missed a deadline or a heartbeat:
it takes no new work until it answers a heartbeat again, and then rejoins) or ``dead`` (its
actor died: dead for good). The state is kept here only; everything else asks.
"""

from __future__ import annotations

from enum import Enum


class State(str, Enum):
    ALIVE = "alive"
    SUSPECTED = "suspected"
    DEAD = "dead"


class Health:
    def __init__(self, actors: dict) -> None:
        self.actors = actors  # device -> actor handle
        self.state = dict.fromkeys(actors, State.ALIVE)
        self._pings: dict[str, object] = {}  # a worker's outstanding heartbeat ping

    def alive(self, name: str) -> bool:
        return self.state.get(name) is State.ALIVE

    def usable(self) -> list[str]:
        return [n for n, s in self.state.items() if s is State.ALIVE]

    def unusable(self) -> list[str]:
        return sorted(n for n, s in self.state.items() if s is not State.ALIVE)

    def any_alive(self) -> bool:
        return any(s is State.ALIVE for s in self.state.values())

    def suspect(self, name: str) -> None:
        """No new work for ``name`` until it answers a heartbeat (a dead worker stays dead)."""
        if self.state.get(name) is State.ALIVE:
            self.state[name] = State.SUSPECTED

    def dead(self, name: str) -> None:
        self.state[name] = State.DEAD

    def all_dead(self) -> None:
        """Shut down: nothing takes work any more."""
        for name in self.state:
            self.state[name] = State.DEAD

    def states(self) -> dict[str, str]:
        return {n: s.value for n, s in self.state.items()}

    def heartbeat(self, timeout_s: float) -> dict[str, str]:
        """Between steps: ping every worker not dead. An alive one has ``timeout_s`` to answer,
        else it is suspected; a suspected one is not waited for (its outstanding ping is checked,
        and it rejoins once that is answered), so a hung worker costs a step at most once; one
        whose actor died is dead. Returns each device's state."""
        self.ping(set(self.usable()), timeout_s, suspect_silent=True)
        self.ping({n for n, s in self.state.items() if s is State.SUSPECTED}, 0.0, suspect_silent=True)
        return self.states()

    def ping(self, names: set[str], timeout_s: float, suspect_silent: bool) -> None:
        """Ping ``names`` (a worker keeps its one outstanding ping) and wait up to ``timeout_s``:
        an answer makes a worker alive, a dead actor dead, and silence, with ``suspect_silent``,
        suspected. Pings run in the workers' "control" concurrency group, so a worker busy with
        a long call still answers; a hung one answers nothing."""
        import ray
        from ray.exceptions import RayActorError

        refs = {}
        for name in sorted(n for n in names if self.state.get(n) is not State.DEAD):
            ref = self._pings.get(name)
            if ref is None:
                ref = self._pings[name] = self.actors[name].ping.options(concurrency_group="control").remote()
            refs[ref] = name
        ready, _ = ray.wait(list(refs), num_returns=len(refs), timeout=timeout_s) if refs else ([], [])
        for ref, name in refs.items():
            if ref not in ready:
                if suspect_silent:
                    self.suspect(name)
                continue
            del self._pings[name]
            try:
                ray.get(ref, timeout=0)
                self.state[name] = State.ALIVE
            except RayActorError:
                self.dead(name)
