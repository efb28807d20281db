"""The bundle's entry point: the same ``lookahead`` command pip installs.

``lookahead`` opens the app, ``lookahead generate ...`` and the other commands run
headless, exactly as app/launcher.py dispatches them.
"""

import sys

from app.launcher import main

if __name__ == "__main__":
    sys.exit(main())
