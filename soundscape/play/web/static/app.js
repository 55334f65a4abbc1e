// soundscape mixer. Plain JS, no libraries: the page works offline and needs no build step.
// The player pushes its state and audio frames over Server-Sent Events; the page never polls.
// Slider drags are coalesced: at most one request in flight, the latest values sent when it returns.
"use strict";

const $ = (id) => document.getElementById(id);
const THROTTLE_MS = 150;
const STOP_ARM_MS = 4000;
const NEW_LAYER_WEIGHT = 0.5; // a new layer joins the mix at half weight

let state = null;
let ended = false;

// --- Requests --------------------------------------------------------------------------------
async function api(method, path, body) {
  const init = { method, credentials: "same-origin", headers: {} };
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let res;
  try {
    res = await fetch(path, init);
  } catch (err) {
    toast("the player did not answer; is it still running?", true);
    throw err;
  }
  let data = {};
  try { data = await res.json(); } catch (_) { /* not JSON: a 403/421 text */ }
  if (!res.ok) {
    toast(data.error || `${res.status} ${res.statusText}`, true);
    throw new Error(data.error || String(res.status));
  }
  return data;
}

// Coalesces rapid changes (slider drags) into few requests: one in flight, the newest values next.
function coalescer(send) {
  let pending = null, timer = null, inFlight = false;
  async function flush() {
    timer = null;
    if (inFlight || pending === null) return;
    const value = pending;
    pending = null;
    inFlight = true;
    try { await send(value); } catch (_) { /* shown by api() */ }
    inFlight = false;
    if (pending !== null) timer = setTimeout(flush, THROTTLE_MS);
  }
  return {
    push(merge) {
      pending = merge(pending);
      if (!timer && !inFlight) timer = setTimeout(flush, THROTTLE_MS);
    },
    now() { clearTimeout(timer); flush(); },
  };
}

const weights = coalescer((w) => api("POST", "/api/weights", { weights: w }));
const volume = coalescer((v) => api("PUT", "/api/volume", { volume: v }));
const width = coalescer((v) => api("PUT", "/api/width", { width: v }));

// --- Helpers -----------------------------------------------------------------------------------
function clock(seconds) {
  seconds = Math.max(0, Math.round(seconds));
  const h = Math.floor(seconds / 3600), m = Math.floor((seconds % 3600) / 60), s = seconds % 60;
  const mm = String(m).padStart(2, "0"), ss = String(s).padStart(2, "0");
  return h ? `${h}:${mm}:${ss}` : `${mm}:${ss}`;
}

function fill(range) {
  range.style.setProperty("--fill", `${(range.value / range.max) * 100}%`);
}

let toastTimer = null;
function toast(text, error = false) {
  const el = $("toast");
  el.textContent = text;
  el.className = error ? "show error" : "show";
  clearTimeout(toastTimer);
  toastTimer = setTimeout(() => { el.className = error ? "error" : ""; }, error ? 6000 : 2500);
}

// --- Layers ------------------------------------------------------------------------------------
const rows = new Map(); // name -> {li, range, value, prompt, live, touched}

