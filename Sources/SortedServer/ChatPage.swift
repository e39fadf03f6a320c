// ChatPage: the chat page served at `/`: one self-contained HTML file (no CDN, no external
// assets) that chats with the server's models over /v1/chat/completions (streamed).
enum ChatPage {
    static let html = ##"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>sortedtrain chat</title>
<style>
  :root {
    --bg: #f5f5f3; --panel: #ffffff; --line: #e2e2de; --text: #1f2328; --muted: #6b6f76;
    --accent: #2f5d8a; --accent-soft: #e8eef5; --user: #eef1f4; --err-bg: #fdf0ef; --err: #a23b32;
  }
  * { box-sizing: border-box; }
  html, body { height: 100%; margin: 0; }
  body {
    display: flex; flex-direction: column; background: var(--bg); color: var(--text);
    font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif;
  }
  header { background: var(--panel); border-bottom: 1px solid var(--line); }
  .bar { max-width: 860px; margin: 0 auto; padding: 10px 16px; display: flex; flex-wrap: wrap;
         align-items: center; gap: 10px 16px; }
  h1 { font-size: 16px; margin: 0 auto 0 0; font-weight: 600; letter-spacing: .01em; }
  h1 span { color: var(--muted); font-weight: 400; }
  label { font-size: 13px; color: var(--muted); display: flex; align-items: center; gap: 6px; }
  select, input, textarea, button { font: inherit; color: inherit; }
  select, input { border: 1px solid var(--line); border-radius: 6px; padding: 4px 6px; background: #fff; }
  input[type=number] { width: 76px; }
  button { border: 1px solid var(--line); border-radius: 6px; background: #fff; padding: 5px 12px; cursor: pointer; }
  button:hover:not(:disabled) { background: #f0f0ed; }
  button:disabled { opacity: .45; cursor: default; }
  button.primary { background: var(--accent); border-color: var(--accent); color: #fff; }
  button.primary:hover:not(:disabled) { background: #274f76; }
  #speeds { max-width: 860px; margin: 0 auto; padding: 0 16px 8px; font-size: 12.5px; color: var(--muted);
            min-height: 1.5em; }
  main { flex: 1; overflow-y: auto; }
  #log { max-width: 860px; margin: 0 auto; padding: 20px 16px; display: flex; flex-direction: column; gap: 14px; }
  .hint { color: var(--muted); text-align: center; margin-top: 12vh; font-size: 14px; }
  .message { max-width: 85%; padding: 10px 14px; border-radius: 10px; white-space: pre-wrap;
             overflow-wrap: anywhere; }
  .message.user { align-self: flex-end; background: var(--user); }
  .message.user.unsent { opacity: .55; }
  .message.assistant { align-self: flex-start; background: var(--panel); border: 1px solid var(--line); }
  .message.assistant .text:empty::before { content: "…"; color: var(--muted); }
  .message.assistant[data-done="true"] .text:empty::before { content: "(no text)"; }
  .message.error { align-self: flex-start; background: var(--err-bg); color: var(--err); border: 1px solid #f2cfcb; }
  .stats { margin-top: 6px; padding-top: 5px; border-top: 1px dashed var(--line); font-size: 12px;
           color: var(--muted); white-space: normal; }
  footer { background: var(--panel); border-top: 1px solid var(--line); }
  .composer { max-width: 860px; margin: 0 auto; padding: 12px 16px; display: flex; gap: 10px; align-items: flex-end; }
  textarea { flex: 1; resize: vertical; min-height: 44px; max-height: 40vh; padding: 9px 11px;
             border: 1px solid var(--line); border-radius: 8px; background: #fff; }
  textarea:focus, select:focus, input:focus { outline: 2px solid var(--accent-soft); border-color: var(--accent); }
  .buttons { display: flex; gap: 6px; }
  .keys { font-size: 11.5px; color: var(--muted); max-width: 860px; margin: -6px auto 0; padding: 0 16px 8px; }
</style>
</head>
<body data-state="loading">
<header>
  <div class="bar">
    <h1>sortedtrain <span>chat</span></h1>
    <label>depth <select id="model" disabled><option>loading…</option></select></label>
    <label>max tokens <input id="max-tokens" type="number" min="1" value="128"></label>
    <label>temperature <input id="temperature" type="number" min="0" max="2" step="0.1" value="0"></label>
    <button id="new-chat" type="button">New chat</button>
  </div>
  <div id="speeds"></div>
</header>
<main id="scroller"><div id="log"><p class="hint" id="hint">Pick a depth and ask something. Shallower depths answer
faster; early exit chooses the depth token by token.</p></div></main>
<footer>
  <div class="composer">
    <textarea id="prompt" rows="2" placeholder="Message"></textarea>
    <div class="buttons">
      <button id="send" class="primary" type="button" disabled>Send</button>
      <button id="stop" type="button" disabled>Stop</button>
    </div>
  </div>
  <div class="keys">Enter sends · Shift+Enter for a new line</div>
</footer>
<script>
"use strict";
const $ = (id) => document.getElementById(id);
const modelSelect = $("model"), maxTokens = $("max-tokens"), temperature = $("temperature");
const prompt = $("prompt"), sendButton = $("send"), stopButton = $("stop");
const log = $("log"), scroller = $("scroller"), speeds = $("speeds");

let messages = [];          // the conversation as OpenAI messages
let labels = {};            // model id -> label shown in the selector
let totals = {};            // model id -> {tokens, seconds, answers, layers, layerAnswers}
let controller = null;      // AbortController of the answer streaming now
let modelsLoaded = false;
let chat = 0;               // bumped by "New chat", so an answer still streaming then is dropped

function setState(state) { document.body.dataset.state = state; }

function labelFor(model, bases) {
  const info = model.sortedtrain || {};
  const base = model.id.split("@")[0];
  const prefix = bases > 1 ? base + " · " : "";
  if (info.strategy === "early_exit") return prefix + "early exit (auto)";
  if (typeof info.depth === "number") return prefix + "depth " + info.depth + (model.id.includes("@") ? "" : " (full)");
  return model.id;
}

function rank(model) {
  const info = model.sortedtrain || {};
  if (typeof info.depth === "number") return info.depth;
  return info.strategy === "early_exit" ? 1e6 : 2e6;
}

async function loadModels() {
  let list;
  try {
    const response = await fetch("/v1/models");
    const body = await response.json().catch(() => null);
    if (!response.ok) throw new Error((body && body.error && body.error.message) || "HTTP " + response.status);
    list = (body && body.data) || [];
    if (list.length === 0) throw new Error("the server lists no models");
  } catch (error) {
    showError("Could not load the models: " + error.message);
    setState("error");
    return false;
  }
  const bases = new Set(list.map((m) => m.id.split("@")[0])).size;
  list.sort((a, b) => a.id.split("@")[0].localeCompare(b.id.split("@")[0]) || rank(a) - rank(b));
  modelSelect.textContent = "";
  for (const model of list) {
    labels[model.id] = labelFor(model, bases);
    modelSelect.add(new Option(labels[model.id], model.id));
  }
  const full = list.find((m) => !m.id.includes("@"));
  modelSelect.value = full ? full.id : list[0].id;
  modelSelect.disabled = false;
  modelsLoaded = true;
  sendButton.disabled = false;
  setState("ready");
  return true;
}

function nearBottom() { return scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 80; }
function scrollDown() { scroller.scrollTop = scroller.scrollHeight; }

function addBubble(className, text) {
  const hint = $("hint");
  if (hint) hint.remove();
  const div = document.createElement("div");
  div.className = "message " + className;
  if (text !== undefined) div.textContent = text;
  log.appendChild(div);
  scrollDown();
  return div;
}

function showError(message) { return addBubble("error", message); }

function fmt(x, digits) { return Number.isFinite(x) ? x.toFixed(digits) : "–"; }

function updateSpeeds() {
  const parts = [];
  for (const id of Array.from(modelSelect.options).map((o) => o.value)) {
    const t = totals[id];
    if (!t || !(t.seconds > 0)) continue;
    let part = (labels[id] || id) + ": " + fmt(t.tokens / t.seconds, 1) + " tok/s";
    if (t.layerAnswers > 0) part += ", " + fmt(t.layers / t.layerAnswers, 1) + " layers/token";
    parts.push(part + " (" + t.answers + (t.answers === 1 ? " answer" : " answers") + ")");
  }
  speeds.textContent = parts.length ? "Speed so far — " + parts.join(" · ") : "";
}

// One server-sent event's data ("data:" lines joined), or null for an event without data.
function eventData(block) {
  const lines = block.split(/\r?\n/).filter((l) => l.startsWith("data:"));
  if (lines.length === 0) return null;
  return lines.map((l) => l.slice(5).replace(/^ /, "")).join("\n");
}

async function send() {
  const text = prompt.value;
  if (!modelsLoaded || controller || text.trim() === "") return;
  const model = modelSelect.value, thisChat = chat;
  const request = {
    model, stream: true,
    messages: messages.concat([{ role: "user", content: text }]),
    max_tokens: parseInt(maxTokens.value, 10) || 128,
    temperature: parseFloat(temperature.value) || 0,
  };
  messages.push({ role: "user", content: text });
  const userBubble = addBubble("user", text);
  prompt.value = "";
  controller = new AbortController();
  sendButton.disabled = true; stopButton.disabled = false;
  setState("streaming");

  const bubble = addBubble("assistant");
  const body = document.createElement("div");
  body.className = "text";
  bubble.appendChild(body);
  let answer = "", pieces = 0, final = null, firstAt = 0, lastAt = 0, stopped = false, failure = null;
  const startedAt = performance.now();

  try {
    const response = await fetch("/v1/chat/completions", {
      method: "POST", headers: { "Content-Type": "application/json", "Accept": "text/event-stream" },
      body: JSON.stringify(request), signal: controller.signal,
    });
    if (!response.ok) {
      const raw = await response.text();
      let message = "HTTP " + response.status;
      try { const j = JSON.parse(raw); if (j.error && j.error.message) message = j.error.message; }
      catch (_) { if (raw.trim()) message += ": " + raw.trim().slice(0, 300); }
      throw new Error(message);
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "", finished = false;
    const handle = (block) => {
      const data = eventData(block);
      if (data === null) return;
      if (data.trim() === "[DONE]") { finished = true; return; }
      const chunk = JSON.parse(data);
      if (chunk.error) throw new Error(chunk.error.message || "the server reported an error");
      const choice = (chunk.choices && chunk.choices[0]) || {};
      const content = choice.delta && choice.delta.content;
      if (typeof content === "string" && content.length > 0) {
        const follow = nearBottom();
        if (pieces === 0) firstAt = performance.now();
        lastAt = performance.now();
        pieces += 1;
        answer += content;
        body.textContent = answer;
        if (follow) scrollDown();
      }
      if (choice.finish_reason || chunk.usage || chunk.sortedtrain) final = Object.assign(final || {}, {
        finish: choice.finish_reason || (final && final.finish), usage: chunk.usage || (final && final.usage),
        info: chunk.sortedtrain || (final && final.info), model: chunk.model,
      });
    };
    while (!finished) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let cut;
      while (!finished && (cut = buffer.search(/\r?\n\r?\n/)) >= 0) {
        const block = buffer.slice(0, cut);
        buffer = buffer.slice(cut).replace(/^\r?\n\r?\n/, "");
        handle(block);
      }
    }
    if (!finished) { buffer += decoder.decode(); if (buffer.trim()) handle(buffer); }
    if (finished) reader.cancel().catch(() => {});
  } catch (error) {
    if (error.name === "AbortError") stopped = true; else failure = error.message || String(error);
  }

  controller = null;
  sendButton.disabled = false; stopButton.disabled = true;
  if (thisChat !== chat) { setState("ready"); return; }
  if (failure !== null && answer === "") {
    bubble.remove();
    messages.pop();                        // the turn never happened: keep the history sendable
    userBubble.classList.add("unsent");
    userBubble.title = "not part of the conversation: the server answered with an error";
    showError(failure);
    setState("error");
    prompt.focus();
    return;
  }
  if (stopped && answer === "") { messages.pop(); userBubble.classList.add("unsent"); }
  else messages.push({ role: "assistant", content: answer });
  const cut = stopped ? "stopped" : failure !== null ? "cut short by an error" : "";
  bubble.appendChild(statsLine(model, final, pieces, firstAt, lastAt, startedAt, cut));
  bubble.dataset.done = "true";
  if (failure !== null) { showError(failure); setState("error"); }
  else setState("done");
  if (nearBottom()) scrollDown();
  prompt.focus();
}

function statsLine(model, final, pieces, firstAt, lastAt, startedAt, cut) {
  const usage = (final && final.usage) || {};
  const info = (final && final.info) || {};
  const tokens = Number.isFinite(usage.completion_tokens) ? usage.completion_tokens : pieces;
  let rate = info.tokens_per_second;
  if (!Number.isFinite(rate) && tokens > 0) {
    const seconds = tokens > 1 && lastAt > firstAt ? (lastAt - firstAt) / 1000 : (lastAt - startedAt) / 1000;
    rate = tokens > 1 && lastAt > firstAt ? (tokens - 1) / seconds : tokens / seconds;
  }
  const parts = [(final && final.model) || model, tokens + (tokens === 1 ? " token" : " tokens")];
  if (Number.isFinite(rate)) parts.push(fmt(rate, 1) + " tok/s");
  if (Number.isFinite(info.layers_per_token)) parts.push(fmt(info.layers_per_token, 1) + " layers/token");
  if (info.exits && typeof info.exits === "object") {
    const exits = Object.keys(info.exits).sort((a, b) => a - b).map((k) => "layer " + k + "×" + info.exits[k]);
    if (exits.length > 1) parts.push("exits " + exits.join(", "));   // one exit says no more than layers/token
  }
  if (cut) parts.push(cut);
  else if (final && final.finish === "length") parts.push("hit max tokens");
  if (Number.isFinite(rate) && rate > 0 && tokens > 0) {
    const t = totals[model] || (totals[model] = { tokens: 0, seconds: 0, answers: 0, layers: 0, layerAnswers: 0 });
    t.tokens += tokens; t.seconds += tokens / rate; t.answers += 1;
    if (Number.isFinite(info.layers_per_token)) { t.layers += info.layers_per_token; t.layerAnswers += 1; }
    updateSpeeds();
  }
  const div = document.createElement("div");
  div.className = "stats";
  div.textContent = parts.join(" · ");
  return div;
}

function newChat() {
  chat += 1;
  if (controller) controller.abort();
  messages = [];
  log.textContent = "";
  prompt.focus();
}

sendButton.addEventListener("click", send);
stopButton.addEventListener("click", () => { if (controller) controller.abort(); });
$("new-chat").addEventListener("click", newChat);
prompt.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) { event.preventDefault(); send(); }
});

(async () => {
  const ok = await loadModels();
  const params = new URLSearchParams(location.search);
  if (!ok || !params.has("prompt")) { prompt.focus(); return; }
  const model = params.get("model");
  if (model) {
    if (!Array.from(modelSelect.options).some((o) => o.value === model)) modelSelect.add(new Option(model, model));
    modelSelect.value = model;
  }
  if (params.has("max_tokens")) maxTokens.value = params.get("max_tokens");
  if (params.has("temperature")) temperature.value = params.get("temperature");
  prompt.value = params.get("prompt");
  send();
})();
</script>
</body>
</html>
"""##
}
