"""Which machines run one model together: the hostfile, parsed and checked.

The format is mlx.launch's JSON hostfile (what ``mlx.distributed_config`` writes),
so one file serves both::

    {"backend": "ring", "envs": ["FOO=1"],
     "hosts": [{"ssh": "mac-a.local", "ips": ["10.0.0.1"]},
               {"ssh": "mac-b.local", "ips": ["10.0.0.2"], "python": "/opt/la/bin/python"}]}

plus a few optional keys mlx.launch ignores: ``mode`` (auto | tensor | pipeline),
``port`` (first ring port), ``python`` and ``cwd`` (how to start workers over ssh),
``timeout_s`` (how long a silent rank may stall a step). A plain list of hosts, or a
comma-separated string such as ``127.0.0.1,127.0.0.1``, works too.

The first host is rank 0: this machine, the one running the engine.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from dataclasses import dataclass, field, replace
from pathlib import Path

from engine.errors import EngineError

MODES = ("auto", "tensor", "pipeline")
BACKENDS = ("ring", "jaccl", "jaccl-ring", "nccl")
LOCAL_NAMES = ("127.0.0.1", "localhost", "::1")
DEFAULT_PORT = 32323  # mlx.launch's default starting port
DEFAULT_TIMEOUT_S = 120.0


class HostfileError(EngineError):
    """The hostfile is missing, malformed or names a setup that cannot work."""


@dataclass(frozen=True)
class Host:
    name: str  # what ssh connects to (``ssh`` in the hostfile)
    ips: tuple[str, ...]  # addresses the ring backend talks over
    python: str | None = None  # interpreter that has lookahead there
    rdma: tuple[str | None, ...] = ()  # jaccl: RDMA device towards each rank

    @property
    def local(self) -> bool:
        """Started as a child process here, not over ssh (like mlx.launch)."""
        return self.name in LOCAL_NAMES

    @property
    def ip(self) -> str:
        return self.ips[0]


@dataclass(frozen=True)
class HostConfig:
    hosts: tuple[Host, ...]
    backend: str = "ring"
    envs: tuple[str, ...] = ()
    mode: str = "auto"
    port: int = 0  # 0: free ports when every host is loopback, else DEFAULT_PORT
    python: str | None = None
    cwd: str | None = None
    timeout_s: float = DEFAULT_TIMEOUT_S
    source: str = ""
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def size(self) -> int:
        return len(self.hosts)

    @property
    def all_local(self) -> bool:
        return all(h.local for h in self.hosts)

    def describe(self, rank: int) -> str:
        h = self.hosts[rank]
        return f"rank {rank} ({h.name})" if h.name == h.ip else f"rank {rank} ({h.name}, {h.ip})"


def load_hosts(spec: str | Path | HostConfig, strict: bool = True, **overrides) -> HostConfig:
    """Parse and check a hostfile path, or a comma-separated host list.

    ``strict=False`` skips the per-host checks (name resolution, rank 0 is this
    machine) so that ``check_hosts`` can report them host by host."""
    if isinstance(spec, HostConfig):
        config = spec
    else:
        text = str(spec).strip()
        path = Path(text).expanduser()
        if path.is_file():
            config = _from_file(path)
        elif text.endswith(".json") or "/" in text:
            raise HostfileError(f"hostfile {text} does not exist")
        elif text:
            names = [h.strip() for h in text.split(",")]
            config = HostConfig(tuple(_host({"ssh": n}, i) for i, n in enumerate(names)))
            config = replace(config, source=text)
        else:
            raise HostfileError("no hosts given")
    if overrides:
        config = replace(config, **overrides)
    return validate(config) if strict else _check_settings(config)


def _from_file(path: Path) -> HostConfig:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError) as e:
        raise HostfileError(f"cannot read hostfile {path}: {e}") from None
    except json.JSONDecodeError as e:
        raise HostfileError(f"hostfile {path} is not valid JSON ({e})") from None
    top = data if isinstance(data, dict) else {"hosts": data}
    hosts = top.get("hosts")
    if not isinstance(hosts, list):
        raise HostfileError(f"hostfile {path}: 'hosts' must be a list")
    envs = top.get("envs", [])
    if not isinstance(envs, list) or not all(isinstance(e, str) and "=" in e for e in envs):
        raise HostfileError(f"hostfile {path}: 'envs' must be a list of NAME=value strings")
    try:
        timeout = float(top.get("timeout_s", DEFAULT_TIMEOUT_S))
        port = int(top.get("port", 0))
    except (TypeError, ValueError):
        raise HostfileError(f"hostfile {path}: 'timeout_s' and 'port' must be numbers") from None
    known = {"hosts", "backend", "envs", "mode", "port", "python", "cwd", "timeout_s"}
    return HostConfig(
        hosts=tuple(_host(h, i, path) for i, h in enumerate(hosts)),
        backend=str(top.get("backend") or "ring"),
        envs=tuple(envs),
        mode=str(top.get("mode", "auto")),
        port=port,
        python=top.get("python"),
        cwd=top.get("cwd"),
        timeout_s=timeout,
        source=str(path),
        extra={k: v for k, v in top.items() if k not in known},
    )


def _host(entry, index: int, path: Path | None = None) -> Host:
    where = f"hostfile {path}" if path else "hosts"
    if isinstance(entry, str):
        entry = {"ssh": entry}
    if not isinstance(entry, dict) or not isinstance(entry.get("ssh"), str) or not entry["ssh"]:
        raise HostfileError(f"{where}: host {index} needs an 'ssh' name")
    ips = entry.get("ips") or []
    if isinstance(ips, str):
        ips = [ips]
    if not isinstance(ips, list) or not all(isinstance(i, str) for i in ips):
        raise HostfileError(f"{where}: host {entry['ssh']}: 'ips' must be a list of addresses")
    return Host(
        name=entry["ssh"],
        ips=tuple(ips),
        python=entry.get("python"),
        rdma=tuple(entry.get("rdma") or ()),
    )


def validate(config: HostConfig) -> HostConfig:
    """Resolve addresses and refuse setups that cannot work, saying why."""
    _check_settings(config)
    hosts = tuple(resolve(h) for h in config.hosts)
    if config.backend.startswith("jaccl"):
        _check_rdma(hosts, ring=config.backend == "jaccl-ring")
    if not is_this_machine(hosts[0].ip):
        raise HostfileError(
            f"the first host ({hosts[0].name}, {hosts[0].ip}) must be this machine: "
            "rank 0 runs the engine here"
        )
    return replace(config, hosts=hosts)


def _check_settings(config: HostConfig) -> HostConfig:
    if config.size < 2:
        raise HostfileError("a distributed run needs at least 2 hosts (the first is this machine)")
    if config.mode not in MODES:
        raise HostfileError(f"mode {config.mode!r}: use one of {', '.join(MODES)}")
    if config.backend not in BACKENDS:
        raise HostfileError(f"backend {config.backend!r}: use one of {', '.join(BACKENDS)}")
    if config.timeout_s <= 0:
        raise HostfileError("timeout_s must be positive")
    return config


def resolve(host: Host) -> Host:
    """The host with its ring address (its ``ips``, else its name resolved)."""
    if host.ips:
        for ip in host.ips:
            try:
                ipaddress.ip_address(ip)
            except ValueError:
                raise HostfileError(f"host {host.name}: {ip!r} is not an IP address") from None
        return host
    try:
        ipaddress.ip_address(host.name)
        return replace(host, ips=(host.name,))
    except ValueError:
        pass
    if host.name == "localhost":
        return replace(host, ips=("127.0.0.1",))
    try:
        infos = socket.getaddrinfo(host.name, None, socket.AF_INET, socket.SOCK_STREAM)
    except OSError as e:
        raise HostfileError(
            f"host {host.name} is unreachable: cannot resolve its name ({e.strerror or e}); "
            "add its address under 'ips'"
        ) from None
    return replace(host, ips=(infos[0][4][0],))


def _check_rdma(hosts: tuple[Host, ...], ring: bool) -> None:
    n = len(hosts)
    for i, h in enumerate(hosts):
        if len(h.rdma) != n or h.rdma[i] is not None:
            raise HostfileError(
                f"host {h.name}: jaccl needs 'rdma' with one device per host and null for itself"
            )
        peers = ((i - 1) % n, (i + 1) % n) if ring else range(n)
        missing = [hosts[j].name for j in peers if j != i and h.rdma[j] is None]
        if missing:
            raise HostfileError(f"host {h.name}: no RDMA device listed towards {missing[0]}")


def is_this_machine(ip: str) -> bool:
    """True when ip is one of this machine's addresses (we can listen on it)."""
    try:
        addr = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if addr.is_loopback:
        return True
    family = socket.AF_INET6 if addr.version == 6 else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        try:
            s.bind((ip, 0))
        except OSError:
            return False
    return True


def pick_ports(config: HostConfig) -> list[int]:
    """One ring port per rank. On loopback-only setups (tests, benchmarks) ask the
    OS for free ones so concurrent runs on one machine do not collide."""
    if config.port == 0 and config.all_local:
        socks, ports = [], []
        try:
            for _ in config.hosts:
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.bind(("127.0.0.1", 0))
                socks.append(s)
                ports.append(s.getsockname()[1])
        finally:
            for s in socks:
                s.close()
        return ports
    base = config.port or DEFAULT_PORT
    return [base + r for r in range(config.size)]


def ring_hostfile(config: HostConfig, ports: list[int]) -> str:
    """The JSON the ring backend reads from MLX_HOSTFILE (same as mlx.launch writes)."""
    return json.dumps([[f"{h.ip}:{p}"] for h, p in zip(config.hosts, ports, strict=True)])
