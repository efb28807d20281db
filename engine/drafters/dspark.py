"""DSparkDrafter: DSpark block drafters behind the one verification loop.

DSpark is a DFlash-style block drafter: the outputs of a few target layers (its
``target_layer_ids``) are its context, and one pass over [last token, mask x (k-1)]
gives base logits for k drafts; a low-rank Markov head then adds, draft by draft, a
correction for the token before it. mlx-vlm (MIT) implements both published
variants and we run its classes as they are:

- ``dspark``: a Qwen-style backbone (``DSparkDraftModel``), for any target whose
  layers we can read;
- ``deepseek_v4_dspark``: DeepSeek-V4 blocks (``DeepseekV4DsparkDraftModel``), the
  drafter DeepSeek-V4.1 ships under ``mtp.*``; split into a repo of its own by
  mlx-vlm's splitter. It reads the mean of the target's hyper-connection streams
  after each of its layers — what mlx-vlm's DeepSeek-V4 captures for it.

The drafter's cache holds context keys of verified positions only (the block's own
keys are never stored), so nothing is rolled back: ``commit`` queues the verified
positions' layer outputs as the next round's context. When the request samples,
each draft is drawn from the Markov-corrected distribution given the drafts before
it, and those distributions go to the loop's min(1, p/q) rule. Engine thread only.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.drafters.base import DraftSampling
from engine.drafters.kinds import LABELS, dspark_refusal, is_v4_dspark, mlx_vlm_missing
from engine.errors import DecoderError
from engine.target import HiddenStatesUnsupported, num_layers


class DSparkDrafter:
    needs_hidden = True

    def __init__(self, loaded, model, label: str):
        """``model``: an mlx-vlm DSpark draft model, bound to ``loaded``'s target."""
        self.model = model
        cfg = model.config
        self.name = f"DSpark ({label})"
        self.layers = tuple(int(i) for i in cfg.target_layer_ids)
        self.max_draft_tokens = int(cfg.block_size) - 1
        body = getattr(loaded.model, "model", None)
        self._v4_body = body if hasattr(body, "add_taps") else None
        if self._v4_body is not None:  # mlx-vlm's V4: the body appends the stream means
            self._v4_body.add_taps(self.layers)
            self.hidden_layers: tuple[int, ...] = ()
        else:  # mlx-lm targets: the loop captures these layers' outputs
            self.hidden_layers = self.layers
        self.sampling: DraftSampling | None = None  # set by the loop per request
        self._lqs: list[mx.array] = []
        self._weights = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        self.close()

    def _context_of(self, hidden: mx.array) -> mx.array:
        """The target's hidden states -> the drafter's context rows (T, n * H)."""
        if self._v4_body is not None:
            return self._v4_body.tapped(hidden, self.layers)
        if hidden.ndim == 3:  # (T, hc, n * H): DeepSeek-V4.1's streams, as mlx-vlm reads V4's
            return hidden.mean(axis=1)
        return hidden

    def _add_context(self, hidden: mx.array | None) -> None:
        if hidden is None or hidden.shape[0] == 0:
            return
        rows = self._context_of(hidden)[None]
        self._context = rows if self._context is None else mx.concatenate([self._context, rows], 1)

    def begin(self, prompt_ids, hidden, reused) -> None:
        """The prompt's layer outputs become the first context (positions before
        ``reused`` came from a prompt cache: the drafter sees less, the output does
        not change)."""
        self.close()
        if hidden is None:
            raise ValueError("DSparkDrafter needs the target's layer outputs")
        self._add_context(hidden)

    def propose(self, last_token: int, k: int) -> list[int] | mx.array:
        k = min(k, self.max_draft_tokens)
        if k <= 0 or self._context is None:
            return []
        context, self._context = self._context, None
        self._lqs = []
        pick = self._draw if self.sampling is not None else _argmax
        drafts = self.model.draft_block(last_token, context, self.cache, k + 1, pick, mx.int32)
        return drafts[0]

    def _draw(self, logits: mx.array) -> mx.array:
        tokens, lq = self.sampling.draw(logits)
        self._lqs.append(lq.reshape(-1, lq.shape[-1])[0])
        return tokens

    def draft_logprobs(self) -> mx.array | None:
        """Each draft's log-distribution given the drafts before it (sampled), else None."""
        return mx.stack(self._lqs) if self._lqs else None

    def commit(self, verified, next_token, hidden) -> None:
        self._add_context(hidden)
        if self._context is not None:
            mx.async_eval(self._context)

    def memory_bytes(self) -> int:
        kv = [getattr(c, name, None) for c in self.cache for name in ("keys", "values")]
        return self._weights + sum(a.nbytes for a in kv if isinstance(a, mx.array))

    def close(self) -> None:
        self.cache = self.model.make_cache()
        self._context: mx.array | None = None
        self._lqs = []


