"""Stored conversations with a model, as the app writes them: each reply the model's
own greedy tokens after the exact prompt it saw (for drafter training from chats)."""

from __future__ import annotations

from pathlib import Path

import mlx.core as mx

from engine.events import ChatMessage, TokenRecord
from engine.storage import ConversationStore

TOPICS = (
    "def add(a, b):",
    "tell me about cats",
    "for i in range(10):",
    "once upon a time",
    "what is a list?",
    "import os",
    "hello there",
    "the quick brown fox",
    "class Stack:",
    "why is the sky blue?",
    "x = [1, 2, 3]",
    "write a poem",
)


def greedy(loaded, ids: list[int], n: int) -> list[int]:
    from engine.kv_cache import new_cache
    from engine.target import forward

    cache = new_cache(loaded.model)
    logits, _ = forward(loaded.model, mx.array(ids)[None], cache, False)
    out = []
    for _ in range(n):
        token = int(mx.argmax(logits[0, -1]).item())
        out.append(token)
        logits, _ = forward(loaded.model, mx.array([[token]]), cache, False)
    return out


def store_chats(
    loaded, db: Path, model_id: str, topics=TOPICS, turns: int = 2, reply_tokens: int = 40
) -> int:
    """One conversation per topic, ``turns`` user/assistant exchanges each; returns the
    number of replies written."""
    replies = 0
    with ConversationStore(db) as store:
        for topic in topics:
            conv = store.create_conversation(topic)
            history: list[ChatMessage] = []
            for turn in range(turns):
                text = topic if turn == 0 else f"more about {topic}"
                store.add_message(conv.id, "user", text)
                history.append(ChatMessage("user", text))
                prompt = list(loaded.chat.render(history).token_ids)
                reply = greedy(loaded, prompt, reply_tokens)
                words = loaded.tokenizer.decode(reply)
                records = [
                    TokenRecord(i, t, loaded.tokenizer.decode([t]), -0.1, 0.5)
                    for i, t in enumerate(reply)
                ]
                store.add_message(
                    conv.id,
                    "assistant",
                    words,
                    model=model_id,
                    finish_reason="length",
                    prompt_token_ids=prompt,
                    tokens=records,
                )
                history.append(ChatMessage("assistant", words))
                replies += 1
    return replies
