"""A drafter training run as a folder, so the app can start, watch, pause, resume and
cancel it without holding it: the run is its own process (``lookahead train-mtp
--job DIR``) that outlives the app, and all it knows is in files.

    spec.json     what to train: model, data, settings, where the decoder goes
    status.json   where it stands: state, step, data progress, the untrained head's
                  and the best acceptance, measured costs, the result or the error
    events.jsonl  one line per data unit, training step and validation, appended
    lock          held (flock) by the process running it: a job whose state says
                  it runs but whose lock is free was interrupted (a crash, a reboot)
    run/          the trainer's checkpoint (engine/mtp_train/train.py)
    log.txt       the process's own output

States: queued -> preparing -> training -> exporting -> done; or paused, cancelled,
failed (with a message). Only ``done`` has put a decoder in the library: it is
written to a hidden folder and renamed into place whole, so nothing half-written is
ever listed as ready. ``lookahead train-mtp`` without ``--job`` runs a job the same
way, in its own process, printing progress instead.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from engine import paths
from engine.errors import EngineError

ACTIVE = ("queued", "preparing", "training", "exporting")
MIN_SEQUENCES = 4  # at least one held out, the rest to learn from
MIN_TOKENS = 1500
COST_REPS = 5


class JobError(EngineError):
    """A job cannot run as asked (bad model, too little data, no disk); the message
    says what to change."""


class Stopped(Exception):
    """Pause or Cancel was asked for."""


@dataclass
class DataChoice:
    """Where a job's training text comes from. Each source is optional."""

    chats_of: str = ""  # model id whose replies in the conversations database are used
    database: str = ""  # that database ("" = the app's own)
    builtin_prompts: int = 0  # built-in prompts the model answers for data; -1 = all
    folders: list[str] = field(default_factory=list)  # text and code files or folders
    default_corpus: bool = False  # Python's and Debian's own source and docs


@dataclass
class JobSpec:
    model: str  # library id, hub repo id or folder
    out: str  # the decoder folder to write
    data: DataChoice = field(default_factory=DataChoice)
    train: dict = field(default_factory=dict)  # TrainConfig fields
    max_new: int = 256  # tokens per self-generated reply
    dtype: str = "float16"  # of the written weights
    tokenizer_hash: bool = True  # pair by tokenizer.json bytes too
    title: str = ""  # shown in the app

    @staticmethod
    def from_dict(d: dict) -> JobSpec:
        d = dict(d)
        d["data"] = DataChoice(**d.get("data", {}))
        return JobSpec(**d)


@dataclass(frozen=True)
class Job:
    """A job folder as the app lists it."""

    folder: Path
    spec: JobSpec
    status: dict
    running: bool  # a process holds its lock now

    @property
    def state(self) -> str:
        state = self.status.get("state", "queued")
        if state in ACTIVE and not self.running and state != "queued":
            return "interrupted"
        return state


# ---------------------------------------------------------------- files


def jobs_dir() -> Path:
    d = paths.data_dir() / "train-jobs"
    d.mkdir(parents=True, exist_ok=True)
    return d


def decoder_folder(model: str, suffix: str = "MTP-mine") -> Path:
    """Where a decoder trained for ``model`` goes in the library."""
    name = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(model).name.split("/")[-1]).strip("-")
    return paths.models_dir() / f"{name}-{suffix}"


def create_job(spec: JobSpec, folder: Path | None = None) -> Path:
    if folder is None:
        stamp = time.strftime("%Y%m%d-%H%M%S")
        base = jobs_dir() / f"{stamp}-{Path(spec.out).name}"
        folder, n = base, 1
        while folder.exists():
            n += 1
            folder = base.with_name(f"{base.name}-{n}")
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "spec.json", asdict(spec))
    if not (folder / "status.json").exists():
        _write_json(folder / "status.json", {"state": "queued", "created": time.time()})
    return folder


def read_spec(folder: Path) -> JobSpec:
    try:
        return JobSpec.from_dict(json.loads((folder / "spec.json").read_text()))
    except (OSError, ValueError, TypeError) as e:
        raise JobError(f"{folder.name}: unreadable job ({e})") from None