function layerRow(name) {
  const li = document.createElement("li");
  li.className = "layer";
  li.dataset.name = name;
  li.innerHTML = `
    <div class="layer-head">
      <span class="layer-name"></span>
      <output class="layer-value"></output>
      <button type="button" class="remove" title="Remove this layer">&times;</button>
    </div>
    <div class="slider-wrap">
      <input type="range" class="weight" min="0" max="1" step="0.01">
      <div class="live" title="the weight playing now (keyframes and drift move it)"><div class="live-bar"></div></div>
    </div>
    <input class="prompt" spellcheck="false" maxlength="1000">`;
  const row = {
    li,
    range: li.querySelector(".weight"),
    value: li.querySelector(".layer-value"),
    prompt: li.querySelector(".prompt"),
    live: li.querySelector(".live-bar"),
    touched: 0, // when the user last moved the slider: the server's echo must not fight the hand
    holding: false,
    saved: "",
  };
  li.querySelector(".layer-name").textContent = name;
  row.range.setAttribute("aria-label", `${name} weight`);
  row.prompt.setAttribute("aria-label", `${name} prompt`);
  li.querySelector(".remove").setAttribute("aria-label", `remove ${name}`);

  row.range.addEventListener("input", () => {
    row.touched = performance.now();
    const v = Number(row.range.value);
    row.value.textContent = v.toFixed(2);
    fill(row.range);
    weights.push((p) => ({ ...(p || {}), [name]: v }));
  });
  row.range.addEventListener("change", () => { row.touched = performance.now(); weights.now(); });
  row.range.addEventListener("pointerdown", () => { row.holding = true; });
  row.range.addEventListener("pointerup", () => { row.holding = false; row.touched = performance.now(); });

  row.prompt.addEventListener("keydown", (e) => {
    if (e.key === "Enter") { e.preventDefault(); row.prompt.blur(); }
    if (e.key === "Escape") { row.prompt.value = row.saved; row.prompt.blur(); }
  });
  row.prompt.addEventListener("blur", async () => {
    const text = row.prompt.value.trim();
    if (text === row.saved) return;
    row.prompt.classList.add("saving");
    try {
      await api("PUT", `/api/layers/${encodeURIComponent(name)}`, { prompt: text });
      row.saved = text.replace(/\s+/g, " ");
      toast(`${name}: new prompt, fading in`);
    } catch (_) {
      if (document.activeElement !== row.prompt) row.prompt.value = row.saved; // not while typing again
    } finally {
      row.prompt.classList.remove("saving");
    }
  });

  li.querySelector(".remove").addEventListener("click", async () => {
    li.classList.add("leaving");
    try {
      await api("DELETE", `/api/layers/${encodeURIComponent(name)}`);
      toast(`${name} removed; it fades out`);
    } catch (_) {
      li.classList.remove("leaving");
    }
  });
  return row;
}

function renderLayers(s) {
  const list = $("layers");
  const names = Object.keys(s.layers);
  for (const [name, row] of rows) {
    if (!(name in s.layers)) { row.li.remove(); rows.delete(name); }
  }
  names.forEach((name, i) => {
    let row = rows.get(name);
    if (!row) {
      row = layerRow(name);
      rows.set(name, row);
    }
    if (list.children[i] !== row.li) list.insertBefore(row.li, list.children[i] || null);
    const set = s.set_weights[name];
    if (!row.holding && performance.now() - row.touched > 1500) {
      row.range.value = set;
      row.value.textContent = Number(set).toFixed(2);
      fill(row.range);
    }
    const now = s.weights[name];
    row.live.style.width = `${(now === undefined ? 0 : now) * 100}%`;
    if (document.activeElement !== row.prompt) {
      row.prompt.value = s.layers[name];
      row.saved = s.layers[name];
    }
  });
}

$("add-layer").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("new-name").value.trim(), prompt = $("new-prompt").value.trim();
  try {
    await api("POST", "/api/layers", { name, prompt, weight: NEW_LAYER_WEIGHT });
    $("new-name").value = "";
    $("new-prompt").value = "";
    toast(`${name} added; it fades in over the next chunks`);
  } catch (_) { /* shown */ }
});

// --- Volume ------------------------------------------------------------------------------------
let volumeTouched = 0, volumeHolding = false;
$("volume").addEventListener("pointerdown", () => { volumeHolding = true; });
$("volume").addEventListener("pointerup", () => { volumeHolding = false; volumeTouched = performance.now(); });
$("volume").addEventListener("input", () => {
  volumeTouched = performance.now();
  const v = Number($("volume").value);
  $("volume-value").textContent = `${Math.round(v * 100)}%`;
  fill($("volume"));
  volume.push(() => v);
});
$("volume").addEventListener("change", () => volume.now());

