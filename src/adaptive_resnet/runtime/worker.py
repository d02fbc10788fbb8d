"""One device's share of the network: a plain class, wrapped as a Ray actor by the cluster.

A worker builds the model's skeleton and loads, from the checkpoint, only the weights of the
units it is asked to run (lazily, so a new placement needs no restart). ``run`` first waits out
the emulated transfer of its input over the link from the previous device (size / rate, with
the size measured on the tensor itself), then runs its units under the request's drop plan.

Activations travel as numpy arrays (:func:`to_wire`, :func:`from_wire`): Ray stores a numpy
array in its shared-memory object store and hands the next worker a zero-copy view, while a
torch tensor is pickled and unpickled through copies (measured here: a chain of four calls
passing 3.2 MB took 52 ms as tensors, 20 ms as arrays).
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path

from adaptive_resnet.models.naming import DropPlan


def to_wire(t):
    """A tensor as what travels between workers: a numpy array sharing its memory."""
    return t.detach().numpy()


def from_wire(a):
    """A received activation as a tensor, without a copy (the array may be a read-only view of
    the object store: no unit writes into its input, torchvision's blocks add into their own
    branch output)."""
    import warnings

    import numpy as np
    import torch

    if isinstance(a, torch.Tensor):
        return a
    with warnings.catch_warnings():  # torch warns once that a read-only array stays read-only
        warnings.simplefilter("ignore", UserWarning)
        return torch.from_numpy(np.asarray(a))


def release_free_memory() -> None:
    """Give the heap's free memory back to the OS (glibc's ``malloc_trim``): workers keep freed
    blocks for reuse (``WORKER_MALLOC_ENV``), but freed weights would otherwise stay resident."""
    import ctypes
    import ctypes.util

    with contextlib.suppress(OSError, AttributeError):  # not glibc: nothing to trim this way
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").malloc_trim(0)


class DeviceWorker:
    def __init__(self, device: str, checkpoint: str | Path, threads: int = 1, unit_macs: dict | None = None,
                 emulated_speed_macs: float | None = None, time_dilation: float = 1.0) -> None:
        import torch

        from adaptive_resnet.train import TrainConfig, build_skeleton, load_checkpoint

        torch.set_num_threads(threads)
        self.device = device
        self.checkpoint = str(checkpoint)
        # A device holds the weights of the units it hosts, no more (the cost model's memory,
        # Eq. 1): the checkpoint is mapped, not read, and the skeleton has no storage ("meta"
        # tensors) until :meth:`load` gives a unit its weights.
        ckpt = load_checkpoint(checkpoint, mmap=True)
        self.model = build_skeleton(TrainConfig(**ckpt["config"])).eval()
        self._state = ckpt["model"]  # mapped, kept to load units on demand
        self.loaded: set[str] = set()
        self.busy_s = 0.0  # compute time as the device would take it, for energy accounting (see run)
        self.transfer_s = 0.0  # emulated inbound transfer time
        # Emulated inbound transfer time by the device that sent it: the sender pays transmit
        # energy (Eq. 19), so the controller charges each sender what its receivers waited.
        self.received_s: dict[str, float] = {}
        self.unit_macs = unit_macs or {}  # unit -> {"full" | "DC" | "SC": MACs per image}, from the profile
        self.macs_done = 0.0
        # Device emulation: a call's compute is stretched to what the device's speed (Eq. 9)
        # would take, when the host is faster; counted as busy time, as the device would be.
        self.emulated_speed_macs = emulated_speed_macs
        # Time dilation (as in network emulators, e.g. DieCast): every emulated duration runs
        # ``time_dilation`` times longer on the host, and the worker reports host seconds
        # divided by it, so a slow host's own costs shrink against the emulated ones.
        self.time_dilation = time_dilation

    def load(self, units: list[str]) -> list[str]:
        """Load the weights of ``units`` (only theirs) into the skeleton."""
        for name in units:
            if name in self.loaded:
                continue
            wanted = self.model.unit_state_dict(name)
            missing = [k for k in wanted if k not in self._state]
            if missing:
                raise KeyError(f"{self.checkpoint} lacks {missing[0]} needed for {name}")
            # Into the unit's own submodules, so no other module is touched (a whole-model
            # non-strict load gives every batch norm a counter). The tensors are copies in the
            # worker's memory: read from the file now (a placement's cost, not its first
            # request's), and independent of the file from then on.
            for prefix in self.model.unit_prefixes(name):
                part = {k[len(prefix):]: self._state[k].clone() for k in wanted if k.startswith(prefix)}
                self.model.get_submodule(prefix[:-1]).load_state_dict(part, assign=True)
            self.loaded.add(name)
        return sorted(self.loaded)

    def run(self, x, units: list[str], drops: DropPlan, inbound_rate_mbps: float | None = None, deadline_unix: float | None = None,
            sender: str | None = None):
        """Run ``units`` on ``x`` (after emulating its transfer from ``sender`` at ``inbound_rate_mbps``).

        A call that starts after ``deadline_unix`` (seconds since the epoch) is refused: its
        request has been given up on, completed another way or failed, and must not run late
        (a worker that hung and resumes works through its queue of such calls at once).

        Times come from the planner's formulas (:func:`~adaptive_resnet.planning.problem.transfer_seconds`,
        :func:`~adaptive_resnet.planning.problem.compute_seconds`): under emulation the worker
        waits them out and accounts them, so its energy is what the cost model charges; on a real
        device, compute is the measured time.
        """
        import torch

        from adaptive_resnet.planning.problem import compute_seconds, transfer_seconds

        if deadline_unix is not None and time.time() > deadline_unix:
            raise TimeoutError(f"{self.device}: the request's deadline passed before its call started")
        x = from_wire(x)
        if inbound_rate_mbps:
            delay = transfer_seconds(float(x.numel() * x.element_size()), inbound_rate_mbps * 1e6)
            time.sleep(delay * self.time_dilation)
            self.transfer_s += delay
            if sender is not None:
                self.received_s[sender] = self.received_s.get(sender, 0.0) + delay
        self.load(units)
        plan = drops
        t0 = time.perf_counter()
        with torch.no_grad():
            out = self.model.run_units(units, x, plan)
        macs = 0.0
        for unit in units:
            dropped = plan.dropped(unit)
            macs += self.unit_macs.get(unit, {}).get(dropped.value if dropped else "full", 0) * x.shape[0]
        if self.emulated_speed_macs:
            emulated_s = compute_seconds(macs, self.emulated_speed_macs)
            time.sleep(max(0.0, emulated_s * self.time_dilation - (time.perf_counter() - t0)))
            self.busy_s += emulated_s
        else:
            self.busy_s += (time.perf_counter() - t0) / self.time_dilation
        self.macs_done += macs
        return to_wire(out)

    def place(self, units: list[str]) -> list[str]:
        """Host exactly ``units``: load theirs, free the weights of every other loaded unit (its
        submodules go back to storage-less meta tensors; a later request that runs it loads it
        again). Returns the units now loaded."""
        freed = sorted(self.loaded - set(units))
        for name in freed:
            for prefix in self.model.unit_prefixes(name):
                self.model.get_submodule(prefix[:-1]).to_empty(device="meta")
            self.loaded.discard(name)
        if freed:
            release_free_memory()
        return self.load(units)

    def dilate(self, time_dilation: float) -> float:
        """Run emulated durations ``time_dilation`` times slower from now on."""
        self.time_dilation = time_dilation
        return time_dilation

    def weight_bytes(self) -> int:
        """Bytes of parameters and buffers this worker holds: its loaded units', the rest of the
        skeleton has no storage."""
        return sum(t.numel() * t.element_size() for t in self.model.state_dict().values() if not t.is_meta)

    def stats(self) -> dict:
        return {"device": self.device, "busy_s": self.busy_s, "transfer_s": self.transfer_s, "received_s": dict(self.received_s),
                "macs": self.macs_done, "loaded": sorted(self.loaded), "weight_bytes": self.weight_bytes()}

    def ping(self) -> str:
        return self.device

    def pid(self) -> int:
        import os

        return os.getpid()

    # -- link probes: an object made on one worker's node, fetched and timed on another's ------

    def blob(self, nbytes: int):
        import numpy as np

        return np.zeros(nbytes, np.uint8)

    def fetch_s(self, refs: list) -> float:
        """Seconds to fetch ``refs[0]`` (wrapped in a list, so Ray does not fetch it before the call)."""
        import ray

        t0 = time.perf_counter()
        ray.get(refs[0])
        return time.perf_counter() - t0

    def node_id(self) -> str:
        import ray

        return ray.get_runtime_context().get_node_id()
