"""Loading a model across the group (rank 0's side), and the one-machine fallback.

Rank 0 decides everything the ranks must agree on (tensor or pipeline, the
layer blocks, the dtype), sends it with the LOAD command, loads its own part
while the workers load theirs, and collects every rank's status: a rank that
cannot load (no such model there, out of memory) is named in the error.
Engine thread only.
"""

from __future__ import annotations

import json
import weakref

from engine.chat import ChatFormat
from engine.distributed.cluster import Cluster
from engine.distributed.model import ModelLink, install
from engine.distributed.probe import total_memory_bytes
from engine.distributed.protocol import Command, Op, gather_json
from engine.distributed.sharding import (
    ShardPlan,
    body_layers,
    choose_mode,
    lazy_model,
    local_bytes,
    pipeline_blocks,
    shard,
)
from engine.errors import EngineError, ModelLoadError
from engine.model_loader import LoadedModel, Progress
from engine.settings import ModelSettings


def load_distributed(
    cluster: Cluster, name: str, settings: ModelSettings, progress: Progress
) -> LoadedModel:
    from mlx_lm.utils import load_tokenizer

    from engine.library import read_config, resolve_model
    from engine.model_loader import _check_weights_present, _parameter_count, _weight_dtype

    settings = settings.validated()
    progress("resolving", 0.0)
    path = resolve_model(name)
    config = read_config(path)
    _check_weights_present(path)
    cluster.start(progress)
    progress("reading weights", 0.1)
    model = lazy_model(path)
    parameters = _parameter_count(model)  # sizes of lazy arrays: nothing is read
    mode, _why = choose_mode(model, config, cluster.size, cluster.config.mode)
    blocks = pipeline_blocks(len(body_layers(model)), cluster.size) if mode == "pipeline" else ()
    plan = ShardPlan(mode, 0, cluster.size, _rank_dtype(settings, parameters, cluster), blocks)
    model_id = cluster.new_cache_id()
    payload = json.dumps({"name": name, "path": str(path), "plan": plan.to_dict()}).encode()
    cluster.finish_step()
    cluster.command(Command(Op.LOAD, model_id=model_id, payload=len(payload)), payload=payload)
    status: dict = {"ok": True}
    try:
        shard(model, plan, cluster.group)
    except Exception as e:  # every rank must still report, or the workers would wait
        status = {"ok": False, "error": f"{type(e).__name__}: {e}"[:1000]}
    try:
        statuses = gather_json(cluster.group, status)
    except RuntimeError as e:
        raise cluster.lost(e) from None
    failed = [(r, s) for r, s in enumerate(statuses) if not s.get("ok")]
    if failed:
        cluster.drop_model(model_id)
        cluster.sync()
        rank, s = failed[0]
        raise ModelLoadError(
            f"{path.name}: {cluster.config.describe(rank)} could not load its part "
            f"({s.get('error', 'no reason given')})"
        )
    weakref.finalize(model, cluster.drop_model, model_id)  # frees the workers' part too
    progress("reading tokenizer", 0.6)
    try:
        tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    except Exception as e:
        raise ModelLoadError(f"{path.name}: could not load the tokenizer ({e})") from None
    dtype = plan.dtype if plan.dtype != "native" else _weight_dtype(model, config)
    link = ModelLink(cluster, model_id, plan)
    install(model, link)
    progress("ready", 1.0)
    return LoadedModel(
        name=name,
        path=path,
        model=model,
        tokenizer=tokenizer,
        config=config,
        dtype=dtype,
        parameters=parameters,
        memory_gb=local_bytes(model) / 1e9,  # this machine's part
        chat=ChatFormat(tokenizer),
        extras={"distributed": link},
    )


def _rank_dtype(settings: ModelSettings, parameters: int, cluster: Cluster) -> str:
    """One dtype for all ranks: the engine's fast-dtype policy, judged against the
    smallest host's memory and one rank's share of the weights."""
    from engine.runtime import fast_dtype_name

    wanted = fast_dtype_name(settings.dtype)
    if wanted == "float32" and settings.dtype == "auto":
        memories = [total_memory_bytes()]
        memories += [float(w.info.get("memory_gb", 0)) * 1e9 for w in cluster.workers if w.info]
        smallest = min(m for m in memories if m > 0) if any(memories) else 0
        if smallest and parameters * 4 / cluster.size > 0.6 * smallest:
            return "native"
    return wanted


def load_alone(name: str, settings: ModelSettings, progress: Progress) -> LoadedModel:
    """The single-process fallback after the group was lost, if the model fits."""
    from engine.library import resolve_model
    from engine.model_loader import load_model

    path = resolve_model(name)
    need = sum(f.stat().st_size for f in path.glob("model*.safetensors"))
    have = total_memory_bytes()
    if have and need > 0.85 * have:
        raise EngineError(
            f"the linked hosts were lost and {path.name} (about {need / 1e9:.0f} GB) does not "
            f"fit this machine ({have / 1e9:.0f} GB) alone; restart lookahead to link the "
            "hosts again"
        )
    return load_model(name, settings, progress)