def _argmax(logits: mx.array) -> mx.array:
    return mx.argmax(logits, axis=-1)


# -- loading


def load_dspark(loaded, folder: Path) -> DSparkDrafter:
    """A DSpark drafter from a published repo (``dspark`` or ``deepseek_v4_dspark``)."""
    from engine.drafters.mtp.sources import read_json

    config = read_json(Path(folder) / "config.json")

    def build():
        model = _vlm_call(folder, lambda: _load_drafter(folder))
        return _checked(model, loaded, folder.name, v4=is_v4_dspark(config))

    model = _cached(loaded, f"dspark:{Path(folder).resolve()}", build)
    return DSparkDrafter(loaded, model, Path(folder).name)


def load_builtin_dspark(loaded) -> DSparkDrafter:
    """The DSpark drafter a DeepSeek-V4(.1) checkpoint carries under ``mtp.*``, read
    with mlx-vlm's splitter (the tensors the separate repo would hold, in memory)."""
    folder = Path(loaded.path)

    def build():
        def load():
            from mlx_vlm.speculative.drafters.deepseek_v4_dspark.split import (
                DeepseekV4DsparkSplitter,
            )

            return DeepseekV4DsparkSplitter().load(folder, source_config=dict(loaded.config))

        model = _vlm_call(folder, load)
        return _checked(model, loaded, folder.name, v4=True)

    model = _cached(loaded, f"dspark:{folder.resolve()}:mtp", build)
    return DSparkDrafter(loaded, model, "built-in")


def _load_drafter(folder: Path):
    from mlx_vlm.speculative.drafters import load_drafter

    model, _kind = load_drafter(str(folder))
    return model


def _vlm_call(folder: Path, load):
    if why := mlx_vlm_missing():
        raise DecoderError(f"DSpark drafters {why}")
    try:
        return load()
    except ImportError as e:
        raise DecoderError(f"DSpark drafters need mlx-vlm's drafter classes ({e})") from None
    except Exception as e:  # corrupt or mismatched weights, a config it cannot take
        first = (str(e).strip().splitlines() or [""])[0][:300]
        raise DecoderError(
            f"{Path(folder).name}: could not load the DSpark drafter ({type(e).__name__}: {first})"
        ) from None


def _checked(model, loaded, where: str, v4: bool):
    """Our pairing checks on the loaded model, then bound to the target's embeddings
    and output head (mlx-vlm's own ``bind`` for a Qwen-style DSpark also insists on
    its verifier hooks, which our loop does not need)."""
    kind = type(model).__name__
    if kind not in ("DSparkDraftModel", "DeepseekV4DsparkDraftModel"):
        raise DecoderError(f"{where} holds a {kind}, not a {LABELS['dspark']}")
    try:
        n = num_layers(loaded.model)
    except HiddenStatesUnsupported as e:
        raise DecoderError(f"{where}: cannot read {loaded.path.name}'s layers ({e})") from None
    cfg = model.config
    text = loaded.config.get("text_config") or loaded.config
    target_type = str(text.get("model_type") or loaded.config.get("model_type") or "")
    ids, proposals = [int(i) for i in cfg.target_layer_ids], int(cfg.block_size) - 1
    want = None if v4 else int(getattr(cfg, "num_target_layers", 0) or 0)
    if why := dspark_refusal(ids, proposals, v4, want, n, target_type):
        raise DecoderError(f"{where}: {why}")
    if v4:
        model.bind(loaded.model.language_model if hasattr(loaded.model, "language_model")
                   else loaded.model)  # fmt: skip
    else:
        type(model).__mro__[1].bind(model, loaded.model)  # DFlashDraftModel.bind
        from engine.drafters.mtp.loader import _match_dtype

        _match_dtype(model, loaded.dtype)
    mx.eval(model.parameters())
    model.eval()
    return model


def _cached(loaded, key: str, build):
    store = loaded.extras.setdefault("vlm_drafters", {})
    if key not in store:
        store[key] = build()
    return store[key]
