"""The `lookahead` console script.

`lookahead COMMAND ...` runs a headless command (engine/cli.py, no Qt imported);
`lookahead` alone, or with app options such as `--screenshot FILE`, opens the app.
"""

from __future__ import annotations

import os
import sys


def headless() -> bool:
    """Linux with no display to open windows on (a screenshot then renders offscreen)."""
    return sys.platform.startswith("linux") and not (
        os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    )


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    from engine import cli

    if argv and (argv[0] in cli.command_names() or argv[0] in ("-h", "--help")):
        return cli.main(argv)
    from app.main import run_app
    from app.tasks import end_process

    end_process(run_app(argv))


if __name__ == "__main__":
    sys.exit(main())
