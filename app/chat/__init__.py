"""A chat pane and everything inside it: the transcript and its messages (markdown,
code highlighting, edit and toolbar), the prompt box, the inference controls (decoder,
thinking, sampling), the live tok/s and acceptance plot, and the token inspector with
its replay. ``pane.ChatPane`` puts them together; ``pane_model`` is its plain-Python
state."""