// --- Width (stereo image; applies from the next chunk, ramped) ------------------------------------
let widthTouched = 0, widthHolding = false;
$("width").addEventListener("pointerdown", () => { widthHolding = true; });
$("width").addEventListener("pointerup", () => { widthHolding = false; widthTouched = performance.now(); });
$("width").addEventListener("input", () => {
  widthTouched = performance.now();
  const v = Number($("width").value);
  $("width-value").textContent = `${Math.round(v * 100)}%`;
  fill($("width"));
  width.push(() => v);
});
$("width").addEventListener("change", () => width.now());

// --- Sleep timer ---------------------------------------------------------------------------------
function setTimer(seconds) {
  return api("POST", "/api/timer", { action: "set", seconds })
    .then(() => toast("sleep timer set")).catch(() => {});
}
document.querySelectorAll(".presets button").forEach((b) =>
  b.addEventListener("click", () => setTimer(Number(b.dataset.seconds))));
$("timer-form").addEventListener("submit", (e) => {
  e.preventDefault();
  let text = $("timer-custom").value.trim();
  if (!text) return;
  if (/^\d+(\.\d+)?$/.test(text)) text += "m"; // a bare number means minutes
  setTimer(text).then(() => { $("timer-custom").value = ""; });
});
$("timer-extend").addEventListener("click", () =>
  api("POST", "/api/timer", { action: "extend", seconds: 900 }).then(() => toast("15 more minutes")).catch(() => {}));
$("timer-cancel").addEventListener("click", () =>
  api("POST", "/api/timer", { action: "cancel" }).then(() => toast("sleep timer off")).catch(() => {}));

function renderTimer(s) {
  const el = $("timer-display");
  const fading = s.stopping || (s.sleep && s.sleep.fading);
  if (s.sleep) {
    el.textContent = s.sleep.fading ? `fading · ${clock(s.sleep.remaining_s)}` : clock(s.sleep.remaining_s);
    el.className = s.sleep.fading ? "timer-display fading" : "timer-display";
  } else {
    el.textContent = "off";
    el.className = "timer-display off";
  }
  $("timer-extend").disabled = !s.sleep || fading;
  $("timer-cancel").disabled = !s.sleep || fading;
  document.querySelectorAll(".presets button, #timer-form button").forEach((b) => { b.disabled = fading; });
}

// --- Pause, wake alarm ---------------------------------------------------------------------------
function setPaused(action) {
  return api("POST", "/api/pause", { action }).catch(() => {});
}
$("pause").addEventListener("click", () => setPaused(state && state.paused ? "resume" : "pause"));

$("wake-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const at = $("wake-time").value.trim();
  if (!at) return;
  api("POST", "/api/wake", { action: "set", at })
    .then((r) => { $("wake-time").value = ""; toast(`alarm set for ${r.applied.wake.at}`); }).catch(() => {});
});
$("wake-cancel").addEventListener("click", () =>
  api("POST", "/api/wake", { action: "cancel" }).then(() => toast("alarm off")).catch(() => {}));

function renderNight(s) {
  const b = $("pause");
  b.textContent = s.paused ? "Resume" : "Pause";
  b.setAttribute("aria-pressed", s.paused ? "true" : "false");
  b.disabled = !!s.stopping;
  const el = $("wake-display");
  if (s.wake) {
    el.textContent = `${s.wake.at} · in ${clock(s.wake.in_s)}`;
    el.className = "timer-display";
  } else {
    el.textContent = "off";
    el.className = "timer-display off";
  }
  $("wake-cancel").disabled = !s.wake;
}

