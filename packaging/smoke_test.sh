#!/usr/bin/env bash
# Smoke-test a built bundle: the app starts offscreen, imports the bundled starter
# model, answers a prompt and exits; the headless CLI generates a few tokens, lists the
# model and serves the API; with no overrides, data goes where the pip-installed app
# puts it.
#
#   bash packaging/smoke_test.sh [EXECUTABLE]
#     default: dist/Lookahead/lookahead (Linux) or
#              dist/Lookahead.app/Contents/MacOS/lookahead (macOS)
#
# Runs in a throwaway LOOKAHEAD_HOME and HF_HOME, offline, from an empty directory and
# with a bare environment, so nothing from the checkout or its .venv can stand in for
# what the bundle lacks. Exits non-zero on the first failure.
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
if [ $# -ge 1 ]; then
  exe="$1"
elif [ "$(uname)" = "Darwin" ]; then
  exe="$here/../dist/Lookahead.app/Contents/MacOS/lookahead"
else
  exe="$here/../dist/Lookahead/lookahead"
fi
[ -x "$exe" ] || { echo "smoke test: no executable at $exe (build first)" >&2; exit 1; }
exe="$(cd "$(dirname "$exe")" && pwd)/$(basename "$exe")"

work="$(mktemp -d "${TMPDIR:-/tmp}/lookahead-smoke.XXXXXX")"
trap 'rm -rf "$work"' EXIT
cd "$work"

# A bare environment: no PYTHONPATH, no virtualenv, no user data locations.
bundle_env=(env -i "HOME=$work/home" "PATH=/usr/bin:/bin" "LANG=C.UTF-8" "TMPDIR=$work"
  "LOOKAHEAD_HOME=$work/lookahead" "HF_HOME=$work/hf" "HF_HUB_OFFLINE=1"
  "QT_QPA_PLATFORM=offscreen")
[ -n "${LOOKAHEAD_BLAS:-}" ] && bundle_env+=("LOOKAHEAD_BLAS=$LOOKAHEAD_BLAS")
mkdir -p "$work/home"

fail() { echo "smoke test FAILED: $*" >&2; exit 1; }

echo "-- 1. app, offscreen: first run imports the bundled starter, answers, screenshot"
start=$SECONDS
rc=0
"${bundle_env[@]}" "$exe" --screenshot "$work/shot.png" --panes 1 --send "Say hi" \
  --timeout "${SMOKE_TIMEOUT:-240}" >"$work/app.log" 2>&1 || rc=$?
[ "$rc" = 0 ] || { tail -40 "$work/app.log"; fail "the app exited with $rc"; }
grep -q "Traceback" "$work/app.log" && { tail -40 "$work/app.log"; fail "traceback in the app log"; }
[ "$(head -c 8 "$work/shot.png" | od -An -tx1 | tr -d ' \n')" = "89504e470d0a1a0a" ] \
  || fail "no PNG screenshot"
[ -f "$work/lookahead/models/SmolLM2-135M-Instruct/config.json" ] \
  || fail "the starter model was not imported into LOOKAHEAD_HOME"
grep -E "screenshot saved" "$work/app.log" || true
echo "   ok: $(wc -c <"$work/shot.png") byte screenshot, starter imported ($((SECONDS - start)) s)"

echo "-- 2. headless: lookahead generate --max-tokens 4"
start=$SECONDS
rc=0
"${bundle_env[@]}" "$exe" generate --model SmolLM2-135M-Instruct --prompt hi --max-tokens 4 \
  --json >"$work/gen.jsonl" 2>"$work/gen.err" || rc=$?
[ "$rc" = 0 ] || { cat "$work/gen.err"; fail "generate exited with $rc"; }
tokens="$(grep -c '"type": "token"' "$work/gen.jsonl" || true)"
stats="$(grep '"type": "stats"' "$work/gen.jsonl" || true)"
[ "$tokens" -ge 1 ] || { cat "$work/gen.jsonl" "$work/gen.err"; fail "no tokens generated"; }
[ -n "$stats" ] || fail "no stats line"
text="$(grep '"type": "token"' "$work/gen.jsonl" | sed -E 's/.*"text": "(([^"\\]|\\.)*)".*/\1/' | tr -d '\n')"
echo "   ok: $tokens tokens: \"$text\" ($((SECONDS - start)) s)"
echo "   $(echo "$stats" | grep -oE '"(generation_tps|device|blas|dtype|finish_reason)": [^,}]*' | tr '\n' ' ')"

echo "-- 3. headless: lookahead models lists the starter"
rc=0
"${bundle_env[@]}" "$exe" models >"$work/models.txt" 2>&1 || rc=$?
[ "$rc" = 0 ] || { cat "$work/models.txt"; fail "models exited with $rc"; }
grep -q "SmolLM2-135M-Instruct" "$work/models.txt" || { cat "$work/models.txt"; fail "starter not listed"; }
echo "   ok"

echo "-- 4. headless: lookahead serve answers a chat completion"
port="$(( 20000 + RANDOM % 20000 ))"
"${bundle_env[@]}" "$exe" serve --port "$port" >"$work/serve.log" 2>&1 &
server_pid=$!
trap 'kill "$server_pid" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 120); do
  curl -sf "http://127.0.0.1:$port/v1/models" >"$work/models.json" 2>/dev/null && break
  kill -0 "$server_pid" 2>/dev/null || { cat "$work/serve.log"; fail "serve exited"; }
  sleep 1
done
grep -q "SmolLM2-135M-Instruct" "$work/models.json" || { cat "$work/serve.log"; fail "/v1/models"; }
curl -sf "http://127.0.0.1:$port/v1/chat/completions" -H "Content-Type: application/json" \
  -d '{"model": "SmolLM2-135M-Instruct", "max_tokens": 4,
       "messages": [{"role": "user", "content": "hi"}]}' >"$work/chat.json" \
  || { cat "$work/serve.log"; fail "/v1/chat/completions"; }
grep -q '"completion_tokens": *[1-9]' "$work/chat.json" || { cat "$work/chat.json"; fail "no tokens"; }
kill "$server_pid"
rc=0
wait "$server_pid" || rc=$?
[ "$rc" = 0 ] || [ "$rc" = 143 ] || { cat "$work/serve.log"; fail "serve exited with $rc on SIGTERM"; }
echo "   ok: $(grep -oE '"content": *"([^"\\]|\\.)*"' "$work/chat.json" | head -1)"

echo "-- 5. default data locations: the pip-installed app's (platformdirs)"
home2="$work/home2"
mkdir -p "$home2"
env -i "HOME=$home2" "PATH=/usr/bin:/bin" "LANG=C.UTF-8" "$exe" models >/dev/null 2>&1 \
  || fail "models with default locations"
if [ "$(uname)" = "Darwin" ]; then
  expected="$home2/Library/Application Support/Lookahead/models"
else
  expected="$home2/.local/share/Lookahead/models"
fi
[ -d "$expected" ] || { find "$home2" >&2; fail "models dir is not at $expected"; }
echo "   ok: ${expected#"$home2"/} under HOME"

echo "smoke test passed"
