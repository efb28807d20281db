"""Starting ranks 1..N-1 and watching them, the way mlx.launch does.

Each worker is ``python -m engine.distributed.worker`` with mlx.launch's
environment (``MLX_RANK``, and ``MLX_HOSTFILE`` for the ring backend, written to a
temp file on that host), started by bash for loopback hosts and over ssh for the
others. Rank 0 is not launched: it is the process running the engine.

A worker talks back on stdout, one line each: a JSON ``ready`` line (with its
versions and memory) before it joins the group, ``h`` heartbeats while it works,
and a JSON ``error`` line if it fails. Its stdin is the wake-up line: parked
workers block on it instead of on a collective (the ring backend's receive loop
spins a core while it waits). Reader threads here never touch MLX.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable

from engine.distributed.hostfile import HostConfig
from engine.distributed.probe import cd_prefix, remote_argv, worker_python

log = logging.getLogger(__name__)

# Connects to rank 0's ring port if init has not finished in time: mlx's ring init
# blocks in accept() holding the GIL, so nothing in-process could ever unblock it.
_GUARD = (
    "import select, socket, sys\n"
    "ip, port, wait = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])\n"
    "if not select.select([sys.stdin], [], [], wait)[0]:\n"
    "    try:\n"
    "        socket.create_connection((ip, port), timeout=5).close()\n"
    "    except OSError:\n"
    "        pass\n"
)


def backend_env(
    config: HostConfig, rank: int, ports: list[int], ring_json: str
) -> tuple[dict[str, str], dict[str, str]]:
    """(plain variables, variables naming a file with this content) for one rank,
    as mlx.launch sets them for the configured backend."""
    env = {"MLX_RANK": str(rank), "LOOKAHEAD_BACKEND": config.backend.split("-")[0]}
    files: dict[str, str] = {}
    first = config.hosts[0].ip
    if config.backend == "ring":
        files["MLX_HOSTFILE"] = ring_json
    elif config.backend.startswith("jaccl"):
        env["MLX_JACCL_COORDINATOR"] = f"{first}:{ports[0]}"
        if config.backend == "jaccl-ring":
            env["MLX_JACCL_RING"] = "1"
        files["MLX_IBV_DEVICES"] = json.dumps([list(h.rdma) for h in config.hosts])
    elif config.backend == "nccl":
        env.update(NCCL_HOST_IP=first, NCCL_PORT=str(ports[0]), MLX_WORLD_SIZE=str(config.size))
    host = config.hosts[rank]
    sharing = sum(1 for h in config.hosts if h.local) if host.local else 1
    if rank and sharing > 1 and "OPENBLAS_NUM_THREADS" not in os.environ:
        # Several ranks on this machine (loopback runs): split the cores, or every
        # process's BLAS threads fight over all of them.
        env["OPENBLAS_NUM_THREADS"] = str(max(1, (os.cpu_count() or 1) // sharing))
    for item in config.envs:
        key, _, value = item.partition("=")
        env[key] = value
    return env, files


class WorkerProcess:
    """One launched rank and the threads reading what it says."""

    def __init__(
        self,
        config: HostConfig,
        rank: int,
        env: dict[str, str],
        files: dict[str, str],
        on_progress: Callable[[], None],
    ):
        self.rank = rank
        self.host = config.hosts[rank]
        self.describe = config.describe(rank)
        self.info: dict | None = None  # the ready line
        self.error: str | None = None  # the worker's own error line
        self.returncode: int | None = None
        self.last_heard = time.monotonic()
        self.ready = threading.Event()
        self.exited = threading.Event()
        self._stderr: deque[str] = deque(maxlen=40)
        self._on_progress = on_progress
        script = cd_prefix(config)
        for key, value in env.items():
            script += f"export {key}={shlex.quote(value)}; "
        for key, content in files.items():
            script += f'f=$(mktemp); printf %s {shlex.quote(content)} > "$f"; export {key}="$f"; '
        if files:
            script += "export LOOKAHEAD_OWN_FILES=1; "
        python = worker_python(config, self.host)
        script += f"exec {shlex.quote(python)} -m engine.distributed.worker"
        self.proc = subprocess.Popen(
            remote_argv(config, self.host, script),
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        threading.Thread(target=self._read_stdout, daemon=True, name=f"rank{rank}-out").start()
        threading.Thread(target=self._read_stderr, daemon=True, name=f"rank{rank}-err").start()

    @property
    def pid(self) -> int | None:
        """The worker's own pid on its host (ssh's pid is not it)."""
        return (self.info or {}).get("pid") or (self.proc.pid if self.host.local else None)

    def _read_stdout(self) -> None:
        for raw in self.proc.stdout:
            self.last_heard = time.monotonic()
            line = raw.decode(errors="replace").strip()
            if line == "h":
                self._on_progress()
                continue
            try:
                msg = json.loads(line)
            except json.JSONDecodeError:
                log.debug("%s: %s", self.describe, line)
                continue
            if msg.get("event") == "ready":
                self.info = msg
                self.ready.set()
            elif msg.get("event") == "error":
                self.error = str(msg.get("message", ""))
        self.returncode = self.proc.wait()
        self.exited.set()
        self.ready.set()  # stop anyone waiting for a ready line that will not come

    def _read_stderr(self) -> None:
        for raw in self.proc.stderr:
            line = raw.decode(errors="replace").rstrip()
            if line:
                self._stderr.append(line)
                log.debug("%s stderr: %s", self.describe, line)

    def last_words(self) -> str:
        """The most telling line the worker left: its error, else its last stderr line."""
        if self.error:
            return self.error
        for line in reversed(self._stderr):
            if not line.startswith("[ring]"):  # the ring backend's socket chatter
                return line
        return ""

    def exit_reason(self) -> str:
        code = self.returncode
        if code is None:
            return "still running"
        if code < 0:
            import signal

            try:
                return f"killed by {signal.Signals(-code).name}"
            except ValueError:
                return f"killed by signal {-code}"
        if code == 255 and not self.host.local:
            return f"ssh failed ({self.last_words() or 'connection lost'})"
        return f"exited with status {code}"

    def is_stopped(self) -> bool:
        """Whether the OS has it stopped (SIGSTOP, a debugger): a stall's likely cause."""
        if not self.pid or self.returncode is not None:
            return False
        ps = f"ps -o stat= -p {int(self.pid)}"
        argv = ps.split() if self.host.local else [*_ssh(self.host.name), ps]
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            return False
        return done.stdout.strip().startswith("T")

    def wake(self) -> None:
        try:
            self.proc.stdin.write(b"w\n")
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError):
            pass  # it is gone: the monitor reports it

    def close_stdin(self) -> None:
        with contextlib.suppress(BrokenPipeError, OSError):
            self.proc.stdin.close()

    def kill(self) -> None:
        """Stop it for sure (a stopped or hung worker does not read its stdin)."""
        if self.returncode is not None:
            return
        if not self.host.local and self.pid:
            # Ending ssh alone would not stop a hung process over there.
            with contextlib.suppress(OSError, subprocess.TimeoutExpired):
                subprocess.run(
                    [*_ssh(self.host.name), f"kill -9 {int(self.pid)}"],
                    stdin=subprocess.DEVNULL,
                    capture_output=True,
                    timeout=10,
                )
        with contextlib.suppress(OSError):
            self.proc.kill()


def _ssh(host: str) -> list[str]:
    return ["ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=5", host]


def start_guard(ip: str, port: int, wait_s: float) -> subprocess.Popen:
    """Unblocks rank 0's ring init after wait_s if a peer never connects."""
    return subprocess.Popen(
        [sys.executable, "-c", _GUARD, ip, str(port), str(wait_s)], stdin=subprocess.PIPE
    )


def stop_guard(guard: subprocess.Popen) -> None:
    guard.kill()
    guard.wait()
