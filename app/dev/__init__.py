"""For developing the app, not used by it in normal runs: the scripted fake engine
(``lookahead --fake-engine``), a local hub that serves fake models, and the demo
runner that starts any widget on its own (``python -m app.dev.demo --list``)."""
