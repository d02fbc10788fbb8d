"""Link rates measured between workers on different nodes (a real network, not an emulated one)."""

from __future__ import annotations

from adaptive_resnet.runtime.health import Health

CONTROL_TIMEOUT_S = 30.0  # the most a probe round waits on a worker


def probe_rates(health: Health, nbytes: int = 1 << 18, timeout_s: float = CONTROL_TIMEOUT_S) -> dict[tuple[str, str], float]:
    """Measured Mb/s between live workers on different nodes.

    Each object is made on the sender's node and fetched by the receiver; it is over Ray's
    100 KB inlining limit, so it crosses the network as activations of that size do. Pairs on
    one node share memory, not a link, and are not probed. Probes run in rounds
    (:func:`probe_rounds`) in which no node sends or receives twice, so a step costs about
    2(N-1) fetch times for N nodes, not N(N-1), and no two probes share a node's link.
    """
    import ray

    live = {n: health.actors[n] for n in health.usable()}
    nodes = dict(zip(live, ray.get([a.node_id.remote() for a in live.values()], timeout=timeout_s), strict=True))
    rates = {}
    for pairs in probe_rounds(nodes):
        made = [live[src].blob.remote(nbytes) for src, _ in pairs]
        ray.wait(made, num_returns=len(made), fetch_local=False, timeout=timeout_s)  # made, not pulled to the driver
        seconds = ray.get([live[dst].fetch_s.remote([ref]) for (_, dst), ref in zip(pairs, made, strict=True)], timeout=timeout_s)
        for pair, s in zip(pairs, seconds, strict=True):
            rates[pair] = nbytes * 8 / max(s, 1e-6) / 1e6
    return rates


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
