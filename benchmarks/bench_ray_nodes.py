"""What crosses between Ray nodes: ``introscope.ray.introspect`` on a two-node cluster.

Starts two Ray nodes on this machine (``ray.cluster_utils.Cluster``: a head and a worker node,
each with its own raylet and object store, 1 CPU each, every server on the loopback interface),
then runs IUA and PFA over a dataset of ReLU responses (16 blocks of 1,000 rows x 64 units) with
``combine=1`` (every block's states go to the driver) and ``combine=4`` (combiner actors merge
them first). ``RayRunStats`` says, for each run, which node made each state the driver received
and how many bytes of states crossed from one node to another (block -> combiner, and -> the
driver). One machine, so it measures where Ray puts the work, not how long the network takes.

    .venv/bin/python benchmarks/bench_ray_nodes.py
    .venv/bin/python benchmarks/run.py ray_nodes [--quick]
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

#: rows x units of the responses, blocks, repeats of each configuration
ROWS, UNITS, BLOCKS, REPEATS = 16_000, 64, 16, 3


def _loopback_cluster():  # noqa: ANN202
    # As introscope.ray.init_local: every Ray server binds to the loopback interface.
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants
    from ray.cluster_utils import Cluster

    import ray

    ray_constants.ENABLE_RAY_CLUSTER = False
    node = {"num_cpus": 1, "object_store_memory": 150 * 2**20, "node_ip_address": "127.0.0.1"}
    cluster = Cluster(initialize_head=True, head_node_args={**node, "include_dashboard": False})
    cluster.add_node(**node)
    ray.init(address=cluster.address, log_to_driver=False)
    cluster.wait_for_nodes()
    return ray, cluster


def run(quick: bool = False) -> dict:
    """Entry point for benchmarks/run.py."""
    import introscope.ray as iray
    from introscope.introspectors import IUA, PFA

    rows, repeats = (4_000, 1) if quick else (ROWS, REPEATS)
    rng = np.random.default_rng(0)
    x = np.maximum(rng.standard_normal((rows, UNITS)).astype(np.float32), 0)
    x[:, :4] = 0  # dead units
    if "ray" in sys.modules and sys.modules["ray"].is_initialized():
        sys.modules["ray"].shutdown()
    start = time.perf_counter()
    ray, cluster = _loopback_cluster()
    out: dict = {"cluster_start_s": time.perf_counter() - start, "runs": []}
    try:
        driver = ray.get_runtime_context().get_node_id()
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        out["nodes"] = len(nodes)
        out["addresses"] = sorted({n["NodeManagerAddress"] for n in ray.nodes()})
        ds = ray.data.from_numpy(x).repartition(BLOCKS).materialize()
        for _ in range(repeats):
            for combine in (1, 4):
                t = time.perf_counter()
                _, stats = iray.introspect(ds, [IUA, PFA], combine=combine, return_stats=True)
                out["runs"].append(
                    {
                        "combine": combine,
                        "seconds": time.perf_counter() - t,
                        "states": sum(stats.states_by_node.values()),
                        "states_from_driver_node": stats.states_by_node.get(driver, 0),
                        "state_bytes": sum(map(sum, stats.state_bytes)),
                        "combiner_remote_bytes": stats.combiner_remote_bytes,
                        "driver_remote_bytes": stats.driver_remote_bytes,
                    }
                )
    finally:
        ray.shutdown()
        cluster.shutdown()
    lines = [
        f"Ray on 2 local nodes ({', '.join(out['addresses'])}; started in "
        f"{out['cluster_start_s']:.1f} s), IUA + PFA over {rows:,} x {UNITS} in {BLOCKS} blocks: "
        "combine | states the driver got (from its own node) | bytes of those states | bytes "
        "crossing nodes: block -> combiner + -> driver"
    ]
    for r in out["runs"]:
        lines.append(
            f"  combine={r['combine']}: {r['states']} ({r['states_from_driver_node']}) | "
            f"{r['state_bytes']:,} | {r['combiner_remote_bytes']:,} + "
            f"{r['driver_remote_bytes']:,} ({r['seconds']:.1f} s)"
        )
    out["summary"] = lines
    return out


if __name__ == "__main__":
    print("\n".join(run(quick="--quick" in sys.argv)["summary"]))
