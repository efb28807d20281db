"""Decoding speed of one model on 1 process vs 2 processes linked by mlx.distributed.

Variants (greedy, same prompt, same tokens checked):
  1 process   EngineService, the model whole in this process
  2 tensor    DistributedEngineService on 127.0.0.1,127.0.0.1, tensor parallel
              (mlx-lm shard(): every layer split, two all_sums per layer per step)
  2 pipeline  the same hosts, layers split (one send/recv per step)
Every variant runs in its own child process (MLX allows one group per process), and
the variants take turns for ``--passes`` passes so a noisy neighbour hits them all
alike; tok/s = the median over passes of 1 / median time between consecutive tokens.

ON ONE MACHINE THIS MEASURES OVERHEAD, NOT SPEED-UP: both ranks share this
machine's cores and memory bandwidth, talk over loopback TCP, and the ring backend
busy-waits while a collective is pending. The ratio says what splitting costs per
step; the gain from splitting appears only with separate machines (more memory,
more bandwidth), or not at all at batch size 1 for pipeline parallelism. A ratio
above 1 on one machine does not mean distribution pays off either: it means one
process did not use all cores (e.g. multi-threaded BLAS matrix-vector products on a
busy machine) while two single-threaded ranks did.

    python benchmarks/bench_distributed.py [--model NAME] [--tokens 64] [--passes 2]

Without --model a random llama-family model (about 100M parameters) is written to a
temp folder.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import engine  # noqa: F401  (must come first: preloads OpenBLAS before mlx)

ROOT = Path(__file__).resolve().parents[1]
PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."
VARIANTS = ("1 process", "2 tensor", "2 pipeline")


def make_model(folder: Path) -> Path:
    sys.path.insert(0, str(ROOT))
    from tests.tiny_models import make_tiny_model

    size = dict(hidden_size=1024, intermediate_size=2816, num_attention_heads=16)
    size.update(num_key_value_heads=8, num_hidden_layers=8)
    return make_tiny_model(folder / "bench-llama", logit_scale=8.0, **size)


def measure(service, model: str, tokens: int) -> dict:
    from engine.events import Failed, Finished, Generate, TokenEvent
    from engine.settings import SamplingSettings

    sampling = SamplingSettings(max_tokens=tokens, max_loop_count=0)
    final, times = None, []
    for r in range(2):  # the first run loads the model and warms up
        times = []
        for ev in service.stream(Generate(f"b{r}", model, prompt=PROMPT, sampling=sampling)):
            if isinstance(ev, TokenEvent):
                times.append(time.perf_counter())
            elif isinstance(ev, Failed):
                raise SystemExit(f"failed: {ev.message}")
            elif isinstance(ev, Finished):
                final = ev
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    s = final.stats
    return {
        "tok_s": 1.0 / statistics.median(gaps),
        "tokens": list(final.token_ids),
        "ranks": s.ranks,
        "parallel": s.parallel or "-",
        "rank_memory_gb": list(s.rank_memory_gb) or [s.memory_gb],
        "rank_comm_share": list(s.rank_comm_share),
    }


def child(mode: str, model: str, tokens: int) -> None:
    from engine.distributed import DistributedEngineService
    from engine.service import EngineService

    with tempfile.TemporaryDirectory() as tmp:
        hostfile = Path(tmp) / "hosts.json"
        hostfile.write_text(json.dumps({"hosts": ["127.0.0.1", "127.0.0.1"], "mode": mode}))
        if mode == "single":
            service = EngineService().start()
        else:
            service = DistributedEngineService(str(hostfile)).start()
        try:
            result = measure(service, model, tokens)
        finally:
            service.close()
    print("RESULT " + json.dumps(result), flush=True)


def run_child(mode: str, model: str, tokens: int) -> dict:
    argv = [sys.executable, __file__, "--child", mode, "--model", model, "--tokens", str(tokens)]
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True, timeout=1800)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("RESULT ")]
    if not lines:
        raise SystemExit(f"{mode} run failed:\n{done.stderr[-2000:]}")
    return json.loads(lines[-1][len("RESULT ") :])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None)
    p.add_argument("--tokens", type=int, default=64)
    p.add_argument("--passes", type=int, default=2)
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        child(args.child, args.model, args.tokens)
        return 0

    import os

    from engine.library import resolve_model
    from engine.runtime import runtime_info

    modes = {"1 process": "single", "2 tensor": "tensor", "2 pipeline": "pipeline"}
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    with tempfile.TemporaryDirectory() as tmp:
        model = str(resolve_model(args.model)) if args.model else str(make_model(Path(tmp)))
        passes: dict[str, list[dict]] = {name: [] for name in VARIANTS}
        for i in range(args.passes):
            order = VARIANTS if i % 2 == 0 else VARIANTS[::-1]
            for name in order:
                passes[name].append(run_child(modes[name], model, args.tokens))
    results = {}
    for name, runs in passes.items():
        results[name] = dict(runs[-1], tok_s=statistics.median(r["tok_s"] for r in runs))
        results[name]["spread"] = [round(r["tok_s"], 1) for r in runs]

    info = runtime_info()
    base = results["1 process"]
    print(f"\nmodel {Path(model).name}, {args.tokens} tokens, {args.passes} passes, "
          f"{info.device}/{info.blas}, {os.cpu_count()} cores (load {load:.1f} at start), "
          "all ranks on 127.0.0.1 (ring backend)")  # fmt: skip
    print(f"{'variant':<12} {'tok/s':>8} {'vs 1':>6}  {'passes':<14} {'same tokens':<11} "
          f"{'memory/rank GB':<16} comm share/rank")  # fmt: skip
    for name in VARIANTS:
        r = results[name]
        mem = "/".join(f"{m:.2f}" for m in r["rank_memory_gb"])
        comm = "/".join(f"{c:.0%}" for c in r["rank_comm_share"]) or "-"
        same = "yes" if r["tokens"] == base["tokens"] else "NO"
        spread = "/".join(str(x) for x in r["spread"])
        print(f"{name:<12} {r['tok_s']:>8.1f} {r['tok_s'] / base['tok_s']:>6.2f}  {spread:<14} "
              f"{same:<11} {mem:<16} {comm}")  # fmt: skip
    print(
        "\nALL RANKS RAN ON THIS ONE MACHINE: this measures the overhead of splitting a "
        "model, not the speed-up of adding machines. The ranks share its cores and "
        "memory bandwidth and talk over loopback TCP, and the ring backend busy-waits "
        "in collectives. A ratio below 1 is the cost per step; a ratio above 1 only "
        "means one process did not keep every core busy (two single-threaded ranks "
        "did). The memory column is what distribution buys: each rank holds a part."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
