"""One model across several machines, on MLX's own distributed layer.

Public API (for the CLI, the server and the app's Distributed settings):

- ``load_hosts(spec) -> HostConfig``: parse and check a hostfile (mlx.launch's
  JSON format) or a comma-separated host list; raises ``HostfileError``.
- ``check_hosts(spec, timeout_s=20) -> list[HostStatus]``: per host, reachable?,
  lookahead version, physical memory, and a one-line message ("ok: ..." or what is
  wrong). Blocks: call it off the GUI thread.
- ``DistributedEngineService(hosts, **EngineService kwargs)``: an EngineService
  whose models run across the hosts (rank 0 = this process).
- ``make_service(hosts=None, **kwargs)``: that, or a plain EngineService.
- ``can_link_hosts() -> bool``: False once this process has linked hosts (MLX
  builds its group once per process): other hosts, or re-linking after a lost rank,
  need a restart.

Modules: hostfile (parsing), probe (host facts, check_hosts), launch (worker
processes), protocol (the per-step header), sharding (each rank's part of a
model), model (rank 0's body wrapper), timing (communication share), cluster
(rank 0's group and failure handling), load, service, worker (ranks 1..N-1).
"""

from __future__ import annotations

from engine.distributed.hostfile import HostConfig, HostfileError, load_hosts
from engine.distributed.probe import HostStatus, check_hosts

__all__ = [
    "DistributedEngineService",
    "HostConfig",
    "HostStatus",
    "HostfileError",
    "can_link_hosts",
    "check_hosts",
    "load_hosts",
    "make_service",
]


def __getattr__(name: str):
    # The service pulls in mlx and the engine service: only on demand.
    if name in ("DistributedEngineService", "make_service"):
        from engine.distributed import service

        return getattr(service, name)
    if name == "can_link_hosts":
        from engine.distributed.cluster import can_link_hosts

        return can_link_hosts
    raise AttributeError(name)
