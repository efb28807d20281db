"""Eagle3Drafter: EAGLE-3 heads (Speculators and SGLang/EAGLE repos) behind the one loop.

An EAGLE-3 head is one decoder layer that reads the outputs of three target layers
(``hidden_layers``, fused by its ``fc``) and the embedding of the next token, and
predicts the token after it, often in a reduced draft vocabulary (``d2t`` maps a draft
id to the target's: draft id + d2t[draft id]). Drafts chain from the head's own
hidden state: k drafts are the one it predicted when the last round was verified and
k - 1 more steps. Its KV cache gets speculative entries for those steps; ``commit``
trims them and runs the head over the verified positions (target features, the
tokens that follow them), which writes exact entries and predicts the next round's
first draft. mlx-vlm's Eagle3DraftModel (MIT) does the drafting; we map the published
layouts onto it and keep each request's state (the model is shared per target, and
interleaved requests each have their own cache). Engine thread only.
"""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx
from mlx.utils import tree_flatten

from engine.drafters import kinds
from engine.drafters.base import DraftSampling
from engine.drafters.vlm_load import cached, load_weights, read_weights, vlm_module
from engine.errors import DecoderError
from engine.target import HiddenStatesUnsupported, num_layers

DEFAULT_MAX_DRAFTS = 4  # adaptive k's ceiling unless the config's block is longer
# mlx-vlm keeps a request's drafting state on the model; these are swapped per drafter.
_STATE = ("_cache", "_seed_token", "_seed_hidden", "_next_position", "_round_appended")


class Eagle3Drafter:
    needs_hidden = True

    def __init__(self, model, own_bytes: int, label: str):
        """``model``: an mlx-vlm Eagle3DraftModel bound to the target."""
        self.model = model
        self.name = f"EAGLE-3 ({label})"
        cfg = model.config
        self.hidden_layers = tuple(int(i) for i in cfg.capture_layer_ids)
        self.max_draft_tokens = max(int(cfg.block_size) - 1, DEFAULT_MAX_DRAFTS)
        self.sampling: DraftSampling | None = None  # set by the loop per request
        self._to_target = (
            mx.arange(model.draft_vocab_size, dtype=mx.int32) + model.d2t
            if model.d2t is not None
            else None
        )
        self._weights = own_bytes
        self.close()

    # -- mlx-vlm's model, with this request's state in it for the call

    def _call(self, method: str, *args):
        m = self.model
        for name, value in self._state.items():
            setattr(m, name, value)
        try:
            return getattr(m, method)(*args, mx.int32, self.sampling is None)
        finally:
            for name in _STATE:
                self._state[name] = getattr(m, name)

    def _sampler(self):
        return _argmax if self.sampling is None else self._draw

    def _draw(self, logits: mx.array) -> mx.array:
        """Sample a draft id; keep its distribution over the target's vocabulary."""
        tokens, lq = self.sampling.draw(logits)
        lq = lq.reshape(-1, lq.shape[-1])[0]
        if self._to_target is not None:
            full = mx.full((self.model.target_vocab_size,), -mx.inf, dtype=lq.dtype)
            full[self._to_target] = lq
            lq = full
        self._lqs.append(lq)
        return tokens

    # -- the Drafter protocol

    def begin(self, prompt_ids, hidden, reused) -> None:
        """Keep the prompt's features; the head runs over them once the first token
        (which pairs with the last position) is known. Positions before ``reused``
        came from a prompt cache: the head sees less, the output does not change."""
        self.close()
        if hidden is None:
            raise ValueError("Eagle3Drafter needs the target's layer outputs")
        hidden = hidden.reshape(-1, hidden.shape[-1])
        ids = list(prompt_ids)[reused:]
        n = min(len(ids), hidden.shape[0])
        if n:
            self._pending = (ids[len(ids) - n :], hidden[hidden.shape[0] - n :])

    def _prefill(self, first: int) -> None:
        if self._pending is None:
            return
        ids, hidden = self._pending
        self._pending = None
        self._lqs = []
        self._call("prefill_from_target_hidden", mx.array([ids]), hidden[None], first,
                   self._sampler())  # fmt: skip
        self._seed_lq = self._lqs[-1] if self._lqs else None

    def propose(self, last_token: int, k: int) -> list[int] | mx.array:
        if k <= 0:
            return []
        self._prefill(last_token)
        if self._state["_seed_token"] is None:
            return []
        self._lqs = [self._seed_lq] if self._seed_lq is not None else []
        drafts = self._call("draft_block", last_token, None, None, k + 1, self._sampler())
        return drafts[0]

    def draft_logprobs(self) -> mx.array | None:
        """Each draft's log-distribution (over the target's vocabulary) given the
        drafts before it, when sampled; else None."""
        return mx.stack(self._lqs) if self.sampling is not None and self._lqs else None

    def commit(self, verified, next_token, hidden) -> None:
        self._prefill(verified[0])  # drafting paused from the start: the prompt first
        if hidden is None or hidden.shape[0] == 0:
            return
        hidden = hidden.reshape(-1, hidden.shape[-1])
        accepted = len(verified) - 1
        drafts = mx.array([list(verified[1:]) or [0]], dtype=mx.int32)
        self._lqs = []
        self._call("accept_verified_tokens", hidden[None], drafts, accepted, [int(next_token)],
                   self._sampler())  # fmt: skip
        self._seed_lq = self._lqs[-1] if self._lqs else None
        mx.async_eval(self._state["_seed_token"], self._state["_seed_hidden"])

    def memory_bytes(self) -> int:
        kv = [getattr(c, n, None) for c in self._state["_cache"] for n in ("keys", "values")]
        return self._weights + sum(a.nbytes for a in kv if isinstance(a, mx.array))

    def close(self) -> None:
        self._state = {
            "_cache": self.model.make_cache(),
            "_seed_token": None,
            "_seed_hidden": None,
            "_next_position": 1,
            "_round_appended": 0,
        }
        self._pending: tuple[list[int], mx.array] | None = None
        self._seed_lq: mx.array | None = None
        self._lqs: list[mx.array] = []


