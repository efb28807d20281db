"""Load a model folder into memory: mlx-lm's model classes, our dtype policy.

On CPU the weights are expanded to fp32 (when memory allows): MLX has no fast fp16,
bf16 or quantized matmul on CPU, and fp32 with OpenBLAS is ~40x faster than those.
With the native skinny kernel built (engine/native) the linear layers, output head
and embeddings keep bf16 weights instead (half the bytes per decoding step, widened
to fp32 in registers) and everything else runs in fp32.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import mlx.core as mx
import mlx.nn as nn
from mlx.utils import tree_flatten

from engine.chat import ChatFormat
from engine.deepseek_v4.support import is_v4_target
from engine.errors import ModelLoadError
from engine.extra_layers import model_classes_without_extra_layers
from engine.library import read_config, resolve_model
from engine.runtime import fast_dtype_name, runtime_info
from engine.settings import ModelSettings

Progress = Callable[[str, float], None]

_DTYPES = {"float32": mx.float32, "float16": mx.float16, "bfloat16": mx.bfloat16}


@dataclass
class LoadedModel:
    """A model resident on the engine thread. Never leaves that thread."""

    name: str
    path: Path
    model: nn.Module
    tokenizer: Any  # mlx_lm TokenizerWrapper
    config: dict
    dtype: str
    parameters: int
    memory_gb: float
    chat: ChatFormat
    extras: dict = field(default_factory=dict)  # drafters attach their state here

    @property
    def model_type(self) -> str:
        return str(self.config.get("model_type", "unknown"))


def _total_memory_bytes() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 0


def _parameter_count(model: nn.Module) -> int:
    total = 0
    for name, p in tree_flatten(model.parameters()):
        if name.endswith(".scales") or name.endswith(".biases"):
            continue
        n = p.size
        if p.dtype == mx.uint32:  # packed quantized weights
            bits = _bits_of(model, name)
            n = n * 32 // bits
        total += n
    return total


def _bits_of(model: nn.Module, weight_name: str) -> int:
    module = model
    for part in weight_name.split(".")[:-1]:
        module = module[int(part)] if part.isdigit() else getattr(module, part)
    return int(getattr(module, "bits", 4))


def _nbytes(model: nn.Module) -> int:
    return sum(p.nbytes for _, p in tree_flatten(model.parameters()))


def _check_weights_present(path: Path) -> None:
    weights = list(path.glob("model*.safetensors"))
    if not weights:
        raise ModelLoadError(f"{path} has no model*.safetensors weights (incomplete download?)")
    index = path / "model.safetensors.index.json"
    if index.exists():
        try:
            shards = set(json.loads(index.read_text())["weight_map"].values())
        except (json.JSONDecodeError, KeyError) as e:
            raise ModelLoadError(f"{index} is unreadable ({e})") from None
        missing = sorted(s for s in shards if not (path / s).exists())
        if missing:
            raise ModelLoadError(f"{path} is missing weight shard(s): {', '.join(missing)}")


def convert_dtype(model: nn.Module, dtype_name: str) -> None:
    """Dequantize and cast floating weights in place.

    On CPU with the skinny kernel, float32 and bfloat16 mean the weights of the
    linear layers and embeddings (which then multiply through the kernel); every
    other parameter and all activations are float32.
    """
    from mlx_lm.utils import dequantize_model

    dequantize_model(model)
    if _kernel_applies(dtype_name):
        from engine.native import accelerate

        accelerate(model, _DTYPES[dtype_name])
        return
    model.set_dtype(_DTYPES[dtype_name])
    mx.eval(model.parameters())


def _kernel_applies(dtype_name: str) -> bool:
    if dtype_name not in ("float32", "bfloat16") or runtime_info().device != "cpu":
        return False
    from engine.native import available

    return available()


def choose_dtype(settings: ModelSettings, parameters: int, config: dict) -> str:
    """'native' or a dtype name, following the fast-CPU policy and memory."""
    wanted = fast_dtype_name(settings.dtype)
    if wanted == "float32" and settings.dtype == "auto":
        if _kernel_applies("bfloat16"):
            wanted = "bfloat16"  # the kernel widens bf16 in registers: half the bytes
        total = _total_memory_bytes()
        # The weights plus headroom for the KV cache and the rest of the system.
        per = 2 if wanted == "bfloat16" else 4
        if total and parameters * per > 0.6 * total:
            return "native"
    return wanted


def load_model(
    name: str, settings: ModelSettings | None = None, progress: Progress | None = None
) -> LoadedModel:
    """Load the model a user named (path, local name or cached hub id)."""
    from mlx_lm.utils import load_model as mlx_load_model
    from mlx_lm.utils import load_tokenizer

    settings = (settings or ModelSettings()).validated()
    progress = progress or (lambda stage, fraction: None)
    progress("resolving", 0.0)
    path = resolve_model(name)
    config = read_config(path)
    _check_weights_present(path)
    progress("reading weights", 0.1)
    v4 = is_v4_target(config)  # mlx-lm has no deepseek_v4: mlx-vlm's classes
    try:
        if v4:
            from engine.deepseek_v4.target import load as load_v4

            model = load_v4(path)
        else:
            model, config = mlx_load_model(
                path, lazy=False, get_model_classes=model_classes_without_extra_layers
            )
    except ModelLoadError:
        raise
    except ValueError as e:
        msg = str(e).splitlines()[0]
        if "not supported" in msg.lower() or "model type" in msg.lower():
            raise ModelLoadError(
                f"{path.name}: model type {config.get('model_type')!r} is not supported by mlx-lm"
            ) from None
        raise ModelLoadError(f"{path.name}: weights do not match the config ({msg})") from None
    except (RuntimeError, OSError) as e:
        raise ModelLoadError(
            f"{path.name}: could not read the weights ({str(e).splitlines()[0]}); "
            "the files may be corrupted — delete and download again"
        ) from None
    except Exception as e:  # e.g. KeyError from a config missing a required field
        raise ModelLoadError(
            f"{path.name}: could not build the model ({type(e).__name__}: {e})"
        ) from None
    progress("reading tokenizer", 0.6)
    try:
        tokenizer = load_tokenizer(path, eos_token_ids=config.get("eos_token_id"))
    except Exception as e:
        raise ModelLoadError(f"{path.name}: could not load the tokenizer ({e})") from None
    parameters = _parameter_count(model)
    # mlx-vlm's V4 keeps its own dtypes (fp32 hyper-connections and sinks, packed experts).
    dtype = "native" if v4 else choose_dtype(settings, parameters, config)
    if dtype != "native":
        progress("converting", 0.7)
        convert_dtype(model, dtype)
    else:
        dtype = _weight_dtype(model, config)
    progress("ready", 1.0)
    return LoadedModel(
        name=name,
        path=path,
        model=model,
        tokenizer=tokenizer,
        config=config,
        dtype=dtype,
        parameters=parameters,
        memory_gb=_nbytes(model) / 1e9,
        chat=ChatFormat(tokenizer),
    )


def _weight_dtype(model: nn.Module, config: dict) -> str:
    """What the weights are stored as: the checkpoint's quantization, or a dtype."""
    quantization = config.get("quantization")
    if isinstance(quantization, dict) and "bits" in quantization:
        return f"q{quantization['bits']}"
    for name, p in tree_flatten(model.parameters()):
        if name.endswith("weight"):
            if p.dtype == mx.uint32:
                return f"q{_bits_of(model, name)}"
            return str(p.dtype).removeprefix("mlx.core.")
    return "unknown"
