import json

from app.library.catalog import ModelCatalog
from engine import paths


def make_model(name, model_type="llama", weight_bytes=1000, template="", tokenizer="tok-A"):
    folder = paths.models_dir() / name
    folder.mkdir(parents=True)
    (folder / "config.json").write_text(
        json.dumps({"model_type": model_type, "vocab_size": 100, "hidden_size": 8})
    )
    (folder / "model.safetensors").write_bytes(b"\0" * weight_bytes)
    (folder / "tokenizer.json").write_text(json.dumps({"model": tokenizer}))
    (folder / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
    return folder


def test_lists_chat_models_with_lookup_and_smaller_draft_models():
    make_model("Big-Chat", weight_bytes=5000)
    make_model("Small-Chat", weight_bytes=1000)
    make_model("Other-Family", model_type="gemma", weight_bytes=500)
    entries = {e.id: e for e in ModelCatalog().refresh()}
    assert set(entries) == {"Big-Chat", "Small-Chat", "Other-Family"}
    big = [d.value for d in entries["Big-Chat"].decoders]
    assert big[-1] == "lookup"  # best first: prompt lookup is the fallback
    assert "Small-Chat" in big  # a smaller model of the family drafts for a bigger one
    assert [d.value for d in entries["Small-Chat"].decoders] == ["lookup"]
    assert [d.value for d in entries["Other-Family"].decoders] == ["lookup"]


def test_empty_library_is_an_empty_catalog():
    assert ModelCatalog().refresh() == []


def test_thinking_modes_come_from_the_engine():
    make_model("Thinker", template="{% if enable_thinking %}<think>{% endif %}")
    (entry,) = ModelCatalog().refresh()
    assert entry.thinking_modes == ("off", "on")
