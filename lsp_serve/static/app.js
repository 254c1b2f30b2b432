// The web chat: the whole conversation lives here and is sent with every turn to
// POST /v1/chat/completions with stream: true; the reply arrives as server-sent events, token by
// token, and is shown as it arrives.
"use strict";

const chat = { messages: [], model: null, busy: false, controller: null, replies: 0 };
window.chat = chat;  // the conversation, readable from the console (and the browser test)

const $ = (id) => document.getElementById(id);

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h["Authorization"] = "Bearer " + key;
  return h;
}

function bubble(role, text) {
  const div = document.createElement("div");
  div.className = "msg " + role;
  div.textContent = text;
  $("log").appendChild(div);
  $("log").scrollTop = $("log").scrollHeight;
  return div;
}

async function connect() {
  try {
    const health = await (await fetch("/health")).json();
    const d = health.defaults;
    $("temperature").placeholder = d.temperature;
    $("top_p").placeholder = d.top_p;
    $("max_tokens").placeholder = d.max_tokens;
    $("min_tokens").placeholder = d.min_tokens;
    const r = await fetch("/v1/models", { headers: headers() });
    if (!r.ok) throw new Error((await r.json()).error.message);
    chat.model = (await r.json()).data[0].id;
    $("model").textContent = chat.model + (health.reranker ? " · " + health.reranker.toUpperCase() : "");
  } catch (e) {
    $("model").textContent = "not connected: " + e.message;
  }
}

function settings() {
  const body = {};
  const ints = ["max_tokens", "min_tokens", "seed"];
  for (const name of ["temperature", "top_p", ...ints]) {
    const v = $(name).value.trim();
    if (v !== "") body[name] = ints.includes(name) ? parseInt(v, 10) : parseFloat(v);
  }
  return body;
}

// Yields the parsed JSON of each `data:` event until `data: [DONE]`.
async function* events(response) {
  const reader = response.body.getReader();
  const decoder = new TextDecoder();
  let buf = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buf += decoder.decode(value, { stream: true });
    let cut;
    while ((cut = buf.indexOf("\n\n")) >= 0) {
      const event = buf.slice(0, cut);
      buf = buf.slice(cut + 2);
      for (const line of event.split("\n")) {
        if (!line.startsWith("data: ")) continue;
        const data = line.slice(6);
        if (data === "[DONE]") return;
        yield JSON.parse(data);
      }
    }
  }
}

function setBusy(busy) {
  chat.busy = busy;
  $("send").disabled = busy;
  $("stop").hidden = !busy;
}

async function send(text) {
  if (!chat.model) await connect();
  chat.messages.push({ role: "user", content: text });
  bubble("user", text);
  const out = bubble("assistant streaming", "");
  let reply = "", chunks = 0;
  setBusy(true);
  chat.controller = new AbortController();
  try {
    const r = await fetch("/v1/chat/completions", {
      method: "POST", headers: headers(), signal: chat.controller.signal,
      body: JSON.stringify({ model: chat.model, messages: chat.messages, stream: true, ...settings() }),
    });
    if (!r.ok) {
      const err = await r.json().catch(() => ({ error: { message: r.statusText } }));
      throw new Error(r.status + ": " + err.error.message);
    }
    for await (const chunk of events(r)) {
      if (chunk.error) throw new Error(chunk.error.message);  // failed after the reply began
      const piece = chunk.choices.length ? chunk.choices[0].delta.content : undefined;
      if (piece) {
        reply += piece;
        chunks += 1;
        out.textContent = reply;
        $("log").scrollTop = $("log").scrollHeight;
      }
    }
    chat.messages.push({ role: "assistant", content: reply });
    out.dataset.chunks = chunks;
    chat.replies += 1;
  } catch (e) {
    chat.messages.pop();  // the turn failed: it is not part of the conversation
    out.classList.add("error");
    out.textContent = e.name === "AbortError" ? "(stopped)" : "error " + e.message;
  } finally {
    out.classList.remove("streaming");
    out.dataset.done = "1";
    setBusy(false);
  }
}

function reset() {
  if (chat.controller) chat.controller.abort();
  chat.messages = [];
  $("log").replaceChildren();
  bubble("note", "new conversation");
}

document.addEventListener("DOMContentLoaded", () => {
  $("composer").addEventListener("submit", (e) => {
    e.preventDefault();
    const text = $("input").value.trim();
    if (!text || chat.busy) return;
    $("input").value = "";
    send(text);
  });
  $("input").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey) {
      e.preventDefault();
      $("composer").requestSubmit();
    }
  });
  $("stop").addEventListener("click", () => chat.controller && chat.controller.abort());
  $("reset").addEventListener("click", reset);
  $("api_key").addEventListener("change", connect);
  connect();
});
