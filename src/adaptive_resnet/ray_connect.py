"""Joining Ray: the runtime's workers and an experiment's seeds both need a cluster."""

from __future__ import annotations

from adaptive_resnet.errors import UserInputError


def connect(address: str | None, num_cpus: int) -> None:
    """Join the Ray cluster at ``address``, or start a local one of ``num_cpus`` CPUs; nothing
    when this process has joined one already. A cluster that cannot be reached is a one-line
    error, not Ray's traceback."""
    import ray

    if ray.is_initialized():
        return
    if address:
        _check_reachable(address)
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserInputError(f"cannot reach Ray at {address or 'a new local instance'}: {str(exc).splitlines()[0]}") from None


REACH_TIMEOUT_S = 5.0


def _check_reachable(address: str) -> None:
    """A one-line error, within ``REACH_TIMEOUT_S``, when nothing listens at ``address``
    (``host:port`` or ``ray://host:port``): Ray itself retries an unreachable cluster for
    minutes before it gives up. ``auto`` (the cluster this machine started) is left to Ray."""
    import socket

    if address == "auto":
        return
    where = address.removeprefix("ray://")
    host, sep, port = where.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise UserInputError(f"Ray address {address!r} is not host:port (or ray://host:port, or auto)")
    try:
        socket.create_connection((host, int(port)), timeout=REACH_TIMEOUT_S).close()
    except OSError as exc:
        raise UserInputError(f"cannot reach Ray at {address}: {exc.strerror or exc}") from None
