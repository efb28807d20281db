"""Tools for every model (the generic tool format), tool_choice and tool schema
checks, through the real openai and ollama clients on tiny models that call a tool."""

from __future__ import annotations

import json

import ollama
import openai
import pytest

from engine.server.tools import (
    GENERIC_START,
    generic_format,
    plan_tools,
    split_all,
    tools_problem,
)
from tests.engine.test_server_support import running_server, tiny_library

HI = [{"role": "user", "content": "What is the weather in Paris?"}]


def tool(name: str, **properties: str) -> dict:
    props = {k: {"type": v, "description": f"the {k}"} for k, v in properties.items()}
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": f"{name.replace('_', ' ')}: one of a coding harness's tools",
            "parameters": {"type": "object", "properties": props, "required": list(props)},
        },
    }


# Shaped like a coding harness's first request: a long system prompt, ten tools.
HARNESS_TOOLS = [
    tool("get_weather", city="string"),
    tool("read_file", path="string"),
    tool("write_file", path="string", content="string"),
    tool("edit_file", path="string", old="string", new="string"),
    tool("list_dir", path="string"),
    tool("grep", pattern="string", path="string"),
    tool("bash", command="string", timeout="integer"),
    tool("web_fetch", url="string"),
    tool("todo_write", items="array"),
    tool("task", prompt="string"),
]
HARNESS_SYSTEM = "You are a coding agent. Follow the rules below.\n" + "\n".join(
    f"Rule {i}: keep edits small, run the tests, explain what changed." for i in range(8)
)


@pytest.fixture(scope="module")
def library(tmp_path_factory):
    with tiny_library(tmp_path_factory.mktemp("tools-lib")) as models:
        yield models


@pytest.fixture(scope="module")
def server(library):
    from engine.service import EngineService

    svc = EngineService().start()
    with running_server(svc) as srv:
        yield srv
    svc.close()


@pytest.fixture(scope="module")
def oai(server):
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key="none", max_retries=0)


@pytest.mark.parametrize("model", ["tiny-caller", "tiny-tools"])
def test_a_harness_shaped_streaming_request_gets_tool_calls(oai, model):
    chunks = list(
        oai.chat.completions.create(
            model=model,
            messages=[{"role": "system", "content": HARNESS_SYSTEM}, *HI],
            tools=HARNESS_TOOLS,
            stream=True,
            stream_options={"include_usage": True},
            max_tokens=32000,
        )
    )
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert calls and calls[0].function.name == "get_weather"
    args = "".join(tc.function.arguments or "" for tc in calls)
    assert json.loads(args) == {"city": "Paris"}
    finals = [c.choices[0].finish_reason for c in chunks if c.choices]
    assert finals[-1] == "tool_calls"
    # No tool-call markup leaks into the visible text.
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert GENERIC_START not in text
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens > 1000 and usage.completion_tokens > 0


