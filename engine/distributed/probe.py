"""What a host runs, and whether the hosts of a hostfile can work together.

``python -m engine.distributed.probe`` prints this machine's facts as one JSON
line; ``check_hosts`` runs it on every host (over ssh, or locally for loopback
entries) and says, per host, whether it is reachable, what it runs and how much
memory it has. The app's Distributed settings call ``check_hosts`` for "Test
connection" (off the GUI thread: it blocks for up to ``timeout_s``).
"""

from __future__ import annotations

import json
import os
import platform
import shlex
import socket
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from engine.distributed.hostfile import (
    Host,
    HostConfig,
    HostfileError,
    is_this_machine,
    load_hosts,
    resolve,
)

# What must match across ranks for their collectives and weights to line up.
_MUST_MATCH = ("protocol", "lookahead", "mlx", "mlx_lm")


@dataclass(frozen=True)
class HostStatus:
    host: str
    reachable: bool
    version: str  # lookahead version there ("" when unknown)
    memory_gb: float  # physical memory there (0 when unknown)
    message: str  # one line for people: "ok: ..." or what is wrong and what to do
    rank: int = 0
    ip: str = ""
    mlx: str = ""
    backends: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return self.reachable and self.message.startswith("ok")


def lookahead_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lookahead")
    except PackageNotFoundError:
        return "unknown"


def local_info() -> dict:
    """This machine's facts (imports mlx: call after the engine package is imported)."""
    from importlib.metadata import PackageNotFoundError, version

    import mlx.core as mx

    from engine.distributed.protocol import PROTOCOL

    try:
        mlx_lm_version = version("mlx-lm")
    except PackageNotFoundError:
        mlx_lm_version = "missing"
    backends = []
    for b in ("ring", "jaccl", "nccl", "mpi"):
        try:
            if mx.distributed.is_available(b):
                backends.append(b)
        except (ValueError, RuntimeError):
            pass
    return {
        "protocol": PROTOCOL,
        "lookahead": lookahead_version(),
        "mlx": mx.__version__,
        "mlx_lm": mlx_lm_version,
        "python": platform.python_version(),
        "platform": f"{platform.system()}-{platform.machine()}",
        "hostname": socket.gethostname(),
        "memory_gb": round(total_memory_bytes() / 1e9, 2),
        "backends": backends,
    }


def total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def version_mismatch(here: dict, there: dict) -> str | None:
    """Why two hosts cannot run one model together, or None."""
    if all(here.get(k) == there.get(k) for k in _MUST_MATCH):
        return None

    def show(info: dict) -> str:
        return (
            f"lookahead {info.get('lookahead')}, mlx {info.get('mlx')}, mlx-lm {info.get('mlx_lm')}"
        )

    return (
        f"runs another version ({show(there)}; this machine: {show(here)}); "
        "install the same versions on every host"
    )


def worker_python(config: HostConfig, host: Host) -> str:
    """The interpreter to start there: the host's own, the hostfile's, or ours."""
    return host.python or config.python or sys.executable


def remote_argv(config: HostConfig, host: Host, script: str) -> list[str]:
    """argv that runs a shell script on host: ssh for remote hosts, bash for loopback."""
    if host.local:
        return ["/bin/bash", "-c", script]
    return [
        "ssh",
        "-o",
        "BatchMode=yes",  # never prompt for a password: fail with a message instead
        "-o",
        "ConnectTimeout=10",
        host.name,
        script,
    ]


def cd_prefix(config: HostConfig) -> str:
    cwd = config.cwd or (os.getcwd() if Path(os.getcwd()).is_dir() else None)
    return f"cd {shlex.quote(cwd)} 2>/dev/null; " if cwd else ""


def probe_host(config: HostConfig, rank: int, here: dict, timeout_s: float) -> HostStatus:
    host = config.hosts[rank]
    try:
        host = resolve(host)
    except HostfileError as e:
        return HostStatus(
            host.name, False, "", 0.0, str(e).replace(f"host {host.name} is ", ""), rank
        )
    if rank == 0 and not is_this_machine(host.ip):
        return HostStatus(
            host.name, True, "", 0.0,
            f"the first host must be this machine ({host.ip} is not one of its addresses)", rank,
        )  # fmt: skip
    python = worker_python(config, host)
    script = cd_prefix(config) + f"exec {shlex.quote(python)} -m engine.distributed.probe"
    base = dict(host=host.name, rank=rank, ip=host.ip)
    try:
        done = subprocess.run(
            remote_argv(config, host, script),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout_s,
        )
    except FileNotFoundError:
        return HostStatus(
            **base,
            reachable=False,
            version="",
            memory_gb=0.0,
            message="unreachable: ssh is not installed on this machine",
        )
    except subprocess.TimeoutExpired:
        return HostStatus(
            **base,
            reachable=False,
            version="",
            memory_gb=0.0,
            message=f"unreachable: no answer within {timeout_s:.0f} s",
        )
    info = _last_json(done.stdout)
    if info is None:
        err = _last_line(done.stderr) or f"exit status {done.returncode}"
        reachable = host.local or done.returncode != 255  # ssh's own failures exit 255
        if reachable:
            message = f"cannot run lookahead there with {python}: {err}"
        else:
            message = f"unreachable: {err}"
        return HostStatus(**base, reachable=reachable, version="", memory_gb=0.0, message=message)
    info_status = dict(
        **base,
        reachable=True,
        version=str(info.get("lookahead", "")),
        memory_gb=float(info.get("memory_gb", 0.0)),
        mlx=str(info.get("mlx", "")),
        backends=tuple(info.get("backends", ())),
    )
    if reason := version_mismatch(here, info):
        return HostStatus(**info_status, message=reason)
    if config.backend.split("-")[0] not in info.get("backends", ()):
        return HostStatus(
            **info_status,
            message=f"its mlx has no {config.backend} backend (it offers: "
            f"{', '.join(info.get('backends', ())) or 'none'})",
        )
    return HostStatus(
        **info_status,
        message=f"ok: lookahead {info.get('lookahead')}, mlx {info.get('mlx')}, "
        f"{info.get('memory_gb', 0):.0f} GB, {info.get('platform', '')}",
    )


def check_hosts(hostfile: str | Path | HostConfig, timeout_s: float = 20.0) -> list[HostStatus]:
    """One HostStatus per host, in rank order (blocks; any thread but the GUI's).

    A hostfile that cannot be used at all raises HostfileError with the reason.
    """
    config = load_hosts(hostfile, strict=False)
    here = local_info()
    with ThreadPoolExecutor(max_workers=min(8, config.size)) as pool:
        futures = [pool.submit(probe_host, config, r, here, timeout_s) for r in range(config.size)]
        return [f.result() for f in futures]


def _last_json(text: str) -> dict | None:
    for line in reversed(text.strip().splitlines()):
        try:
            value = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def _last_line(text: str) -> str:
    lines = [ln.strip() for ln in text.strip().splitlines() if ln.strip()]
    return lines[-1] if lines else ""


def main() -> int:
    print(json.dumps(local_info()), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