// --- Media Session: the phone's lock screen and hardware media keys --------------------------------
const media = "mediaSession" in navigator ? navigator.mediaSession : null;
if (media) {
  const handlers = {
    play: () => setPaused("resume"),
    pause: () => setPaused("pause"),
    stop: () => api("POST", "/api/stop", {}).catch(() => {}),
  };
  for (const [action, handler] of Object.entries(handlers)) {
    try { media.setActionHandler(action, handler); } catch (_) { /* an action this browser does not know */ }
  }
}
function renderMedia(s) {
  if (!media) return;
  if (!media.metadata || media.metadata.title !== s.scene) {
    const icon = document.querySelector('link[rel="icon"]');
    media.metadata = new MediaMetadata({
      title: s.scene, artist: "soundscape", album: s.description || "",
      artwork: icon ? [{ src: icon.href, sizes: "any", type: icon.type || "image/svg+xml" }] : [],
    });
  }
  media.playbackState = s.stopping ? "none" : s.paused ? "paused" : "playing";
}

// --- Save, stop ----------------------------------------------------------------------------------
$("save-form").addEventListener("submit", async (e) => {
  e.preventDefault();
  const name = $("save-name").value.trim();
  if (state && state.save_dir) {
    try {
      const r = await api("POST", "/api/save", { name });
      $("save-result").textContent = `saved to ${r.path}`;
    } catch (_) { /* shown */ }
    return;
  }
  const a = document.createElement("a");
  a.href = `/api/scene.yaml?name=${encodeURIComponent(name)}`;
  a.download = "";
  document.body.appendChild(a);
  a.click();
  a.remove();
  $("save-result").textContent = "downloading the scene file";
});

let armedTimer = null;
$("stop").addEventListener("click", async () => {
  const b = $("stop");
  if (!b.classList.contains("armed")) {
    b.classList.add("armed");
    b.textContent = "Click again to fade out and stop";
    armedTimer = setTimeout(() => { b.classList.remove("armed"); b.textContent = "Fade out and stop"; }, STOP_ARM_MS);
    return;
  }
  clearTimeout(armedTimer);
  b.disabled = true;
  b.textContent = "Fading out…";
  try { await api("POST", "/api/stop", {}); } catch (_) { b.disabled = false; }
});

// --- State from the player -------------------------------------------------------------------------
function render(s) {
  const first = state === null;
  state = s;
  $("scene-name").textContent = s.scene;
  document.title = `${s.scene} · soundscape`;
  $("scene-description").textContent = s.description || "";
  if (first) $("save-name").value = `${s.scene} (my mix)`;
  $("elapsed").textContent = clock(s.elapsed_s);

  const phase = $("phase");
  if (s.stopping || (s.sleep && s.sleep.fading)) { phase.textContent = "fading out"; phase.className = "pill fading"; }
  else if (s.paused) { phase.textContent = s.wake ? "asleep" : "paused"; phase.className = "pill paused"; }
  else if (s.elapsed_s > 0) { phase.textContent = "playing"; phase.className = "pill playing"; }
  else { phase.textContent = "buffering"; phase.className = "pill"; }

  renderLayers(s);
  renderTimer(s);
  renderNight(s);
  renderMedia(s);
  if (!volumeHolding && performance.now() - volumeTouched > 1500) {
    $("volume").value = s.volume;
    $("volume-value").textContent = `${Math.round(s.volume * 100)}%`;
    fill($("volume"));
  }
  if (s.width !== undefined && !widthHolding && performance.now() - widthTouched > 1500) {
    $("width").value = s.width;
    $("width-value").textContent = `${Math.round(s.width * 100)}%`;
    fill($("width"));
  }
  $("width").disabled = s.channels === 1;
  $("st-ahead").textContent = `${s.buffered_s.toFixed(1)} s`;
  $("st-speed").textContent = s.generator_rtf ? `${s.generator_rtf.toFixed(2)}× real time` : "–";
  $("st-speed").classList.toggle("bad", s.generator_rtf > 0 && s.generator_rtf < 1);
  $("st-steps").textContent = s.steps || "–";
  $("st-coverups").textContent = s.coverups;
  $("st-fresh").textContent = s.fresh_percent === undefined ? "–" : `${s.fresh_percent} %`;
  $("st-underruns").textContent = s.underruns;
  $("st-underruns").classList.toggle("bad", s.underruns > 0);
  $("st-device").textContent = `${s.device} · ${s.sample_rate / 1000} kHz`;
  if (s.stopping) { $("stop").disabled = true; $("stop").textContent = "Fading out…"; }
}

