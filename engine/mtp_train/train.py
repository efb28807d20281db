"""Self-distillation of an MTP head from cached target states.

The label at position i is the target's own next-token distribution at i + 1
(its top-K, renormalised over the draft vocabulary): the head learns to draft what
the target would say, not what the text says. Loss is soft cross-entropy at depth 1
plus, weighted, at depth 2 (the head chained on itself). AdamW with warm-up and
cosine decay; checkpoints hold head, optimizer and step, and batches are drawn from
a per-step seed, so a resumed run continues exactly where it stopped.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import mlx.core as mx
import mlx.nn as nn
import mlx.optimizers as optim
import numpy as np
from mlx.utils import tree_flatten, tree_unflatten

from engine.mtp_train.data import Dataset
from engine.mtp_train.head import draft_rows, forward_depths, init_head, new_head
from engine.target import split_model


@dataclass
class TrainConfig:
    steps: int = 1200
    batch: int = 8  # windows per step
    window: int = 256  # positions per window
    lr: float = 1e-3
    warmup: int = 40
    weight_decay: float = 0.01
    depths: int = 2  # 1: depth-1 only; 2: also train the chained second draft
    depth2_weight: float = 0.5
    draft_vocab: int = 8192  # 0: full vocabulary
    val_every: int = 100
    minutes: float = 0.0  # stop (with a checkpoint) after this long; 0 = no limit
    seed: int = 0
    init: str = "target"  # see head.init_head: target | random | a decoder folder
    val_fraction: int = 10  # every n-th sequence is held out


@dataclass
class TrainState:
    step: int = 0
    seconds: float = 0.0
    best: dict = field(default_factory=dict)  # validation metrics of the best step
    history: list[dict] = field(default_factory=list)


def choose_draft_vocab(data: Dataset, train_seqs: list[int], size: int) -> np.ndarray:
    """The ``size`` ids the target predicts most often (argmax counts most), sorted."""
    rows = np.concatenate(
        [np.arange(*data.sequence(s).indices(len(data.tokens))) for s in train_seqs]
    )
    weights = np.concatenate([[1.0], np.full(data.top_ids.shape[1] - 1, 0.05)])
    counts = np.zeros(int(data.top_ids.max()) + 1)
    np.add.at(counts, data.top_ids[rows].ravel(), np.tile(weights, len(rows)))
    np.add.at(counts, data.tokens[rows], 0.5)  # tokens the text itself uses
    best = np.argsort(-counts, kind="stable")[:size]
    return np.sort(best).astype(np.int32)


class Batches:
    """Windows of cached positions, as arrays the loss takes."""

    def __init__(self, data: Dataset, seqs: list[int], vocab_map: np.ndarray, window: int):
        self.data, self.seqs, self.map, self.window = data, seqs, vocab_map, window
        self.lengths = np.array([data.offsets[s + 1] - data.offsets[s] for s in seqs])

    def sample(self, rng: np.random.Generator, n: int) -> dict[str, mx.array]:
        p = self.lengths / self.lengths.sum()
        picks = rng.choice(len(self.seqs), size=n, p=p)
        starts = [int(rng.integers(0, max(1, self.lengths[i] - self.window))) for i in picks]
        return self.gather([(self.seqs[i], st) for i, st in zip(picks, starts, strict=True)])

    def windows(self) -> list[tuple[int, int]]:
        """Every window of every sequence, from its start (validation)."""
        out = []
        for s, n in zip(self.seqs, self.lengths, strict=True):
            out += [(s, st) for st in range(0, max(1, n - 2), self.window)]
        return out

    def gather(self, picks: list[tuple[int, int]]) -> dict[str, mx.array]:
        d = self.data
        idx, n1, n2 = [], [], []
        for s, start in picks:
            lo, n = int(d.offsets[s]), int(d.offsets[s + 1] - d.offsets[s])
            pos = start + np.arange(self.window)
            n1.append(pos < n - 1)  # row i + 1 exists: a depth-1 label
            n2.append(pos < n - 2)  # row i + 2 exists: a depth-2 label
            idx.append(lo + np.minimum(pos, n - 1))
        idx = np.stack(idx)
        hi = len(d.tokens) - 1
        nxt, nxt2 = np.minimum(idx + 1, hi), np.minimum(idx + 2, hi)
        out = {
            "hidden": mx.array(d.hidden[idx].astype(np.float32)),
            "next": mx.array(d.tokens[nxt]),
            "mask1": mx.array(np.stack(n1).astype(np.float32)),
            "mask2": mx.array(np.stack(n2).astype(np.float32)),
        }
        for tag, rows in (("1", nxt), ("2", nxt2)):
            ids = self.map[d.top_ids[rows]]  # (B, T, K) draft indices, -1 outside
            w = np.exp(d.top_lp[rows].astype(np.float32)) * (ids >= 0)
            total = w.sum(-1, keepdims=True)
            out[f"ids{tag}"] = mx.array(np.maximum(ids, 0))
            out[f"w{tag}"] = mx.array(np.where(total > 0, w / np.maximum(total, 1e-9), 0.0))
            out[f"best{tag}"] = mx.array(ids[..., 0])  # target argmax, -1 if not draftable
        return out


class Trainer:
    def __init__(self, loaded, data: Dataset, folder: Path, cfg: TrainConfig):
        self.loaded, self.data, self.folder, self.cfg = loaded, data, folder, cfg
        folder.mkdir(parents=True, exist_ok=True)
        n = data.n_sequences
        self.val_seqs = [s for s in range(n) if s % cfg.val_fraction == 0]
        self.train_seqs = [s for s in range(n) if s % cfg.val_fraction != 0]
        body, _ = split_model(loaded.model)
        self.embed = body.embed_tokens
        vocab = int(loaded.config.get("vocab_size") or data.top_ids.max() + 1)
        ids_file = folder / "draft_vocab_ids.npy"
        if ids_file.exists():
            self.draft_ids = np.load(ids_file)
        elif cfg.draft_vocab and cfg.draft_vocab < vocab:
            self.draft_ids = choose_draft_vocab(data, self.train_seqs, cfg.draft_vocab)
            np.save(ids_file, self.draft_ids)
        else:
            self.draft_ids = np.arange(vocab, dtype=np.int32)
        vocab_map = np.full(max(vocab, int(data.top_ids.max()) + 1), -1, dtype=np.int32)
        vocab_map[self.draft_ids] = np.arange(len(self.draft_ids), dtype=np.int32)
        self.rows = draft_rows(loaded.model, self.draft_ids)
        self.train = Batches(data, self.train_seqs, vocab_map, cfg.window)
        self.val = Batches(data, self.val_seqs, vocab_map, cfg.window)
        mx.random.seed(cfg.seed)  # the head's random initial weights
        self.head = new_head(loaded.config)
        first = data.sequence(self.train_seqs[0])
        init_head(self.head, loaded.model, cfg.init, data.tokens[first].tolist())
        decay = optim.cosine_decay(cfg.lr, max(1, cfg.steps - cfg.warmup), cfg.lr * 0.1)
        warm = optim.linear_schedule(cfg.lr * 0.05, cfg.lr, max(1, cfg.warmup))
        schedule = optim.join_schedules([warm, decay], [cfg.warmup])
        self.opt = optim.AdamW(learning_rate=schedule, weight_decay=cfg.weight_decay)
        self.state = TrainState()
        self.coverage = self._coverage()
        self._load_checkpoint()

    # ---------------------------------------------------------------- loss

    def _logits(self, out: mx.array) -> mx.array:
        return out @ self.rows.T

    def _outputs(self, batch: dict, depths: int) -> list[mx.array]:
        return forward_depths(self.head, self.embed, batch["hidden"], batch["next"], depths)

    def loss(self, batch: dict) -> mx.array:
        outs = self._outputs(batch, self.cfg.depths)
        total = mx.array(0.0)
        for depth, out in enumerate(outs, start=1):
            logp = nn.log_softmax(self._logits(out), axis=-1)
            picked = mx.take_along_axis(logp, batch[f"ids{depth}"], axis=-1)
            mask = batch[f"mask{depth}"]
            ce = -(batch[f"w{depth}"] * picked).sum(-1) * mask
            weight = 1.0 if depth == 1 else self.cfg.depth2_weight
            total = total + weight * ce.sum() / mx.maximum(mask.sum(), 1.0)
        return total

    # ---------------------------------------------------------------- validation

    def _coverage(self) -> float:
        """Share of validation positions whose target argmax is in the draft vocab."""
        rows = np.concatenate(
            [
                np.arange(*self.data.sequence(s).indices(len(self.data.tokens)))
                for s in self.val_seqs
            ]
        )
        return float(np.isin(self.data.top_ids[rows, 0], self.draft_ids).mean())

    def validate(self, max_windows: int = 400) -> dict:
        """Acceptance per data kind: depth 1 (first draft == target argmax) and depth 2
        given depth 1 was right (the second draft, chained)."""
        picks = self.val.windows()[:max_windows]
        hits: dict[str, np.ndarray] = {}
        for lo in range(0, len(picks), self.cfg.batch):
            part = picks[lo : lo + self.cfg.batch]
            batch = self.val.gather(part)
            outs = self._outputs(batch, 2)
            preds = [mx.argmax(self._logits(o), axis=-1) for o in outs]
            mx.eval(preds)
            a1 = np.array(preds[0] == batch["best1"]) & np.array(batch["mask1"] > 0)
            a2 = np.array(preds[1] == batch["best2"])
            m1, m2 = np.array(batch["mask1"] > 0), np.array(batch["mask2"] > 0)
            for b, (s, _) in enumerate(part):
                kind = self.data.kinds[s]
                acc = hits.setdefault(kind, np.zeros(4))
                # depth-2 counts only where depth 1 was accepted (how chaining is used)
                acc += [
                    a1[b].sum(),
                    m1[b].sum(),
                    (a1[b] & a2[b] & m2[b]).sum(),
                    (a1[b] & m2[b]).sum(),
                ]
        metrics: dict = {}
        tot = np.zeros(4)
        for kind, (h1, n1, h2, n2) in sorted(hits.items()):
            metrics[kind] = {
                "acc1": h1 / max(n1, 1),
                "acc2_given_1": h2 / max(n2, 1),
                "positions": int(n1),
            }
            tot += [h1, n1, h2, n2]
        metrics["all"] = {
            "acc1": tot[0] / max(tot[1], 1),
            "acc2_given_1": tot[2] / max(tot[3], 1),
            "positions": int(tot[1]),
        }
        gen = [metrics[k] for k in ("code", "chat", "story") if k in metrics]
        metrics["score"] = (
            float(np.mean([m["acc1"] for m in gen])) if gen else metrics["all"]["acc1"]
        )
        return json.loads(json.dumps(metrics, default=float))

    # ---------------------------------------------------------------- checkpoints

    def _save(self, name: str) -> None:
        mx.save_safetensors(
            str(self.folder / f"{name}.tmp.safetensors"), dict(tree_flatten(self.head.parameters()))
        )
        (self.folder / f"{name}.tmp.safetensors").replace(self.folder / f"{name}.safetensors")

    def save_checkpoint(self) -> None:
        self._save("head")
        opt = dict(tree_flatten(self.opt.state))
        mx.save_safetensors(str(self.folder / "optimizer.tmp.safetensors"), opt)
        (self.folder / "optimizer.tmp.safetensors").replace(self.folder / "optimizer.safetensors")
        meta = {"state": asdict(self.state), "config": asdict(self.cfg)}
        (self.folder / "state.tmp.json").write_text(json.dumps(meta, indent=1))
        (self.folder / "state.tmp.json").replace(self.folder / "state.json")

    def _load_checkpoint(self) -> None:
        meta_file = self.folder / "state.json"
        if not meta_file.exists():
            return
        meta = json.loads(meta_file.read_text())
        self.state = TrainState(**meta["state"])
        self.head.load_weights(str(self.folder / "head.safetensors"))
        opt = mx.load(str(self.folder / "optimizer.safetensors"))
        self.opt.state = tree_unflatten(list(opt.items()))
        mx.eval(self.head.parameters(), self.opt.state)

    def best_head_path(self) -> Path:
        best = self.folder / "best.safetensors"
        return best if best.exists() else self.folder / "head.safetensors"

    # ---------------------------------------------------------------- loop

    def run(
        self,
        on_step: Callable[[TrainState, dict], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> TrainState:
        """Train up to ``cfg.steps`` (or ``cfg.minutes``). ``should_stop`` is asked after
        every step; when it says so, the run checkpoints and returns early (resumable)."""
        cfg, st = self.cfg, self.state
        loss_and_grad = nn.value_and_grad(self.head, self.loss)
        start = time.perf_counter() - st.seconds
        budget_end = (time.perf_counter() + cfg.minutes * 60) if cfg.minutes else None
        running = None
        while st.step < cfg.steps:
            rng = np.random.default_rng((cfg.seed, st.step))
            batch = self.train.sample(rng, cfg.batch)
            loss, grads = loss_and_grad(batch)
            self.opt.update(self.head, grads)
            mx.eval(loss, self.head.parameters(), self.opt.state)
            st.step += 1
            st.seconds = time.perf_counter() - start
            value = float(loss.item())
            running = value if running is None else 0.95 * running + 0.05 * value
            info: dict = {"loss": running}
            out_of_time = budget_end is not None and time.perf_counter() > budget_end
            if st.step % cfg.val_every == 0 or st.step == cfg.steps or out_of_time:
                metrics = self.validate()
                st.history.append(
                    {"step": st.step, "seconds": round(st.seconds), "loss": running, **metrics}
                )
                if metrics["score"] >= st.best.get("score", -1.0):
                    st.best = {"step": st.step, **metrics}
                    self._save("best")
                self.save_checkpoint()
                info["val"] = metrics
            if on_step:
                on_step(st, info)
            if out_of_time:
                break
            if should_stop is not None and should_stop():
                self.save_checkpoint()
                break
        return st
