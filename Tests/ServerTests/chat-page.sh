#!/usr/bin/env bash
# Checks the chat page served at `/` by a running `sortedtrain serve` in headless Chromium:
# the page loads the models, sends "Hello" by its ?prompt= test hook, streams the answer,
# and marks it done with a stats line; an unknown model shows the server's error message in
# the chat; a screenshot of the answered page is written to OUT_PNG.
#
#   Tests/ServerTests/chat-page.sh BASE_URL MODEL_ID OUT_PNG
#
# Chromium's own --dump-dom/--screenshot cannot be used here: they fire when the load event
# or the --virtual-time-budget is reached, and virtual time runs on while a fetch() body is
# still streaming, so they capture the page mid-answer. Instead Chromium is driven over
# --remote-debugging-pipe by a small python3 (stdlib) script that waits, in real time, for
# document.body.dataset.state to become "done" or "error", then saves the DOM and a
# screenshot. Skips when chromium (or python3) is not installed. Prints one line per check
# and "chat-page: N passed, M failed, K skipped"; exits 1 if any check failed.
set -uo pipefail
if [ $# -ne 3 ]; then echo "usage: $0 BASE_URL MODEL_ID OUT_PNG" >&2; exit 2; fi
base=${1%/}; model=$2; png=$3
wait_seconds=${CHAT_PAGE_TIMEOUT:-60}
passed=0; failed=0; skipped=0
pass() { echo "ok   $1"; passed=$((passed + 1)); }
fail() { echo "FAIL $1: $2"; failed=$((failed + 1)); }
skip() { echo "skip $1: $2"; skipped=$((skipped + 1)); }
summary() { echo "chat-page: $passed passed, $failed failed, $skipped skipped"; }

chromium=$(command -v chromium || command -v chromium-browser || true)
if [ -z "$chromium" ]; then skip "chat page" "chromium is not installed"; summary; exit 0; fi
if ! command -v python3 >/dev/null; then skip "chat page" "python3 is not installed"; summary; exit 0; fi

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The driver: python3 cdp.py TIMEOUT URL DOM_OUT PNG_OUT -- CHROMIUM ARGS...
# Starts Chromium with the DevTools protocol on fds 3 (commands in) and 4 (replies out),
# opens URL in a 1000×800 viewport, polls the page's state until done/error or TIMEOUT seconds, writes the DOM
# (document.documentElement.outerHTML) and a PNG screenshot, prints the final state.
cat > "$work/cdp.py" <<'PY'
import base64, json, os, subprocess, sys, time
limit, url, dom_out, png_out = float(sys.argv[1]), sys.argv[2], sys.argv[3], sys.argv[4]
command = sys.argv[sys.argv.index("--") + 1:]
to_chrome_r, to_chrome_w = os.pipe()
from_chrome_r, from_chrome_w = os.pipe()
def wire():
    os.dup2(to_chrome_r, 3)
    os.dup2(from_chrome_w, 4)
chrome = subprocess.Popen(command + ["--remote-debugging-pipe", "about:blank"], preexec_fn=wire,
                          pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=open(dom_out + ".log", "w"))
os.close(to_chrome_r); os.close(from_chrome_w)
out, inp = os.fdopen(to_chrome_w, "wb"), os.fdopen(from_chrome_r, "rb")
buffered, next_id = b"", 0

def call(method, params=None, session=None):
    global buffered, next_id
    next_id += 1
    message = {"id": next_id, "method": method, "params": params or {}}
    if session: message["sessionId"] = session
    out.write(json.dumps(message).encode() + b"\0"); out.flush()
    while True:
        while b"\0" not in buffered:
            data = inp.read1(65536)
            if not data: raise RuntimeError("chromium closed the DevTools pipe")
            buffered += data
        raw, buffered = buffered.split(b"\0", 1)
        reply = json.loads(raw)
        if reply.get("id") == next_id:
            if "error" in reply: raise RuntimeError(method + ": " + reply["error"].get("message", "?"))
            return reply.get("result", {})

def evaluate(expression, session):
    result = call("Runtime.evaluate", {"expression": expression, "returnByValue": True}, session)
    return result.get("result", {}).get("value")

state = "no page"
try:
    page = next(t for t in call("Target.getTargets")["targetInfos"] if t["type"] == "page")
    session = call("Target.attachToTarget", {"targetId": page["targetId"], "flatten": True})["sessionId"]
    call("Page.enable", session=session)
    call("Emulation.setDeviceMetricsOverride", {"width": 1000, "height": 800, "deviceScaleFactor": 1, "mobile": False}, session)
    navigation = call("Page.navigate", {"url": url}, session)
    if navigation.get("errorText"): state = "cannot open the page: " + navigation["errorText"]
    deadline = time.monotonic() + (0 if navigation.get("errorText") else limit)
    while time.monotonic() < deadline:
        state = evaluate("document.body ? (document.body.dataset.state || 'no state') : 'no body'", session)
        if state in ("done", "error"): break
        time.sleep(0.25)
    time.sleep(0.3)  # let the last frame paint before the screenshot
    with open(dom_out, "w") as f: f.write(evaluate("document.documentElement.outerHTML", session) or "")
    shot = call("Page.captureScreenshot", {"format": "png"}, session)
    with open(png_out, "wb") as f: f.write(base64.b64decode(shot["data"]))
    print(state)
except Exception as error:
    print("%s (%s)" % (state, error))
finally:
    try: call("Browser.close")
    except Exception: pass
    try: chrome.wait(timeout=10)
    except subprocess.TimeoutExpired: chrome.kill()
PY

# open_page NAME URL: runs the driver (Chromium bounded by timeout, in a throwaway profile);
# leaves $work/NAME.html, $work/NAME.png and the final state in $work/NAME.state.
open_page() {
    local profile
    profile=$(mktemp -d -p "$work" profile.XXXXXX)
    timeout $((wait_seconds + 60)) python3 "$work/cdp.py" "$wait_seconds" "$2" "$work/$1.html" "$work/$1.png" -- \
        timeout $((wait_seconds + 30)) "$chromium" --headless --no-sandbox --disable-gpu --hide-scrollbars \
        --no-first-run --no-default-browser-check --window-size=1000,800 --user-data-dir="$profile" \
        > "$work/$1.state" 2>&1
    touch "$work/$1.html"
}
# has FILE REGEX: the DOM (on one line) matches the extended regex.
has() { tr '\n' ' ' < "$1" | grep -Eq "$2"; }

open_page answer "$base/?prompt=Hello&model=$(python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$model")&max_tokens=16"
dom=$work/answer.html
state=$(head -1 "$work/answer.state")
assistant='<div (class="message assistant"[^>]*data-done="true"|data-done="true"[^>]*class="message assistant")[^>]*>'
if has "$dom" '<body[^>]*data-state="done"'; then pass "the page answers and sets data-state=\"done\""
else fail "the page answers and sets data-state=\"done\"" "state is '$state'"; fi
if has "$dom" "$assistant"; then pass "the assistant message is marked data-done=\"true\""
else fail "the assistant message is marked data-done=\"true\"" "no finished assistant message in the DOM"; fi
if has "$dom" "$assistant"'<div class="text">[^<]*[^<[:space:]]'; then pass "the assistant message has text"
else fail "the assistant message has text" "the finished assistant message is empty"; fi
if has "$dom" 'class="stats"[^>]*>[^<]*[^<[:space:]]'; then
    pass "a stats line follows the answer ($(tr '\n' ' ' < "$dom" | grep -Eo 'class="stats"[^>]*>[^<]*' | head -1 | sed 's/.*>//'))"
