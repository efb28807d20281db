#!/usr/bin/env sh
# Add Lookahead to your applications menu, from the unpacked bundle folder.
#
#   ./install.sh              a menu entry and a `lookahead` command for this user
#   ./install.sh --uninstall  remove them again (your chats and models stay)
#
# The bundle stays where it is; move it first if you want it elsewhere
# (e.g. ~/.local/opt/Lookahead), then run this script from there.
set -eu
here="$(cd "$(dirname "$0")" && pwd)"
data="${XDG_DATA_HOME:-$HOME/.local/share}"
apps="$data/applications"
bin="$HOME/.local/bin"
entry="$apps/lookahead.desktop"

if [ "${1:-}" = "--uninstall" ]; then
  rm -f "$entry" "$bin/lookahead"
  echo "Removed the menu entry and the lookahead command."
  exit 0
fi

mkdir -p "$apps" "$bin"
# Exec and Icon point into this folder, so the entry works without PATH changes.
sed -e "s|^Exec=.*|Exec=\"$here/lookahead\"|" \
    -e "s|^Icon=.*|Icon=$here/lookahead.png|" \
    "$here/lookahead.desktop" > "$entry"
chmod 644 "$entry"
ln -sfn "$here/lookahead" "$bin/lookahead"
command -v update-desktop-database >/dev/null && update-desktop-database "$apps" 2>/dev/null || true
echo "Lookahead is in your applications menu; \`lookahead\` runs it from a terminal"
echo "(add $bin to PATH if your shell does not have it)."
