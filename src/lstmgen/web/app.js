// lstmgen's page: a prompt, sliders over the server's own sampling settings,
// and the text streamed from POST /v1/completions, one span per token so that
// hovering shows the token's probability and the model's other candidates.
"use strict";

// The sliders; their defaults and help come from the server (GET /settings).
const SLIDERS = [
  { name: "temperature", label: "Temperature", min: 0, max: 2, step: 0.05 },
  { name: "top_p", label: "Top-p", min: 0.05, max: 1, step: 0.01, off: 1 },
  { name: "min_p", label: "Min-p", min: 0, max: 0.5, step: 0.01, off: 0 },
  { name: "dry_multiplier", label: "DRY multiplier", min: 0, max: 3, step: 0.05 },
  { name: "dry_base", label: "DRY base", min: 1.05, max: 3, step: 0.05 },
  { name: "dry_allowed_length", label: "DRY allowed length", min: 1, max: 40, step: 1 },
  { name: "repetition_penalty", label: "Repetition penalty", min: 1, max: 2, step: 0.01 },
  { name: "no_repeat_ngram", label: "No-repeat n-gram", min: 0, max: 12, step: 1 },
];

const $ = (id) => document.getElementById(id);
const state = { settings: null, controller: null, tokens: [], needsKey: false };

function headers() {
  const h = { "Content-Type": "application/json" };
  const key = $("api_key").value.trim();
  if (key) h.Authorization = "Bearer " + key;
  return h;
}

function setStatus(text, kind) {
  const el = $("status");
  el.textContent = text;
  el.className = "status" + (kind ? " " + kind : "");
}

function sliderValue(s, value) {
  // An optional setting that is off (None) sits at the slider's "off" end.
  return value === null || value === undefined ? (s.off !== undefined ? s.off : s.min) : value;
}

function showValue(s) {
  const input = $(s.name);
  const v = Number(input.value);
  $(s.name + "-value").textContent = s.off !== undefined && v === s.off ? "off" : (s.step >= 1 ? String(v) : v.toFixed(2));
}

function buildSliders(settings) {
  const box = $("sliders");
  box.textContent = "";
  for (const s of SLIDERS) {
    const info = settings.fields[s.name];
    if (!info) continue; // a server without this setting
    const wrap = document.createElement("label");
    wrap.className = "slider";
    wrap.title = info.help;
    wrap.innerHTML = `<span class="name"></span><output id="${s.name}-value"></output>` +
      `<input type="range" id="${s.name}" min="${s.min}" max="${s.max}" step="${s.step}">`;
    wrap.querySelector(".name").textContent = s.label;
    box.appendChild(wrap);
    const input = $(s.name);
    input.value = sliderValue(s, info.default);
    input.addEventListener("input", () => showValue(s));
    showValue(s);
  }
}

function applyValues(values) {
  for (const s of SLIDERS) {
    if (!$(s.name) || !(s.name in values)) continue;
    $(s.name).value = sliderValue(s, values[s.name]);
    showValue(s);
  }
}

function requestBody() {
  const body = {
    model: $("model").value || undefined,
    prompt: $("prompt").value,
    max_tokens: Number($("max_tokens").value) || 400,
    stream: true,
    logprobs: 5,
  };
  const seed = $("seed").value.trim();
  if (seed !== "") body.seed = Number(seed);
  for (const s of SLIDERS) {
    const input = $(s.name);
    if (!input) continue;
    const v = Number(input.value);
    body[s.name] = s.off !== undefined && v === s.off ? null : v;
  }
  return body;
}

function visible(token) {
  return token.replace(/\n/g, "↵").replace(/\t/g, "⇥").replace(/ /g, "␣");
}

function addText(text, logprobs) {
  const out = $("output");
  const tokens = logprobs ? logprobs.tokens : [];
  if (!logprobs || tokens.join("") !== text) {
    // Text without one span per token (a stop string cut it): shown as it is.
    const span = document.createElement("span");
    span.textContent = text;
    out.appendChild(span);
    return;
  }
  tokens.forEach((token, i) => {
    const span = document.createElement("span");
    span.className = "tok";
    span.textContent = token;
    const p = Math.exp(logprobs.token_logprobs[i]);
    span.style.setProperty("--surprise", (1 - p).toFixed(3));
    span.dataset.index = String(state.tokens.length);
    state.tokens.push({ token, p, top: logprobs.top_logprobs[i] || {} });
    out.appendChild(span);
  });
}

function element(tag, className, text) {
  const el = document.createElement(tag);
  if (className) el.className = className;
  if (text !== undefined) el.textContent = text;
  return el;
}

function showTip(span) {
  const info = state.tokens[Number(span.dataset.index)];
  if (!info) return;
  const tip = $("tip");
  tip.textContent = "";
  const head = element("div", "tip-head");
  head.append(element("code", "", visible(info.token)), " ", element("b", "", (100 * info.p).toFixed(1) + "%"));
  tip.appendChild(head);
  for (const [tok, logprob] of Object.entries(info.top).sort((a, b) => b[1] - a[1])) {
    const p = Math.exp(logprob);
    const row = element("div", "alt" + (tok === info.token ? " chosen" : ""));
    const bar = element("span", "bar");
    bar.style.setProperty("--p", p.toFixed(4));
    row.append(element("code", "", visible(tok)), bar, element("span", "pct", (100 * p).toFixed(1) + "%"));
    tip.appendChild(row);
  }
  tip.hidden = false;
  const r = span.getBoundingClientRect();
  const width = tip.offsetWidth;
  const right = window.scrollX + document.documentElement.clientWidth - width - 8;
  tip.style.left = Math.max(8, Math.min(r.left + window.scrollX + r.width / 2 - width / 2, right)) + "px";
  tip.style.top = (r.bottom + window.scrollY + 6) + "px";
}

