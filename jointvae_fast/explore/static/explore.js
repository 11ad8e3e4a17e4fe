// The explorer page: sliders and class buttons edit a latent {z, c}; the server decodes it (api/decode),
// draws traversal strips (api/traverse), prior samples (api/prior) and encodes test images (api/encode).
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { info: null, z: [], c: [], hovered: null };
  const sliders = new Map(); // continuous unit index -> {input, out}
  const discButtons = new Map(); // discrete variable index -> [button per class]

  const setStatus = (msg) => { $("status").textContent = msg || ""; };
  const latentBody = () => ({ z: state.z.slice(), c: state.c.slice() });

  async function api(path, body) {
    const opts = body === undefined ? {} :
      { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) };
    const r = await fetch(path, opts);
    if (!r.ok) {
      let msg = `${r.status} ${r.statusText}`;
      try { msg = (await r.json()).error || msg; } catch (_) { /* not JSON: keep the status line */ }
      throw new Error(msg);
    }
    return r;
  }

  function toDataURL(blob) {
    return new Promise((resolve, reject) => {
      const f = new FileReader();
      f.onload = () => resolve(f.result);
      f.onerror = () => reject(f.error);
      f.readAsDataURL(blob);
    });
  }

  // At most one request in flight per channel. Wishes made meanwhile collapse into one follow-up request
  // that reads the state when it is sent, so stale intermediate latents are never requested.
  class Channel {
    constructor(send) { this.send = send; this.busy = false; this.pending = false; }
    request() {
      if (this.busy) { this.pending = true; return; }
      this.busy = true;
      this.pending = false;
      this.send().then(() => setStatus(""), (e) => setStatus(e.message)).finally(() => {
        this.busy = false;
        if (this.pending) this.request();
      });
    }
  }

  const decoder = new Channel(async () => {
    const r = await api("api/decode", latentBody());
    $("decoded").src = await toDataURL(await r.blob());
  });

  const strip = new Channel(async () => {
    const name = state.hovered;
    if (!name) return;
    const r = await api("api/traverse", { ...latentBody(), latent: name, steps: state.info.traversal_steps });
    $("strip").src = await toDataURL(await r.blob());
    $("strip").hidden = false;
    $("strip-caption").textContent = name.startsWith("z")
      ? `${name} from the prior's 5% to 95% quantile (left to right), the other latents as set`
      : `${name} over its classes 0..${state.info.disc[Number(name.slice(1))] - 1}, the other latents as set`;
  });

  // a latent changed: redraw, and redraw the strip unless it is the strip's own latent (which it varies)
  function changed(name) {
    decoder.request();
    if (state.hovered && state.hovered !== name) strip.request();
  }

  function hover(name, row) {
    if (state.hovered === name) return;
    document.querySelectorAll(".current").forEach((e) => e.classList.remove("current"));
    row.classList.add("current");
    state.hovered = name;
    strip.request();
  }

  function unitRow(u) {
    const s = state.info.slider;
    const row = document.createElement("div");
    row.className = "unit";
    row.dataset.latent = u.name;
    const label = document.createElement("span");
    label.textContent = u.name;
    const input = Object.assign(document.createElement("input"),
      { type: "range", min: -s, max: s, step: 0.01, value: 0, id: `slider-${u.name}` });
    input.setAttribute("aria-label", `${u.name}, KL ${u.kl.toFixed(3)} nats`);
    const out = document.createElement("output");
    out.textContent = "0.00";
    const kl = document.createElement("span");
    kl.className = "kl";
    kl.textContent = `KL ${u.kl.toFixed(3)}`;
    input.addEventListener("input", () => {
      state.z[u.index] = Number(input.value);
      out.textContent = Number(input.value).toFixed(2);
      changed(u.name);
    });
    row.addEventListener("mouseenter", () => hover(u.name, row));
    row.addEventListener("focusin", () => hover(u.name, row));
    sliders.set(u.index, { input, out });
    row.append(label, input, out, kl);
    return row;
  }

  function discRow(d) {
    const row = document.createElement("div");
    row.className = "disc";
    row.dataset.latent = d.name;
    const label = document.createElement("span");
    label.textContent = `${d.name} (KL ${d.kl.toFixed(3)}): `;
    row.append(label);
    const buttons = [];
    for (let k = 0; k < d.classes; k++) {
      const b = Object.assign(document.createElement("button"), { type: "button", textContent: String(k) });
      b.addEventListener("click", () => { state.c[d.index] = k; sync(); changed(d.name); });
      buttons.push(b);
      row.append(b);
    }
    discButtons.set(d.index, buttons);
    row.addEventListener("mouseenter", () => hover(d.name, row));
    row.addEventListener("focusin", () => hover(d.name, row));
    return row;
  }

  // show the state in the controls (a value beyond the slider's range is shown, the knob sits at the end)
  function sync() {
    for (const [j, { input, out }] of sliders) {
      input.value = state.z[j];
      out.textContent = state.z[j].toFixed(2);
    }
    for (const [i, buttons] of discButtons) {
      buttons.forEach((b, k) => b.setAttribute("aria-pressed", String(k === state.c[i])));
    }
  }

  function setLatent(lat) {
    state.z = lat.z.slice();
    state.c = lat.c.slice();
    sync();
    changed(null);
  }

  const act = (fn) => () => fn().then(() => setStatus(""), (e) => setStatus(e.message));

  async function encode(index) {
    $("test-index").value = index;
    const j = await (await api("api/encode", { index })).json();
    $("original").src = j.original;
    $("reconstruction").src = j.reconstruction;
    $("original-caption").textContent = `test image #${j.index}`;
    $("original-fig").hidden = $("reconstruction-fig").hidden = false;
    setLatent(j);
  }

  function buildTestControls(t) {
    $("test-note").textContent = t.available ? `${t.count} images: ${t.note}.` : `Unavailable: ${t.note}.`;
    for (const id of ["test-index", "encode", "random-test"]) $(id).disabled = !t.available;
    if (!t.available) return;
    $("test-index").max = t.count - 1;
    $("encode").addEventListener("click", act(() => encode(Number($("test-index").value))));
    $("random-test").addEventListener("click", act(() => encode(Math.floor(Math.random() * t.count))));
  }

  async function init() {
    const info = await (await api("api/model")).json();
    state.info = info;
    state.z = new Array(info.cont).fill(0);
    state.c = new Array(info.disc.length).fill(0);
    $("source").textContent = info.source;
    $("kl-source").textContent = `Continuous units, highest KL first (nats); KL measured on: ${info.kl_source}.`;
    const inactive = info.units.filter((u) => !u.active);
    info.units.filter((u) => u.active).forEach((u) => $("units").append(unitRow(u)));
    inactive.forEach((u) => $("inactive-units").append(unitRow(u)));
    if (inactive.length) {
      $("inactive").hidden = false;
      $("inactive-summary").textContent =
        `${inactive.length} inactive unit(s) (KL <= ${info.inactive_threshold} nats: they barely change the image)`;
    }
    info.discrete.forEach((d) => $("discrete").append(discRow(d)));
    buildTestControls(info.test_images);
    $("prior").addEventListener("click", act(async () => setLatent(await (await api("api/prior", {})).json())));
    $("zero").addEventListener("click", () => { state.z.fill(0); sync(); changed(null); });
    sync();
    decoder.request();
  }

  init().catch((e) => setStatus(`could not load the model: ${e.message}`));
})();
