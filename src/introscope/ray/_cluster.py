"""A local Ray cluster that listens on the loopback interface only."""

from __future__ import annotations

import os
from typing import Any

from introscope.exceptions import require

__all__ = ["ensure_started", "init_local"]

# Ray resolves "127.0.0.1" to the machine's network address (so that other nodes could join)
# unless this is off; off, every Ray server binds to the loopback interface.
_CLUSTER_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


def init_local(num_cpus: int | None = None, **kwargs: Any) -> Any:
    """Start a single-machine Ray cluster reachable from this machine only (no dashboard).

    Extra keyword arguments go to ``ray.init``. Returns what ``ray.init`` returns. To use a
    real cluster instead, call ``ray.init(address=...)`` yourself.

    Examples:
        Starts Ray, so this example is not run by the test suite:

        >>> import ray  # doctest: +SKIP
        >>> import introscope.ray  # doctest: +SKIP
        >>> _ = introscope.ray.init_local(num_cpus=2)  # doctest: +SKIP
        >>> ray.cluster_resources()["CPU"]  # doctest: +SKIP
        2.0
        >>> ray.shutdown()  # doctest: +SKIP
    """
    os.environ[_CLUSTER_ENV] = "0"  # inherited by the raylet, GCS and worker processes
    ray = require("ray", "ray", "introscope.ray")
    from ray._private import ray_constants

    # ray_constants read the variable when ray was first imported; it may have been earlier.
    ray_constants.ENABLE_RAY_CLUSTER = False
    kwargs.setdefault("include_dashboard", False)
    # Always a new local instance: without an address, ray.init joins the cluster named in
    # /tmp/ray/ray_current_cluster, which a stopped `ray start` or test cluster leaves behind.
    kwargs.setdefault("address", "local")
    kwargs.setdefault("_node_ip_address", "127.0.0.1")
    return ray.init(num_cpus=num_cpus, **kwargs)


def ensure_started() -> None:
    """Start Ray for ``introspect`` / ``score`` unless it is running: :func:`init_local` (the
    machine's CPUs and GPUs, loopback only, no dashboard), or, when ``RAY_ADDRESS`` is set,
    ``ray.init()``, which connects to that cluster as Ray itself would."""
    ray = require("ray", "ray", "introscope.ray")
    if ray.is_initialized():
        return
    if os.environ.get("RAY_ADDRESS"):
        ray.init()
    else:
        init_local()
