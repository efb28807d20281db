"""The headless command line: `lookahead <command> ...`.

Each command lives in its own module with ``register(subparsers)``; the module adds
its parser and sets ``func`` to a function taking the parsed args and returning an
exit code. Errors a user can fix raise EngineError (or SettingsError) and are shown
as one line, with exit code 2 and no traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from engine.errors import EngineError
from engine.settings import SettingsError

COMMAND_MODULES = (
    "engine.commands.generate",
    "engine.commands.import_gguf",
    "engine.commands.hub",
    "engine.commands.bench",
    "engine.commands.serve",
    "engine.commands.train_mtp",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lookahead",
        description="Run LLMs locally on MLX with speculative decoding. "
        "With no command, opens the app.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name == name:  # a command not built yet in this checkout
                continue
            raise
        module.register(sub)
    return parser


def command_names() -> set[str]:
    parser = build_parser()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return set(action.choices)
    return set()


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except (EngineError, SettingsError) as e:
        print(f"lookahead: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # output piped into `head` and the like
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print("lookahead: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
