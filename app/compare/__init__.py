"""Compare mode's verdict: the bar above the prompt box that says, for panes that
answered the same prompt, how much faster the decoder made it, what it cost in memory,
and whether the answers are the same token for token (or where and why they differ),
with a Markdown and JSON export. ``verdict.py`` is the reasoning (no Qt), ``bar.py``
the widget.
"""
