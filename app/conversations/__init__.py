"""Saved conversations: the sidebar's list of chats, the controller that opens, saves
and forks them into panes, and ``history`` between the store and the panes (pane
layouts, message versions)."""