def test_the_generic_format_describes_the_tools_and_reads_results_back(oai):
    reply = oai.chat.completions.create(model="tiny-caller", messages=HI, tools=HARNESS_TOOLS[:1])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and not choice.message.content
    (call,) = choice.message.tool_calls
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    # A second turn with the call and its result in the history works too.
    history = [
        *HI,
        {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
        {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
    ]
    again = oai.chat.completions.create(model="tiny-caller", messages=history, tools=HARNESS_TOOLS)
    assert again.choices[0].message.tool_calls


def test_tool_choice_none_required_and_named(oai):
    none = oai.chat.completions.create(
        model="tiny-caller", messages=HI, tools=HARNESS_TOOLS, tool_choice="none"
    )
    assert not none.choices[0].message.tool_calls
    assert none.choices[0].finish_reason == "stop"
    named = {"type": "function", "function": {"name": "get_weather"}}
    for model, choice in [("tiny-caller", "required"), ("tiny-tools", "required"), ("tiny-tools", named)]:  # fmt: skip
        forced = oai.chat.completions.create(
            model=model, messages=HI, tools=HARNESS_TOOLS, tool_choice=choice, max_tokens=20
        )
        assert forced.choices[0].message.tool_calls, (model, choice)
        assert forced.choices[0].message.tool_calls[0].function.name == "get_weather"
    # The scripted model cannot finish a call begun for it mid-JSON (a real one does,
    # see test_plan_tools_forces_the_start_of_a_named_call); the request still succeeds.
    begun = oai.chat.completions.create(
        model="tiny-caller", messages=HI, tools=HARNESS_TOOLS, tool_choice=named, max_tokens=8
    )
    assert begun.choices[0].finish_reason in ("stop", "length", "tool_calls")


def one_tool(parameters: dict) -> dict:
    return {"tools": [{"type": "function", "function": {"name": "f", "parameters": parameters}}]}


def test_bad_tool_fields_are_400s_naming_the_field(oai):
    cases = [
        ({"tool_choice": {"type": "function", "function": {"name": "nope"}}}, "no tool named"),
        ({"tool_choice": "sometimes"}, "tool_choice"),
        ({"tools": [tool("f"), tool("f")]}, "defined twice"),
        ({"tools": [{"type": "function", "function": {"name": "has space"}}]}, "function name"),
        (
            one_tool({"type": "object", "properties": {"a": {"type": "text"}}}),
            "tools.0.function.parameters.properties.a.type",
        ),
        (
            one_tool({"type": "object", "required": "a"}),
            "tools.0.function.parameters.required",
        ),
    ]
    for extra, match in cases:
        body = {"tools": HARNESS_TOOLS, **extra}
        with pytest.raises(openai.BadRequestError, match=match):
            oai.chat.completions.create(model="tiny-caller", messages=HI, **body)
    with pytest.raises(openai.BadRequestError, match="requires tools"):
        oai.chat.completions.create(model="tiny-caller", messages=HI, tool_choice="required")


def test_ollama_serves_tools_on_a_model_without_a_tool_template(server):
    client = ollama.Client(host=server.url)
    assert "tools" in client.show("tiny-caller").capabilities
    reply = client.chat(model="tiny-caller", messages=HI, tools=HARNESS_TOOLS, stream=False)
    (call,) = reply.message.tool_calls
    assert call.function.name == "get_weather" and call.function.arguments == {"city": "Paris"}


def test_plan_tools_forces_the_start_of_a_named_call():
    fmt = generic_format("{{ messages }}")
    plan = plan_tools(fmt, [t for t in HARNESS_TOOLS], {"function": {"name": "bash"}}, "m")
    assert [t["function"]["name"] for t in plan.tools] == ["bash"]
    assert "you must call the function bash" in plan.system
    assert plan.prefix.startswith(GENERIC_START) and '"name": "bash"' in plan.prefix
    # The model completes the forced start; the parser reads the whole call.
    visible, calls = split_all(plan.fmt, plan.prefix + '{"command": "ls"}}\n</tool_call>')
    assert visible.strip() == "" and len(calls) == 1
    assert plan.fmt.parser(calls[0]) == [{"name": "bash", "arguments": {"command": "ls"}}]
    auto = plan_tools(fmt, HARNESS_TOOLS, "auto", "m")
    assert auto.prefix == "" and "must" not in auto.system
    assert all(json.dumps(t["function"]["name"]) in auto.system for t in HARNESS_TOOLS)


def test_tools_problem_accepts_real_schemas():
    assert tools_problem(HARNESS_TOOLS) is None
    nested = tool("deep")
    nested["function"]["parameters"]["properties"] = {
        "items": {"type": "array", "items": {"anyOf": [{"type": "string"}, {"type": "null"}]}},
        "opts": {"type": ["object", "null"], "additionalProperties": False},
    }
    assert tools_problem([nested]) is None
    nested["function"]["parameters"]["properties"]["items"]["items"]["anyOf"][1] = 3
    problem = tools_problem([nested])
    assert problem and problem[0].startswith(
        "tools.0.function.parameters.properties.items.items.anyOf.1"
    )