function hideTip() { $("tip").hidden = true; }

async function errorMessage(response) {
  try {
    const body = await response.json();
    return (body.error && body.error.message) || response.statusText;
  } catch (e) {
    return response.statusText || "HTTP " + response.status;
  }
}

async function generate() {
  if (state.controller) return;
  const out = $("output");
  out.textContent = "";
  out.appendChild(element("span", "prompt", $("prompt").value));
  state.tokens = [];
  hideTip();
  $("meta").textContent = "";
  const controller = new AbortController();
  state.controller = controller;
  $("generate").disabled = true;
  $("stop").disabled = false;
  setStatus("writing…", "busy");
  const started = performance.now();
  let chars = 0, reason = null, firstAt = null;
  try {
    const response = await fetch("/v1/completions", {
      method: "POST", headers: headers(), body: JSON.stringify(requestBody()), signal: controller.signal,
    });
    if (!response.ok) {
      if (response.status === 401) showKeyField();
      throw new Error(await errorMessage(response));
    }
    const reader = response.body.getReader();
    const decoder = new TextDecoder();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        const event = buffer.slice(0, end);
        buffer = buffer.slice(end + 2);
        if (!event.startsWith("data: ")) continue;
        const data = event.slice(6);
        if (data === "[DONE]") continue;
        const chunk = JSON.parse(data);
        if (chunk.error) throw new Error(chunk.error.message);
        const choice = chunk.choices[0];
        if (choice.text) {
          if (firstAt === null) firstAt = performance.now();
          addText(choice.text, choice.logprobs);
          chars += choice.text.length;
        }
        if (choice.finish_reason) reason = choice.finish_reason;
      }
    }
    const seconds = (performance.now() - started) / 1000;
    setStatus("done", "ok");
    $("meta").textContent = `${chars} characters in ${seconds.toFixed(2)} s` +
      (firstAt !== null ? `, first after ${Math.round(firstAt - started)} ms` : "") +
      (reason ? `, ended by ${reason === "stop" ? "a stop string" : "the length"}` : "");
  } catch (err) {
    if (err.name === "AbortError") {
      setStatus("stopped", "");
      $("meta").textContent = `stopped after ${chars} characters`;
    } else {
      setStatus("error", "bad");
      $("meta").textContent = String(err.message || err);
    }
  } finally {
    state.controller = null;
    $("generate").disabled = false;
    $("stop").disabled = true;
  }
}

function showKeyField() {
  $("key-field").hidden = false;
}

async function loadModels() {
  const response = await fetch("/v1/models", { headers: headers() });
  if (response.status === 401) {
    showKeyField();
    setStatus("needs an API key", "bad");
    return;
  }
  const body = await response.json();
  const select = $("model");
  const current = select.value;
  select.textContent = "";
  for (const m of body.data) {
    const option = document.createElement("option");
    option.value = m.id;
    const loss = m.held_out_loss_nats != null ? `, ${m.held_out_loss_nats.toFixed(3)} nats` : "";
    option.textContent = `${m.id} (${m.level}, ${(m.parameters / 1e6).toFixed(2)}M parameters${loss})`;
    select.appendChild(option);
  }
  if (current) select.value = current;
  setStatus("ready", "ok");
}

async function start() {
  const [health, settings] = await Promise.all([fetch("/health").then((r) => r.json()),
    fetch("/settings").then((r) => r.json())]);
  state.settings = settings;
  buildSliders(settings);
  $("max_tokens").max = String(settings.max_tokens_cap);
  const saved = localStorage.getItem("lstmgen-api-key");
  if (saved) $("api_key").value = saved;
  if (health.api_key_required) showKeyField();
  $("api_key").addEventListener("change", () => {
    localStorage.setItem("lstmgen-api-key", $("api_key").value.trim());
    loadModels();
  });
  await loadModels();
}

$("generate").addEventListener("click", generate);
$("stop").addEventListener("click", () => state.controller && state.controller.abort());
$("prompt").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) generate();
});
$("reset").addEventListener("click", () => {
  const defaults = {};
  for (const [name, info] of Object.entries(state.settings.fields)) defaults[name] = info.default;
  applyValues(defaults);
});
$("plain").addEventListener("click", () => applyValues(state.settings.plain));
$("shade").addEventListener("change", () => $("output").classList.toggle("shaded", $("shade").checked));
$("output").classList.add("shaded");
$("output").addEventListener("mouseover", (e) => { if (e.target.classList.contains("tok")) showTip(e.target); });
// A mouse that leaves the text hides the box; after a tap (a phone) it stays until a tap elsewhere.
$("output").addEventListener("pointerleave", (e) => { if (e.pointerType === "mouse") hideTip(); });
document.addEventListener("click", (e) => {
  if (e.target.classList && e.target.classList.contains("tok")) showTip(e.target);
  else hideTip();
});
start().catch((err) => setStatus("cannot reach the server: " + err.message, "bad"));
