"""An EngineService whose models run across the hosts of a hostfile.

Rank 0 is this process: the engine thread, the event stream, prompt caches and
drafters stay exactly as in ``EngineService``, so the CLI, server and app use it
unchanged. Only where weights go differs (``_load_model``), plus three duties:
park the workers after each command, turn a lost rank into a clear ``Failed``
and forget the models it held, and stop the workers when the service closes.
After a lost rank, models load on this machine alone (when they fit).
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.distributed.cluster import Cluster
from engine.distributed.hostfile import HostConfig, load_hosts
from engine.service import EngineService

log = logging.getLogger(__name__)
_COMM_ERRORS = ("[ring]", "[jaccl]", "[nccl]", "[mpi]")


class DistributedEngineService(EngineService):
    def __init__(self, hosts: str | Path | HostConfig, **kwargs):
        """``hosts``: a hostfile path, a comma-separated host list or a HostConfig.
        Checked now (HostfileError); the hosts are linked at the first load."""
        self.hosts = load_hosts(hosts)
        super().__init__(**kwargs)
        self.cluster = Cluster(self.hosts)
        self._depth = 0
        disk = getattr(self, "prompt_cache_disk", None)
        if disk is not None and disk.enabled:  # a saved cache would hold rank 0's KV slice only
            log.warning("prompt caches on disk are off for models spread across hosts")
            disk.enabled = False

    @property
    def cache_prompts(self) -> bool:
        return False

    @cache_prompts.setter
    def cache_prompts(self, enabled: bool) -> None:
        if enabled:
            log.warning("prompt caches on disk are off for models spread across hosts")

    # ------------------------------------------------------------ engine thread

    def _load_model(self, name, settings, progress):
        from engine.distributed.load import load_alone, load_distributed

        if self.cluster.dead:
            return load_alone(name, settings, progress)
        return load_distributed(self.cluster, name, settings, progress)

    def _load(self, rid, name, settings):
        if self.cluster.dead:
            self._forget_distributed()
        with self._turn():
            return super()._load(rid, name, settings)

    def _generate(self, command, cancel) -> None:
        with self._turn():
            super()._generate(command, cancel)

    def _unload(self, command) -> None:
        with self._turn():
            super()._unload(command)
            self.cluster.sync()

    def _park(self) -> None:
        self.cluster.close()
        super()._park()

    @contextmanager
    def _turn(self) -> Iterator[None]:
        """One command's use of the group: a lost rank becomes a clear error, and the
        workers park when the outermost command ends."""
        self._depth += 1
        try:
            yield
        except RuntimeError as e:
            if not self.cluster.started or not (self.cluster.dead or _comm_error(e)):
                raise
            raise self.cluster.lost(e) from None
        finally:
            self._depth -= 1
            if self.cluster.dead:
                self._forget_distributed()
            elif self._depth == 0:
                self.cluster.park()

    def _forget_distributed(self) -> None:
        for key, loaded in list(self._models.items()):
            if "distributed" in loaded.extras:
                del self._models[key]
                if self._cache_store is not None:
                    self._cache_store.drop(loaded)


def _comm_error(e: BaseException) -> bool:
    return str(e).startswith(_COMM_ERRORS)


def make_service(hosts: str | Path | HostConfig | None = None, **kwargs) -> EngineService:
    """The service for a command line: across hosts when a hostfile is given."""
    if hosts:
        return DistributedEngineService(hosts, **kwargs)
    return EngineService(**kwargs)
