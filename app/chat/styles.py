"""Stylesheets for the conversation widgets (sidebar, chats list, message actions,
editor, token view and inspector), filled from the theme's palette.

Kept beside the widgets rather than in resources/styles/base.qss so this part of the
app can change without touching the shared sheet; each top widget applies its part
when the theme changes. GUI thread only.
"""

from __future__ import annotations

from string import Template

from app import theme

_PANE = Template(
    """
#BranchLabel { color: $muted; font-size: 11px; padding: 0 1px; min-width: 22px; }
#MessageEditor { background: $surface2; border: 1px solid $accent; border-radius: 12px; }
#MessageEditor QPlainTextEdit { background: $surface; }
#TokenText { padding: 2px 0; }
#TokenChip { background: $accent_soft; color: $text; border-radius: 8px; padding: 8px 10px; }
#AltRow { border-radius: 6px; }
#AltRow[chosen="true"] { background: $surface2; }
#AltRow[chosen="true"] #AltText { color: $accent; font-weight: 600; }
#AltFigure { color: $muted; font-size: 11px; }
#Tag[kind="interrupted"] { color: $warning; }
#Tag[kind="edited"] { color: $info; }
#ToolBlock { background: $surface2; border: 1px solid $border; border-radius: 10px; }
#ToolBlock[error="true"] { border-color: $danger; }
#ToolTitle { font-weight: 600; }
#ToolArgs, #ToolResult { color: $muted; }
"""
)

_SIDEBAR = Template(
    """
#Sidebar { background: $bg; border-right: 1px solid $border; }
#NavButton { text-align: left; padding: 6px 10px; border: 1px solid transparent;
             border-radius: 8px; font-weight: 600; color: $muted; }
#NavButton:hover { background: $surface2; color: $text; }
#NavButton:checked { background: $accent_soft; color: $text; border-color: transparent; }
#SidebarNotice { background: $surface2; border: 1px solid $warning; border-radius: 10px; }
#SidebarNotice[kind="success"] { border-color: $success; }
#SidebarNoticeText { color: $text; font-size: 11px; }
#ConversationList { background: transparent; border: none; outline: none; }
#ConfirmBar { background: $surface2; border: 1px solid $danger; border-radius: 10px; }
"""
)


def pane_qss(pal: theme.Palette | None = None) -> str:
    return _PANE.substitute(vars(pal or theme.current()))


def sidebar_qss(pal: theme.Palette | None = None) -> str:
    return _SIDEBAR.substitute(vars(pal or theme.current()))


__all__ = ["pane_qss", "sidebar_qss"]
