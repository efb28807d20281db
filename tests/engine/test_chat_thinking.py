"""Chat templates and thinking modes, on a tiny model whose template has enable_thinking."""

from __future__ import annotations

import pytest

from engine.events import ChatMessage, Finished, Generate, LoadModel, TokenEvent
from engine.model_loader import load_model
from engine.settings import SamplingSettings
from tests.tiny_models import make_tiny_model


@pytest.fixture(scope="module")
def thinker(tmp_path_factory):
    return str(make_tiny_model(tmp_path_factory.mktemp("think") / "thinker", thinking=True))


def test_thinking_modes_follow_the_template(thinker, tmp_path):
    loaded = load_model(thinker)
    assert loaded.chat.thinking_modes() == ("off", "on")
    msgs = (ChatMessage("user", "hi"),)
    on = loaded.chat.render(msgs, thinking="on")
    off = loaded.chat.render(msgs, thinking="off")
    assert on.text.endswith("<think>\n") and on.starts_in_thinking
    assert off.text.endswith("</think>\n\n") and not off.starts_in_thinking
    plain = load_model(str(make_tiny_model(tmp_path / "plain")))
    assert plain.chat.thinking_modes() == ("off",)


def test_model_loaded_names_the_models_thinking_markers(service, thinker, tmp_path):
    assert service.run(LoadModel("t", thinker)).think_tags == ("<think>", "</think>")
    plain = str(make_tiny_model(tmp_path / "plain"))
    assert service.run(LoadModel("p", plain)).think_tags is None


def test_thinking_text_is_kept_apart_from_the_answer(service, thinker):
    sampling = SamplingSettings(max_tokens=12, max_loop_count=0)
    events = list(
        service.stream(
            Generate(
                "t1",
                thinker,
                messages=(ChatMessage("user", "hi"),),
                thinking="on",
                sampling=sampling,
            )
        )
    )
    final = events[-1]
    assert isinstance(final, Finished)
    tokens = [e for e in events if isinstance(e, TokenEvent)]
    # The template opened a think block; this random model never closes it.
    assert all(t.channel == "thinking" for t in tokens)
    assert final.text == "" and final.reasoning


def test_continue_after_closed_reasoning_answers(service, thinker):
    """Edit-and-continue: closing the think block by hand moves generation to the answer."""
    msgs = (ChatMessage("user", "hi"), ChatMessage("assistant", "Sure", reasoning="ok"))
    sampling = SamplingSettings(max_tokens=6, max_loop_count=0)
    events = list(
        service.stream(
            Generate(
                "t2", thinker, messages=msgs, thinking="on", continue_final=True, sampling=sampling
            )
        )
    )
    final = events[-1]
    assert isinstance(final, Finished)
    assert all(e.channel == "answer" for e in events if isinstance(e, TokenEvent))
    assert final.reasoning == ""
    assert "<think>\nok</think>\n\nSure" in service_prompt_text(thinker, msgs)


def service_prompt_text(model, msgs) -> str:
    loaded = load_model(model)
    return loaded.chat.render(msgs, thinking="on", continue_final=True).text


def test_thinking_modes_of_a_folder_from_its_chat_template(tmp_path):
    import json

    from engine.chat import folder_thinking_modes

    def folder(name, template):
        f = tmp_path / name
        f.mkdir()
        (f / "tokenizer_config.json").write_text(json.dumps({"chat_template": template}))
        return f

    assert folder_thinking_modes(folder("plain", "")) == ("off",)
    think = folder("think", "{% if enable_thinking %}<think>{% endif %}")
    assert folder_thinking_modes(think) == ("off", "on")
    assert folder_thinking_modes(folder("effort", "{{ reasoning_effort }}")) == ("off", "on", "max")
    jinja = tmp_path / "jinja"
    jinja.mkdir()
    (jinja / "chat_template.jinja").write_text("<think>")
    assert folder_thinking_modes(jinja) == ("off", "on")