def read_status(folder: Path) -> dict:
    try:
        return json.loads((folder / "status.json").read_text())
    except (OSError, ValueError):
        return {"state": "failed", "message": "Its status file is missing or damaged."}


def read_events(folder: Path, offset: int = 0) -> tuple[list[dict], int]:
    """Events appended since byte ``offset``, and the offset to read from next time."""
    f = folder / "events.jsonl"
    try:
        with f.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
    except OSError:
        return [], offset
    end = chunk.rfind(b"\n") + 1  # a line still being written waits for next time
    events = []
    for line in chunk[:end].splitlines():
        with contextlib.suppress(ValueError):
            events.append(json.loads(line))
    return events, offset + end


def list_jobs() -> list[Job]:
    """Every job, newest first (unreadable folders are left out)."""
    out = []
    for folder in sorted(jobs_dir().iterdir(), reverse=True):
        if not (folder / "spec.json").is_file():
            continue
        try:
            spec = read_spec(folder)
        except JobError:
            continue
        out.append(Job(folder, spec, read_status(folder), is_running(folder)))
    return out


def load_job(folder: Path) -> Job:
    return Job(folder, read_spec(folder), read_status(folder), is_running(folder))


def _write_json(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=float))
    tmp.replace(path)


# ---------------------------------------------------------------- process control


def is_running(folder: Path) -> bool:
    """Whether a process holds the job's lock."""
    import fcntl

    try:
        fd = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return True
    else:
        fcntl.flock(fd, fcntl.LOCK_UN)
        return False
    finally:
        os.close(fd)


def launch(folder: Path) -> subprocess.Popen:
    """Start (or resume) the job in its own process, detached from this one so that
    closing the app does not stop it."""
    if is_running(folder):
        raise JobError("This training run is already running.")
    with contextlib.suppress(FileNotFoundError):
        (folder / "stop").unlink()
    if getattr(sys, "frozen", False):  # the bundle: its executable is `lookahead`
        cmd = [sys.executable, "train-mtp", "--job", str(folder)]
    else:
        cmd = [sys.executable, "-m", "engine.cli", "train-mtp", "--job", str(folder)]
    log = (folder / "log.txt").open("ab")
    try:
        return subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
    finally:
        log.close()


def request_stop(folder: Path, why: str = "pause") -> None:
    """Ask the job's process to stop after the current step (``why``: pause | cancel);
    it checkpoints first. A job that is not running gets its state set directly."""
    (folder / "stop").write_text(why)
    pid = read_status(folder).get("pid")
    if is_running(folder) and isinstance(pid, int):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
    else:
        _update(folder, state="cancelled" if why == "cancel" else "paused", pid=None)


def remove_job(folder: Path) -> None:
    """Delete a job that is not running (its checkpoint too; the decoder it made stays)."""
    if is_running(folder):
        raise JobError("Stop the training run before removing it.")
    shutil.rmtree(folder, ignore_errors=True)


def _update(folder: Path, **changes) -> dict:
    status = read_status(folder)
    status.update(changes, updated=time.time())
    _write_json(folder / "status.json", status)
    return status


# ---------------------------------------------------------------- checks


def trainable(path: Path, config: dict) -> str | None:
    """Why no drafter can be trained for the model in ``path`` (None: it can). Reads
    its config and file names only."""
    import importlib.util

    from engine.compat import decoder_info

    if decoder_info(Path(path), config) is not None:
        return "It is a decoder itself; pick the chat model it drafts for."
    from engine.drafters.mtp.families import family_name, text_config

    family = family_name(config)
    cfg = text_config(config)
    if not family or importlib.util.find_spec(f"mlx_lm.models.{family}") is None:
        return f"Its architecture ({family or 'unknown'}) is not one mlx-lm can run."
    if any(cfg.get(k) for k in ("n_routed_experts", "num_experts", "num_local_experts")):
        return (
            f"{family} is a mixture-of-experts model: training makes a dense one-block head, "
            "which its layers do not fit. Use its own MTP weights or a published decoder."
        )
    if cfg.get("layer_types") or cfg.get("full_attention_interval"):
        return f"{family} mixes attention kinds; training supports plain attention models."
    return None


