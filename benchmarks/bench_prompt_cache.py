"""Time to first token with a long shared prefix: first request against the second.

A coding harness resends the same long system prompt with every request. This runs
the real server (ApiServer on 127.0.0.1) and the real openai client, streaming, in
one process, on the starter model unless told otherwise:

  cold     a new system prompt: the whole prompt is computed
  memory   the same system prompt, another question: the prefix comes from RAM
  disk     engine and server restarted ("cache prompts" on): the prefix comes from
           the disk tier

TTFT is measured by the client (request sent -> first streamed token) and by the
engine (its own ttft_s, which leaves out HTTP). Each round uses a fresh system
prompt; medians over rounds. The prompt-cache folder is a temporary one.

    python benchmarks/bench_prompt_cache.py [--model NAME] [--prefix-tokens 3000] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import engine  # noqa: F401  (must come first: preloads OpenBLAS before mlx)

# isort: split
import openai

from engine.runtime import runtime_info
from engine.server import ApiServer
from engine.service import EngineService

RULES = [
    "Always read a file before editing it.",
    "Prefer small, reviewable changes with tests.",
    "Never run destructive shell commands without asking.",
    "Use the project's formatter and linter before committing.",
    "Explain the root cause of a bug before fixing it.",
    "Keep functions short and names descriptive.",
    "Do not add dependencies without a reason.",
    "When a command fails, read its output before retrying.",
]


def system_prompt(round_no: int, approx_tokens: int) -> str:
    """A long, harness-like system prompt, different in every round from its start."""
    lines = [f"Session {round_no}-{time.time_ns()}: you are a careful coding agent."]
    i = 0
    while sum(len(s) for s in lines) < approx_tokens * 4:  # ~4 characters a token
        lines.append(f"Rule {i}: {RULES[i % len(RULES)]} (applies to module_{i}.py)")
        i += 1
    return "\n".join(lines)


def ask(client: openai.OpenAI, model: str, system: str, question: str) -> dict:
    start = time.perf_counter()
    first = None
    usage = extra = None
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "system", "content": system}, {"role": "user", "content": question}],
        max_tokens=8,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if first is None and chunk.choices and chunk.choices[0].delta.content:
            first = time.perf_counter()
        if chunk.usage is not None:
            usage, extra = chunk.usage, chunk.model_extra.get("lookahead", {})
    end = time.perf_counter()
    return {
        "client_ttft": (first or end) - start,
        "engine_ttft": extra["ttft_s"],
        "total": end - start,
        "prompt": usage.prompt_tokens,
        "cached": usage.prompt_tokens_details.cached_tokens,
    }


class Stack:
    """An engine and a server on a free port, as `lookahead serve --cache-prompts` runs."""

    def __init__(self, cache_dir: Path, model: str):
        self.service = EngineService(cache_prompts=True, prompt_cache_dir=cache_dir).start()
        self.server = ApiServer(self.service, port=0)
        url = self.server.start()
        self.client = openai.OpenAI(base_url=f"{url}/v1", api_key="x", max_retries=0, timeout=600)
        # Load the model first (a raw prompt: it shares no prefix with the chats).
        self.client.completions.create(model=model, prompt="Hello", max_tokens=1)

    def close(self) -> None:
        self.server.stop()
        self.service.close()


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="a local model id (default: the starter)")
    p.add_argument("--prefix-tokens", type=int, default=3000)
    p.add_argument("--rounds", type=int, default=3)
    args = p.parse_args()
    model = args.model
    with tempfile.TemporaryDirectory(prefix="lookahead-bench-") as tmp:
        if model is None:
            import os

            from engine.starter import STARTER_NAME, ensure_starter_model

            os.environ.setdefault("LOOKAHEAD_MODELS_DIR", str(Path(tmp) / "models"))
            ensure_starter_model()
            model = STARTER_NAME
        cache_dir = Path(tmp) / "prompt-cache"
        rows: dict[str, list[dict]] = {"cold": [], "memory": [], "disk": []}
        for r in range(args.rounds):
            system = system_prompt(r, args.prefix_tokens)
            stack = Stack(cache_dir, model)
            try:
                rows["cold"].append(ask(stack.client, model, system, "Where do tests go?"))
                rows["memory"].append(ask(stack.client, model, system, "How do I add a command?"))
            finally:
                stack.close()
            stack = Stack(cache_dir, model)  # a restart: nothing in memory
            try:
                rows["disk"].append(ask(stack.client, model, system, "What is the style guide?"))
            finally:
                stack.close()
        disk_bytes = sum(f.stat().st_size for f in cache_dir.glob("*.safetensors"))

    info = runtime_info()
    print(f"model {model} on {info.device}/{info.blas}, {args.rounds} rounds (medians)")
    print(
        f"{'request':<8} {'prompt':>7} {'cached':>7} {'client TTFT':>12} {'engine TTFT':>12} {'total':>8}"
    )
    med = {}
    for name, results in rows.items():
        m = {k: statistics.median(x[k] for x in results) for k in results[0]}
        med[name] = m
        print(
            f"{name:<8} {m['prompt']:>7.0f} {m['cached']:>7.0f} {m['client_ttft']:>11.3f}s "
            f"{m['engine_ttft']:>11.3f}s {m['total']:>7.3f}s"
        )
    for name in ("memory", "disk"):
        print(
            f"TTFT first/second ({name} hit): client {med['cold']['client_ttft'] / med[name]['client_ttft']:.1f}x, "
            f"engine {med['cold']['engine_ttft'] / med[name]['engine_ttft']:.1f}x"
        )
    print(f"disk tier: {disk_bytes / 1e6:.1f} MB for {args.rounds} prefixes")


if __name__ == "__main__":
    main()
