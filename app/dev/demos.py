"""What ``python -m app.dev.demo NAME`` shows: one factory per widget, each building it
on the fake engine's bridge and catalog. The widgets themselves know nothing of demos.
"""

from __future__ import annotations

import random
from collections.abc import Callable

from PySide6.QtWidgets import QWidget

from app.bridge import EngineBridge
from app.library.catalog import ModelCatalog
from engine.events import ChatMessage, Generate
from engine.settings import DecoderSettings
from engine.storage import ConversationStore

Factory = Callable[[EngineBridge, ModelCatalog], QWidget]


def demo_store() -> ConversationStore:
    """A store with a few chats (in the demo's throwaway home, or yours if it is empty)."""
    store = ConversationStore()
    if not store.list_conversations():
        for title, prompt in (
            ("Fizzbuzz in Python", "Write fizzbuzz in Python"),
            ("Speculative decoding, briefly", "Explain speculative decoding in three sentences."),
            ("Robot names", "Give me five names for a friendly robot, as a list."),
        ):
            conv = store.create_conversation(title)
            store.add_message(conv.id, "user", prompt)
            store.add_message(conv.id, "assistant", "Sure.", finish_reason="stop")
    return store


def main_window(bridge, catalog):
    """The whole window on the fake models; --send PROMPT compares it in both panes."""
    from app.main_window import MainWindow

    return MainWindow(bridge, catalog)


def chat_pane(bridge, catalog):
    """A pane on the fake models; a suggestion chip sends itself."""
    from app.chat.pane import ChatPane

    pane = ChatPane(bridge, "Pane 1")
    pane.set_models(catalog.models())
    pane.sig_suggestion.connect(pane.send)
    return pane


def transcript_view(bridge, catalog):
    """A transcript fed straight from the fake engine (no pane around it)."""
    from app.chat.pane_model import PaneTranscript
    from app.chat.transcript_view import TranscriptView

    view = TranscriptView()
    transcript = PaneTranscript()
    transcript.add_user("Write fizzbuzz in Python")
    transcript.start_assistant("Qwen3-0.6B", {})
    bridge.sig_tokens.connect(
        lambda _r, toks: (transcript.append_tokens(toks), view.sync(transcript, True))
    )
    bridge.sig_finished.connect(lambda _r, ev: (transcript.finish(ev), view.sync(transcript, True)))
    bridge.submit(
        Generate(
            "demo",
            "Qwen3-0.6B",
            (ChatMessage("user", "fizzbuzz"),),
            thinking="on",
            decoder=DecoderSettings("lookup"),
        )
    )
    view.sync(transcript, True)
    return view


def metrics_plot(bridge, catalog):
    """The strip following one fake generation with a drafter."""
    from app.chat.metrics_plot import MetricsStrip

    strip = MetricsStrip()
    strip.reset(drafting=True)
    bridge.sig_stats.connect(lambda _r, st: strip.add_stats(st))
    bridge.sig_finished.connect(lambda _r, ev: strip.finish(ev.stats))
    bridge.submit(
        Generate(
            "demo",
            "SmolLM2-135M-Instruct",
            (ChatMessage("user", "hi"),),
            decoder=DecoderSettings("lookup", 3),
        )
    )
    return strip


def token_inspector(bridge, catalog):
    """The inspector on a scripted reply's tokens (use the arrows to step through)."""
    from app.chat.pane_model import Message
    from app.chat.token_inspector import TokenInspector, as_record
    from app.dev.fake_engine import FakeEngineService

    svc = FakeEngineService()
    rng = random.Random(3)
    message = Message("assistant", "Here is", finish_reason="stop", stats={"drafted": 4})
    for i, text in enumerate(("Here", " is", " a", " compact")):
        message.tokens.append(as_record(svc._token("demo", i, "answer", text, i % 2 == 1, rng)))
    inspector = TokenInspector()
    inspector.setFixedWidth(300)
    inspector.show_token(message, 1)
    return inspector


