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
    try:
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=num_cpus, include_dashboard=False, log_to_driver=False)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        raise UserInputError(f"cannot reach Ray at {address or 'a new local instance'}: {str(exc).splitlines()[0]}") from None