else fail "a stats line follows the answer" "no non-empty element with class stats"; fi
# The screenshot is kept even when the page did not answer (it shows what went wrong).
if [ -s "$work/answer.png" ] && [ "$(head -c 8 "$work/answer.png" | od -An -tx1 | tr -d ' \n')" = 89504e470d0a1a0a ] \
    && [ "$(stat -c %s "$work/answer.png")" -gt 10000 ] && mkdir -p "$(dirname "$png")" && cp "$work/answer.png" "$png"; then
    if [ "$state" = done ]; then pass "screenshot of the answered page: $png ($(stat -c %s "$png") bytes)"
    else fail "screenshot of the answered page" "the page did not answer; $png shows it"; fi
else fail "screenshot of the answered page" "no PNG over 10 kB was captured and written to $png"; fi

# An unknown model: the server's error message is shown in the chat, and the page survives.
open_page unknown "$base/?prompt=Hello&model=no-such-model&max_tokens=4"
if has "$work/unknown.html" '<body[^>]*data-state="error"' && has "$work/unknown.html" '<div class="message error">[^<]*[^<[:space:]]'; then
    pass "an unknown model shows the server's error in the chat ($(tr '\n' ' ' < "$work/unknown.html" | grep -Eo '<div class="message error">[^<]*' | head -1 | sed 's/.*>//' | cut -c1-80))"
else fail "an unknown model shows the server's error in the chat" "state is '$(head -1 "$work/unknown.state")'"; fi

summary
[ "$failed" -eq 0 ]