def estimate(tokens: int, hidden: int, params: int, steps: int, batch_positions: int) -> dict:
    """Rough minutes and disk for a run: target states at the rate the starter (135 M
    parameters) reaches on two CPU cores, scaled by size; the same for steps."""
    scale = max(params, 1) / 135e6
    per_token_s = scale / 60.0
    per_step_s = 2.0 * scale * batch_positions / 1024
    states_bytes = tokens * (hidden * 2 + 8 * 6 + 4)
    return {
        "minutes": (tokens * per_token_s + steps * per_step_s) / 60,
        "disk_bytes": states_bytes + 4 * hidden * hidden * 14 * 2,
        "states_bytes": states_bytes,
    }


# ---------------------------------------------------------------- running


class _StopFlag:
    """Set by SIGTERM or a ``stop`` file; while data is prepared it stops at once (its
    files are written whole), while training after the step in flight."""

    def __init__(self, folder: Path):
        self.folder = folder
        self.immediate = False
        self._set = False
        with contextlib.suppress(ValueError):  # not the main thread: the file only
            signal.signal(signal.SIGTERM, self._on_signal)

    def _on_signal(self, *_: object) -> None:
        self._set = True
        if self.immediate:
            raise Stopped()

    def __call__(self) -> bool:
        return self._set or (self.folder / "stop").exists()

    @property
    def why(self) -> str:
        try:
            return (self.folder / "stop").read_text().strip() or "pause"
        except OSError:
            return "pause"


