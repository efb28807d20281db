"""Generation speed of Lookahead's engine against stock mlx-lm, in one process.

Variants, run alternately (round-robin) on the same prompt at temperature 0:
  stock      mlx_lm.load + mlx_lm.stream_generate on the model as stored (the
             starter's GGUF import keeps Q4_1 weights -> MLX 4-bit)
  mlx-lm+    mlx-lm's generate_step on the same fp32 weights our engine uses, with
             the same (OpenBLAS) BLAS: isolates our loop's overhead
  lookahead  EngineService (worker thread, events, per-token top-10 records)
tok/s = 1 / median time between consecutive tokens, i.e. steady decoding speed after
the first token; the median keeps a noisy neighbour on a shared machine from deciding
the result (the mean-based figure is printed too). Prints the ratios the foundation
issue asks for.

    python benchmarks/bench_engine_vs_mlx_lm.py [--model NAME] [--tokens 128] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import engine  # noqa: F401  (must come first: preloads OpenBLAS before mlx)

# isort: split
import mlx.core as mx

from engine.events import ChatMessage, Finished, Generate, TokenEvent
from engine.library import resolve_model
from engine.runtime import runtime_info
from engine.service import EngineService
from engine.settings import SamplingSettings

PROMPT = "Write a short story about a lighthouse keeper who finds a message in a bottle."


def _tps(times: list[float]) -> tuple[float, float]:
    """(1 / median inter-token time, tokens / total time) after the first token."""
    if len(times) < 3:
        return 0.0, 0.0
    gaps = [b - a for a, b in zip(times, times[1:], strict=False)]
    return 1.0 / statistics.median(gaps), (len(times) - 1) / (times[-1] - times[0])


def run_stock(model, tokenizer, prompt_ids, n):
    from mlx_lm import stream_generate

    times, ids = [], []
    for r in stream_generate(model, tokenizer, prompt_ids, max_tokens=n):
        times.append(time.perf_counter())
        ids.append(r.token)
    return _tps(times), ids


def run_mlx_lm_step(model, prompt_ids, n):
    from mlx_lm.generate import generate_step

    times, ids = [], []
    for tok, _ in generate_step(mx.array(prompt_ids), model, max_tokens=n):
        times.append(time.perf_counter())
        ids.append(int(tok))
    return _tps(times), ids


def run_engine(service, model_name, n, i):
    times, ids = [], []
    request = Generate(
        f"bench-{i}",
        model_name,
        messages=(ChatMessage("user", PROMPT),),
        sampling=SamplingSettings(max_tokens=n, max_loop_count=0),
    )
    final = None
    for ev in service.stream(request):
        if isinstance(ev, TokenEvent):
            times.append(time.perf_counter())
            ids.append(ev.id)
        elif isinstance(ev, Finished):
            final = ev
    if final is None:
        raise SystemExit("engine generation failed")
    return _tps(times), ids, final


def main() -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--model", default=None, help="default: the starter model")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()

    from mlx_lm.utils import dequantize_model, load

    if args.model is None:
        from engine.starter import ensure_starter_model

        path = ensure_starter_model()
        name = str(path)
    else:
        name = args.model
        path = resolve_model(args.model)
    stock_model, tokenizer = load(str(path))
    fp32_model, _ = load(str(path))
    dequantize_model(fp32_model)
    fp32_model.set_dtype(mx.float32)
    mx.eval(fp32_model.parameters())
    prompt_ids = tokenizer.apply_chat_template(
        [{"role": "user", "content": PROMPT}], add_generation_prompt=True
    )
    service = EngineService().start()
    info = runtime_info()
    print(
        f"model {path.name}; {info.device} / BLAS {info.blas}; {args.tokens} tokens x {args.rounds} rounds"
    )
    results: dict[str, list[tuple[float, float]]] = {"stock": [], "mlx-lm+": [], "lookahead": []}
    outputs = {}
    try:
        run_engine(service, name, 8, -1)  # warm-up: load + first compile
        run_mlx_lm_step(fp32_model, prompt_ids, 8)
        for i in range(args.rounds):
            tps, outputs["stock"] = run_stock(stock_model, tokenizer, prompt_ids, args.tokens)
            results["stock"].append(tps)
            tps, outputs["mlx-lm+"] = run_mlx_lm_step(fp32_model, prompt_ids, args.tokens)
            results["mlx-lm+"].append(tps)
            tps, outputs["lookahead"], final = run_engine(service, name, args.tokens, i)
            results["lookahead"].append(tps)
    finally:
        service.close()
    med = {k: statistics.median(x[0] for x in v) for k, v in results.items()}
    mean = {k: statistics.median(x[1] for x in v) for k, v in results.items()}
    print(f"{'variant':<12}{'tok/s':>8}{'(mean-based)':>14}   runs (tok/s)")
    for k, v in results.items():
        print(f"{k:<12}{med[k]:>8.1f}{mean[k]:>14.1f}   " + ", ".join(f"{x[0]:.1f}" for x in v))
    print(
        f"lookahead / stock mlx-lm            = {med['lookahead'] / med['stock']:.2f}x  (target >= 2.0x)"
    )
    print(
        f"lookahead / mlx-lm, same BLAS+fp32  = {med['lookahead'] / med['mlx-lm+']:.3f}x (target >= 0.97x)"
    )
    same = outputs["lookahead"] == outputs["mlx-lm+"][: len(outputs["lookahead"])]
    print(f"greedy tokens identical to mlx-lm (fp32): {same}")
    print(
        f"engine stats: dtype {final.stats.dtype}, ttft {final.stats.ttft_s:.3f}s, peak {final.stats.peak_memory_gb:.2f} GB"
    )


if __name__ == "__main__":
    main()
