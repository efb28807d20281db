"""Request bodies of the OpenAI and Ollama endpoints (pydantic: the served OpenAPI
schema comes from these). Unknown fields are ignored, as both APIs' servers do;
fields we accept but cannot honour are refused with a reason where they matter."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from engine.text_check import invalid_text_message, invalid_text_path

MAX_STOP = 16


class _Body(BaseModel):
    model_config = ConfigDict(extra="ignore")


class _Request(_Body):
    """A whole request body: its text must be valid Unicode (a tokenizer cannot take
    a lone surrogate), refused as a 400 naming the field."""

    @model_validator(mode="before")
    @classmethod
    def _valid_text(cls, data: Any) -> Any:
        where = invalid_text_path(data)
        if where is not None:
            raise PydanticCustomError("invalid_text", invalid_text_message(where), {"path": where})
        return data


# ------------------------------------------------------------------ shared


class FunctionDef(_Body):
    name: str = Field(min_length=1, max_length=256)
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class ToolDef(_Body):
    type: Literal["function"] = "function"
    function: FunctionDef


# ------------------------------------------------------------------ OpenAI


class ContentPart(_Body):
    type: str
    text: str | None = None


class FunctionCallIn(_Body):
    name: str
    arguments: str | dict[str, Any] = "{}"


class ToolCallIn(_Body):
    id: str | None = None
    type: Literal["function"] = "function"
    function: FunctionCallIn


class OpenAIMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: list[ToolCallIn] | None = None
    tool_call_id: str | None = None
    reasoning_content: str | None = None
    reasoning: str | None = None


class StreamOptions(_Body):
    include_usage: bool = False


class ResponseFormat(_Body):
    type: str = "text"


class _Sampling(_Request):
    """Sampling fields common to chat and text completions."""

    model: str = Field(description="a local model id, optionally MODEL<decoder>DECODER")
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, gt=0, le=1)
    top_k: int | None = Field(None, ge=0, description="extension (0 = off)")
    min_p: float | None = Field(None, ge=0, le=1, description="extension")
    repetition_penalty: float | None = Field(None, gt=0, le=10, description="extension")
    frequency_penalty: float | None = Field(None, ge=-2, le=2, description="accepted, not applied")
    presence_penalty: float | None = Field(None, ge=-2, le=2, description="accepted, not applied")
    seed: int | None = Field(None, ge=0, le=2**63 - 1)
    stop: str | list[str] | None = Field(None, max_length=MAX_STOP)
    n: int | None = Field(None, ge=1, le=1, description="only one choice per request")
    decoder: str | None = Field(
        None, description="extension: none, lookup, auto or a decoder id (the model tag wins)"
    )


class ChatCompletionRequest(_Sampling):
    messages: list[OpenAIMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)
    tools: list[ToolDef] | None = None
    tool_choice: str | dict[str, Any] | None = None
    parallel_tool_calls: bool | None = None
    reasoning_effort: Literal["none", "minimal", "low", "medium", "high", "xhigh"] | None = None
    response_format: ResponseFormat | None = None
    chat_template_kwargs: dict[str, Any] | None = None


class CompletionRequest(_Sampling):
    prompt: str | list[str] | list[int] = Field(
        description="text, a one-element list of text, or token ids"
    )
    logprobs: int | None = Field(None, ge=0, le=5)
    echo: bool = False
    suffix: str | None = None
    best_of: int | None = Field(None, ge=1, le=1)


# ------------------------------------------------------------------ Ollama


class OllamaFunctionCall(_Body):
    name: str
    arguments: dict[str, Any] | str = Field(default_factory=dict)


class OllamaToolCall(_Body):
    function: OllamaFunctionCall


class OllamaMessage(_Body):
    role: Literal["system", "user", "assistant", "tool"]
    content: str | None = ""
    thinking: str | None = None
    images: list[str] | None = None
    tool_calls: list[OllamaToolCall] | None = None
    tool_name: str | None = None


Think = bool | Literal["low", "medium", "high"] | None


class _OllamaBase(_Request):
    model: str = Field(description="a local model id, optionally MODEL<decoder>DECODER")
    stream: bool = True
    think: Think = None
    format: str | dict[str, Any] | None = None
    options: dict[str, Any] | None = None
    keep_alive: float | str | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = Field(None, ge=0, le=20)


class OllamaChatRequest(_OllamaBase):
    messages: list[OllamaMessage] = Field(default_factory=list)
    tools: list[ToolDef] | None = None


class OllamaGenerateRequest(_OllamaBase):
    prompt: str | None = None
    suffix: str | None = None
    system: str | None = None
    template: str | None = None
    context: list[int] | None = None
    raw: bool = False
    images: list[str] | None = None


class OllamaShowRequest(_Request):
    model: str | None = None
    name: str | None = None  # older clients
    verbose: bool | None = None