def run_job(folder: Path, on_event: Callable[[dict], None] | None = None) -> str:
    """Run the job in this process until it is done, stopped or fails; returns the
    final state. Holds the job's lock throughout."""
    import fcntl

    folder = Path(folder)
    lock = os.open(folder / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(lock)
        raise JobError("This training run is already running.") from None
    stop = _StopFlag(folder)
    events = (folder / "events.jsonl").open("a")

    def emit(kind: str, **data) -> None:
        event = {"t": round(time.time(), 2), "kind": kind, **data}
        events.write(json.dumps(event, default=float) + "\n")
        events.flush()
        if on_event:
            on_event(event)

    try:
        _update(folder, state="preparing", pid=os.getpid(), message="Loading the model", error="")
        emit("state", state="preparing")
        final = _run(folder, read_spec(folder), stop, emit)
    except Stopped:
        final = "cancelled" if stop.why == "cancel" else "paused"
        _update(folder, state=final, pid=None, message="")
    except OSError as e:
        final = "failed"
        full = e.errno in (errno.ENOSPC, errno.EDQUOT)
        msg = "The disk is full: free some space, then Resume." if full else f"{e}"
        _update(folder, state=final, pid=None, message=msg, error=msg)
    except EngineError as e:
        final = "failed"
        _update(folder, state=final, pid=None, message=str(e), error=str(e))
    except Exception as e:  # shown to the user; the traceback goes to log.txt
        final = "failed"
        traceback.print_exc()
        msg = f"Training stopped with an error: {type(e).__name__}: {e}"
        _update(folder, state=final, pid=None, message=msg, error=msg)
    finally:
        with contextlib.suppress(Exception):
            emit("state", state=read_status(folder).get("state"))
        events.close()
        with contextlib.suppress(FileNotFoundError):
            (folder / "stop").unlink()
        fcntl.flock(lock, fcntl.LOCK_UN)
        os.close(lock)
    return final


def _sources(spec: JobSpec, loaded):
    """(files, prompts, sequences, facts) of the job's data choice."""
    from engine.mtp_train.chats import chat_text
    from engine.mtp_train.corpus import default_corpus, files_from_args
    from engine.mtp_train.prompts import training_prompts
    from engine.storage import ConversationStore, StorageError

    d = spec.data
    facts: dict = {}
    sequences: list[tuple[str, list[int]]] = []
    if d.chats_of:
        try:
            with ConversationStore(d.database or None) as store:
                chats = chat_text(store, d.chats_of)
        except (StorageError, OSError) as e:
            raise JobError(f"Could not read your conversations: {e}") from None
        sequences = [("chats", s) for s in chats.sequences]
        facts["chats"] = {
            "conversations": chats.conversations,
            "replies": chats.replies,
            "tokens": chats.tokens,
        }
    files = []
    for given in d.folders:
        if not Path(given).expanduser().exists():
            raise JobError(f"{given} does not exist (any more).")
    if d.folders:
        files = files_from_args(d.folders)
        if not files:
            raise JobError("The chosen folders hold no readable text files.")
    if d.default_corpus:
        files += default_corpus()
    prompts = training_prompts() if d.builtin_prompts else []
    if d.builtin_prompts > 0:
        prompts = prompts[: d.builtin_prompts]
    facts["prompts"] = len(prompts)
    facts["files"] = len(files)
    return files, prompts, sequences, facts


def _run(folder: Path, spec: JobSpec, stop: _StopFlag, emit) -> str:
    from engine.library import read_config, resolve_model
    from engine.model_loader import load_model
    from engine.mtp_train import data as D
    from engine.mtp_train.train import TrainConfig, Trainer

    path = resolve_model(spec.model)
    why_not = trainable(path, read_config(path))
    if why_not:
        raise JobError(f"Lookahead cannot train a drafter for {path.name}: {why_not}")
    loaded = load_model(str(path))
    files, prompts, sequences, facts = _sources(spec, loaded)
    planned = sum(len(s) for _, s in sequences) + len(prompts) * (spec.max_new // 2 + 40)
    if not files and planned < MIN_TOKENS:
        have = facts.get("chats", {}).get("tokens", 0)
        raise JobError(
            f"Too little text to train on: {have:,} tokens of chats with {loaded.name}; "
            f"at least {MIN_TOKENS:,} are needed. Add built-in prompts or a folder of files."
        )
    hidden = int(loaded.config.get("hidden_size") or 0)
    need = estimate(planned + 64_000 * bool(files), hidden, 0, 0, 0)["states_bytes"]
    free = shutil.disk_usage(paths.cache_dir()).free
    if free < need * 1.2 + 50e6:
        raise JobError(
            f"Not enough disk: the training data needs about {need / 1e6:,.0f} MB and "
            f"{free / 1e6:,.0f} MB are free on {paths.cache_dir()}."
        )
    _update(folder, message="Computing the model's own predictions", sources=facts)

    def data_progress(unit: str, done: int, total: int) -> None:
        _update(folder, data={"done": done, "planned": total})
        emit("data", done=done, planned=total)
        if stop():
            raise Stopped()

    stop.immediate = True
    try:
        if stop():
            raise Stopped()
        recipe = D.prepare(loaded, files, prompts, spec.max_new, data_progress, sequences)
    finally:
        stop.immediate = False
    data = D.load_dataset(recipe)
    if data.n_sequences < MIN_SEQUENCES:
        raise JobError(
            f"Too little text to train on: {data.n_sequences} sequences, at least "
            f"{MIN_SEQUENCES} are needed (one is held out to measure acceptance)."
        )
    train = {"val_fraction": 10 if data.n_sequences >= 50 else 4, **spec.train}
    cfg = TrainConfig(**train)
    trainer = Trainer(loaded, data, folder / "run", cfg)
    status = _update(
        folder,
        state="training",
        message="Training",
        steps=cfg.steps,
        positions=int(len(data.tokens)),
        sequences=data.n_sequences,
    )
    emit("state", state="training", steps=cfg.steps)
    if "baseline" not in status:  # the head before any training: what training must beat
        baseline = trainer.validate()
        status = _update(folder, baseline=baseline)
        emit("val", step=0, metrics=baseline)
    if "costs" not in status:
        status = _update(folder, costs=_measure_costs(loaded, trainer))
    costs = status["costs"]

    def on_step(state, info: dict) -> None:
        changes: dict = {"step": state.step, "seconds": round(state.seconds, 1)}
        event: dict = {"step": state.step, "loss": round(info["loss"], 4)}
        if "val" in info:
            val = info["val"]
            k, speedup = _speedup(costs, val)
            changes.update(last_val=val, best=state.best, expected={"k": k, "speedup": speedup})
            emit("val", step=state.step, metrics=val, k=k, speedup=speedup)
        if state.step % 5 == 0 or "val" in info or state.step == cfg.steps:
            _update(folder, **changes)
            emit("step", **event, seconds=round(state.seconds, 1))

    state = trainer.run(on_step, should_stop=stop)
    if state.step < cfg.steps:
        raise Stopped()
    _update(folder, state="exporting", message="Writing the decoder")
    emit("state", state="exporting")
    out = _export(spec, loaded, data, trainer, state, read_status(folder))
    best = state.best.get("all", {})
    result = {
        "decoder": str(out),
        "name": out.name,
        "acceptance": best.get("acc1"),
        "acceptance_2": best.get("acc2_given_1"),
        "baseline": read_status(folder).get("baseline", {}).get("all", {}).get("acc1"),
        "size_bytes": sum(f.stat().st_size for f in out.iterdir() if f.is_file()),
    }
    _update(folder, state="done", pid=None, message="", result=result, finished=time.time())
    return "done"


def _measure_costs(loaded, trainer) -> dict:
    """t(1..4) of the target and one draft step of the head, in seconds (the terms of
    ``engine.bench.expected_speedup``)."""
    import mlx.core as mx

    from engine.bench import target_costs
    from engine.mtp_train.head import forward_depths

    verify, (_ids, token, hidden) = target_costs(loaded, 4, COST_REPS)
    h = hidden[:, -1:].astype(mx.float32)
    tok = mx.array([[token]])
    times = []
    for _ in range(COST_REPS):
        t0 = time.perf_counter()
        out = forward_depths(trainer.head, trainer.embed, h, tok, 1)[0]
        mx.eval(mx.argmax(trainer._logits(out), axis=-1))
        times.append(time.perf_counter() - t0)
    return {"verify_s": verify, "draft_s": min(times)}


def _speedup(costs: dict, val: dict) -> tuple[int, float]:
    from engine.bench import expected_speedup

    verify = {int(n): float(t) for n, t in costs["verify_s"].items()}
    m = val.get("all", {})
    acc = [m.get("acc1", 0.0), m.get("acc2_given_1", 0.0)]
    k, speedup = expected_speedup(verify, float(costs["draft_s"]), acc)
    return k, round(speedup, 3)


def _export(spec: JobSpec, loaded, data, trainer, state, status: dict) -> Path:
    """Write the decoder to a hidden folder beside its place, then swap it in whole."""
    from engine.commands.train_mtp import trained_facts
    from engine.mtp_train.export import export_decoder, head_weights_from

    out = Path(spec.out).expanduser()
    out.parent.mkdir(parents=True, exist_ok=True)
    partial = out.with_name(f".{out.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    trained = trained_facts(loaded, data, trainer, state)
    trained["untrained_validation"] = status.get("baseline", {}).get("all")
    trained["expected_speedup"] = status.get("expected")
    history = []
    if out.is_dir():  # retraining: keep what the earlier rounds were
        with contextlib.suppress(OSError, ValueError, KeyError):
            old = json.loads((out / "config.json").read_text())["lookahead_decoder"]["trained"]
            history = old.get("earlier_rounds", []) + [
                {k: old.get(k) for k in ("data", "steps", "validation") if k in old}
            ]
    if history:
        trained["earlier_rounds"] = history
    export_decoder(
        partial,
        head_weights_from(trainer.best_head_path()),
        trainer.draft_ids,
        loaded.path.name,
        loaded.path,
        loaded.config,
        trained,
        dtype=spec.dtype,
        tokenizer_hash=spec.tokenizer_hash,
    )
    old = out.with_name(f".{out.name}.old")
    shutil.rmtree(old, ignore_errors=True)
    if out.exists():
        out.replace(old)
    partial.replace(out)
    shutil.rmtree(old, ignore_errors=True)
    return out


def main(argv: list[str] | None = None) -> int:
    """``python -m engine.mtp_train.job DIR``: run one job (what ``launch`` starts)."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        print("usage: python -m engine.mtp_train.job JOB_FOLDER", file=sys.stderr)
        return 2
    return 0 if run_job(Path(args[0])) in ("done", "paused", "cancelled") else 1


if __name__ == "__main__":
    sys.exit(main())