// --- Meter and spectrogram -------------------------------------------------------------------------
const canvas = $("spectrogram");
const ctx = canvas.getContext("2d");
const COLUMN = 2;
// A calm colour map: night blue -> teal -> pale amber.
const LUT = (() => {
  const stops = [[0, [11, 17, 22]], [0.35, [22, 62, 84]], [0.62, [56, 150, 140]], [0.85, [196, 214, 160]], [1, [250, 226, 170]]];
  const lut = new Uint8ClampedArray(256 * 3);
  for (let i = 0; i < 256; i++) {
    const t = i / 255;
    let k = 0;
    while (k < stops.length - 2 && t > stops[k + 1][0]) k++;
    const [t0, c0] = stops[k], [t1, c1] = stops[k + 1];
    const u = Math.min(1, Math.max(0, (t - t0) / (t1 - t0)));
    for (let j = 0; j < 3; j++) lut[i * 3 + j] = c0[j] + (c1[j] - c0[j]) * u;
  }
  return lut;
})();
ctx.fillStyle = "rgb(11,17,22)";
ctx.fillRect(0, 0, canvas.width, canvas.height);
const column = ctx.createImageData(COLUMN, canvas.height);
let peakHold = -120, peakAt = 0;

function drawAudio(a) {
  // Meter: -60..0 dBFS.
  const pos = (db) => (db === null ? 0 : Math.min(100, Math.max(0, ((db + 60) / 60) * 100)));
  $("meter-rms").style.width = `${pos(a.rms_db)}%`;
  const now = performance.now();
  const peak = a.peak_db === null ? -120 : a.peak_db;
  if (peak >= peakHold || now - peakAt > 1200) { peakHold = peak; peakAt = now; }
  $("meter-peak").style.left = `calc(${pos(peakHold)}% - 2px)`;
  $("meter-db").textContent = a.rms_db === null ? "−∞ dB" : `${a.rms_db.toFixed(0)} dB`;

  // Spectrogram: scroll left, draw the new column at the right (low frequencies at the bottom).
  const h = canvas.height, bands = a.bands, n = bands.length;
  ctx.drawImage(canvas, -COLUMN, 0);
  for (let y = 0; y < h; y++) {
    const b = bands[Math.min(n - 1, Math.floor(((h - 1 - y) / h) * n))];
    for (let x = 0; x < COLUMN; x++) {
      const o = (y * COLUMN + x) * 4;
      column.data[o] = LUT[b * 3]; column.data[o + 1] = LUT[b * 3 + 1]; column.data[o + 2] = LUT[b * 3 + 2];
      column.data[o + 3] = 255;
    }
  }
  ctx.putImageData(column, canvas.width - COLUMN, 0);
}

// --- Connection -------------------------------------------------------------------------------------
function connect() {
  const events = new EventSource("/api/events");
  events.addEventListener("state", (e) => render(JSON.parse(e.data)));
  events.addEventListener("audio", (e) => drawAudio(JSON.parse(e.data)));
  events.addEventListener("bye", () => {
    ended = true;
    events.close();
    $("phase").textContent = "stopped";
    $("phase").className = "pill stopped";
    $("ended").hidden = false;
  });
  events.addEventListener("error", () => {
    if (ended) return;
    $("phase").textContent = "reconnecting";
    $("phase").className = "pill offline";
  });
}

fill($("volume"));
fill($("width"));
connect();