def prompt_box(bridge, catalog):
    """The prompt box for two panes; sending prints what would be sent."""
    from app.chat.prompt_box import PromptBox

    box = PromptBox()
    box.set_panes(2, "Pane 1")
    box.sig_send.connect(lambda text, to_all: print(f"send to_all={to_all}: {text}"))
    return box


def inference_controls(bridge, catalog):
    """The controls for a thinking model; every change prints the settings."""
    from app.chat.inference_controls import InferenceControls

    controls = InferenceControls()
    controls.set_model(catalog.models()[-1])
    controls.sig_changed.connect(lambda: print(controls.settings()))
    return controls


def conversation_list(bridge, catalog):
    """The Chats list over a demo store; actions print what they would do."""
    from app.conversations.conversation_list import ConversationList

    chats = ConversationList(demo_store())
    chats.setFixedWidth(264)
    for name in ("sig_open", "sig_new", "sig_rename", "sig_clone", "sig_delete"):
        getattr(chats, name).connect(lambda *a, n=name: print(n, *a))
    return chats


def sidebar(bridge, catalog):
    """The sidebar over a demo store, with a notice shown."""
    from app.sidebar import Sidebar

    side = Sidebar(demo_store())
    side.show_notice("Notices like a repaired database appear here until dismissed.")
    side.conversations.sig_open.connect(lambda cid: print("open", cid))
    return side


def models_page(bridge, catalog):
    """The Models page (add --fake-hub to browse made-up repos)."""
    from app.library.models_page import ModelsPage

    return ModelsPage()


def model_search(bridge, catalog):
    """Results for an empty query from whatever hub HF_ENDPOINT names (or --fake-hub)."""
    from app.library.downloads import DownloadManager
    from app.library.model_search import SearchResults

    results = SearchResults(DownloadManager())
    results.search("")
    return results


def local_library(bridge, catalog):
    """The library of this computer (HF cache and imported models)."""
    from app.library.downloads import DownloadManager
    from app.library.local_library import LocalLibrary

    library = LocalLibrary(DownloadManager())
    library.refresh()
    return library


def first_run(bridge, catalog):
    """The page importing a fake starter; it fails once to show Retry."""
    from app.dev.fake_engine import fake_starter
    from app.library.first_run import FirstRunPage, StarterImport

    page = FirstRunPage()
    tries = []

    def starter(progress):
        tries.append(1)
        return fake_starter(catalog, seconds=3.0, fail=len(tries) == 1)(progress)

    importer = StarterImport(starter, page)
    importer.sig_progress.connect(page.show_progress)
    importer.sig_failed.connect(page.show_error)
    importer.sig_done.connect(lambda path: page.show_progress(f"Ready: {path}", 1.0))
    page.sig_retry.connect(importer.start)
    importer.start()
    return page


def serve_page(bridge, catalog):
    """The Serve page on the fake engine's models."""
    from app.dev.fake_engine import fake_api_catalog
    from app.serve.page import ServePage
    from app.settings.app_settings import AppSettings

    return ServePage(bridge, AppSettings(), api_catalog=fake_api_catalog())


def settings_page(bridge, catalog):
    """The Settings page, with the MCP servers of this home's mcp.json running."""
    from app.settings.app_settings import AppSettings
    from app.settings.page import SettingsPage
    from app.tool_servers import ToolServerHost

    host = ToolServerHost()
    page = SettingsPage(AppSettings(), tool_servers=host)
    host.setParent(page)
    host.start_enabled()
    return page


DEMOS: dict[str, Factory] = {
    f.__name__: f
    for f in (
        main_window,
        chat_pane,
        transcript_view,
        metrics_plot,
        token_inspector,
        prompt_box,
        inference_controls,
        conversation_list,
        sidebar,
        models_page,
        model_search,
        local_library,
        first_run,
        serve_page,
        settings_page,
    )
}
# Shown in a window of this size unless --size says otherwise.
SIZES = {"main_window": "1360x860", "serve_page": "1000x800", "settings_page": "1000x800"}