def _argmax(logits: mx.array) -> mx.array:
    return mx.argmax(logits, axis=-1)


# -- loading


def vlm_config(cfg: dict, target_layers: int) -> dict:
    """A published EAGLE-3 config as mlx-vlm's Eagle3Config takes it: SGLang's flat
    layout nested as Speculators', the draft vocabulary the full one when none is
    declared, and the layers read (ours: see kinds.eagle3_layers) spelled out."""
    layer = kinds.eagle3_layer_config(cfg)
    draft, _ = kinds.eagle3_vocab(cfg)
    capture = kinds.eagle3_layers(cfg, target_layers)
    out = {k: v for k, v in cfg.items() if k != "eagle_aux_hidden_state_layer_ids"}
    out["transformer_layer_config"] = layer
    if draft:
        out["draft_vocab_size"] = draft
    out["target_layer_ids"] = [i + 1 for i in capture]  # mlx-vlm's hidden-states indices
    out["capture_layer_ids"] = capture
    return out


def published_names(weights: dict[str, mx.array]) -> dict[str, mx.array]:
    """Tensor names as mlx-vlm's class has them: SGLang/EAGLE's ``midlayer.*`` is
    ``layers.0.*``; a ``model.`` prefix (vLLM-style exports) is dropped."""
    out = {}
    for key, value in weights.items():
        key = key.removeprefix("model.")
        if key.startswith("midlayer."):
            key = "layers.0." + key[len("midlayer.") :]
        out[key] = value
    return out


def load_eagle3(loaded, folder: Path) -> Eagle3Drafter:
    """An EAGLE-3 head for ``loaded`` from a published repo (DecoderError if not)."""
    from engine.drafters.mtp.sources import read_json

    folder = Path(folder)
    config = read_json(folder / "config.json")

    def build():
        module = vlm_module("eagle3")
        where = folder.name
        try:
            n = num_layers(loaded.model)
        except HiddenStatesUnsupported as e:
            raise DecoderError(f"{where}: cannot read {loaded.path.name}'s layers ({e})") from None
        if why := kinds.check_eagle3(config, n):
            raise DecoderError(f"{where}: {why}")
        try:
            model = module.Model(module.ModelConfig.from_dict(vlm_config(config, n)))
        except Exception as e:  # a config the class cannot take
            raise DecoderError(f"{where}: not a valid EAGLE-3 config ({e})") from None
        weights = model.sanitize(published_names(read_weights(folder)))
        embed = _target_embedding(loaded.model, model)
        if embed is not None:  # EAGLE-3 heads use the target's (frozen) embeddings
            weights.pop("embed_tokens.weight", None)
            model.embed_tokens = None
        _check_d2t(model, weights, where)
        load_weights(model, weights, where, config, loaded.dtype)
        own = sum(v.nbytes for _, v in tree_flatten(model.parameters()))
        if embed is not None:
            model.embed_tokens = embed
        return model, own

    model, own = cached(loaded, f"eagle3:{folder.resolve()}", build)
    from engine.compat import model_name

    return Eagle3Drafter(model, own, model_name(folder))  # a hub snapshot: its repo id


def _target_embedding(target, head):
    """The target's token embedding when it fits the head (its vocabulary and width)."""
    for path in (("model",), ("language_model", "model"), ()):
        m = target
        for name in path:
            m = getattr(m, name, None)
        embed = getattr(m, "embed_tokens", None)
        if embed is not None:
            break
    else:
        return None
    weight = getattr(embed, "weight", None)
    if weight is None or weight.shape[0] < head.target_vocab_size:
        return None
    return embed if embed(mx.array([[0]])).shape[-1] == head.hidden_size else None


def _check_d2t(model, weights: dict, where: str) -> None:
    """A reduced vocabulary's map must land inside the target's vocabulary."""
    if model.d2t is None:
        return
    d2t = weights.get("d2t")
    if d2t is None:
        raise DecoderError(
            f"{where}: its reduced vocabulary ({model.draft_vocab_size} tokens) has no d2t "
            "tensor mapping draft ids to the model's"
        )
    if d2t.shape != (model.draft_vocab_size,):
        raise DecoderError(
            f"{where}: d2t has shape {tuple(d2t.shape)}, draft_vocab_size is "
            f"{model.draft_vocab_size}"
        )
    ids = mx.arange(model.draft_vocab_size, dtype=mx.int32) + d2t.astype(mx.int32)
    lo, hi = int(mx.min(ids).item()), int(mx.max(ids).item())
    if lo < 0 or hi >= model.target_vocab_size:
        raise DecoderError(
            f"{where}: d2t maps draft ids to {lo}..{hi}, outside the model's vocabulary "
            f"of {model.target_vocab_size}"
        )
