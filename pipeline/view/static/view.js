// Live view of the voice assistant: renders the updates pushed on /events (Server-Sent
// Events). No framework, nothing loaded from elsewhere; all text goes in with textContent.
// Cheap to watch: updates change a model, and once per animation frame only the changed
// nodes of the changed turns are touched (no rebuild, one layout read at the end).
"use strict";
(function () {
  const LABELS = { listening: "listening", hearing: "hearing you", thinking: "thinking",
                   speaking: "speaking", interrupted: "interrupted", error: "error" };
  const STAGES = { endpoint: "endpoint", asr: "speech to text", llm_request: "request",
                   first_token: "first token", first_segment: "first phrase",
                   tts_first: "voice", to_speaker: "to speaker" };
  const turns = new Map();
  let userScrolled = false;  // the reader scrolled up: do not jump to the newest turn
  const $ = (id) => document.getElementById(id);
  const el = (tag, cls, text) => {
    const e = document.createElement(tag);
    if (cls) e.className = cls;
    if (text !== undefined) e.textContent = text;
    return e;
  };

  function setState(state) {
    const badge = $("state");
    if (badge.dataset.state === state) return;
    badge.dataset.state = state;
    badge.textContent = LABELS[state] || state;
  }

  function setLevel(rms) {
    // RMS to a 0..1 meter on a dB scale (-60 dBFS .. 0); a transform, so no layout
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    const x = Math.max(0, Math.min(1, (db + 60) / 60));
    $("level").style.transform = "scaleX(" + x.toFixed(3) + ")";
  }

  function ms(s) { return Math.round(s * 1000) + " ms"; }

  function latencyBlock(lat) {
    const box = el("div");
    const row = el("div", "latency");
    const fig = el("span");
    fig.append("end of speech → first sound ");
    fig.append(el("b", "figure", ms(lat.total_s)));
    row.append(fig);
    const bar = el("div", "bar");
    const legend = el("div", "legend");
    const sum = lat.stages.reduce((a, st) => a + Math.max(0, st.s), 0) || 1;
    for (const st of lat.stages) {
      const part = el("span", "s-" + st.name);
      part.style.width = (Math.max(0, st.s) / sum * 100) + "%";
      part.title = (STAGES[st.name] || st.name) + ": " + ms(st.s);
      bar.append(part);
      const item = el("span");
      item.append(el("i", "s-" + st.name), (STAGES[st.name] || st.name) + " " + ms(st.s));
      legend.append(item);
    }
    row.append(bar);
    box.append(row, legend);
    return box;
  }

  // One turn's elements, built once; later updates only touch what changed.
  function buildTurn(id) {
    const root = el("section", "turn");
    root.dataset.turn = id;
    const said = el("div", "you transcript");
    const who = el("div", "who", "assistant");
    const status = el("span", "status");
    who.append(status);
    const answer = el("div", "answer");
    const spoken = el("span", "spoken"), current = el("span", "current"), rest = el("span", "rest");
    answer.append(spoken, current, rest);
    const latency = el("div");
    root.append(el("div", "who", "you"), said, who, answer, latency);
    return { root, said, status, spoken, current, rest, latency, last: {} };
  }

  function setText(node, text) { if (node.textContent !== text) node.textContent = text; }

  function updateTurn(v, t) {
    const last = v.last;
    v.root.classList.toggle("interrupted", t.status === "interrupted");
    setText(v.said, t.transcript || "…");
    v.said.classList.toggle("tentative", !t.transcript_final);
    setText(v.status, t.status && t.status !== "done"
      ? t.status + (t.error ? " (" + t.error + ")" : "") : "");
    v.status.classList.toggle("error", t.status === "error");
    const a = t.answer || "";
    setText(v.spoken, a.slice(0, t.spoken_to));
    setText(v.current, a.slice(t.spoken_to, t.speaking_to));
    const rest = a.slice(t.speaking_to);
    const shown = v.rest.firstChild;
    // the answer grows at its end: add the new text rather than replacing it all
    if (shown && rest.startsWith(shown.data)) {
      if (rest.length > shown.data.length) shown.appendData(rest.slice(shown.data.length));
    } else {
      setText(v.rest, rest);
    }
    const lat = t.latency ? JSON.stringify(t.latency) : "";
    if (lat !== last.latency) {
      v.latency.replaceChildren(...(t.latency ? [latencyBlock(t.latency)] : []));
      last.latency = lat;
    }
  }

  // Updates only change this model; the DOM follows once per animation frame.
  const views = new Map();  // turn_id -> elements of a shown turn
  const dirty = new Set();  // turn ids to render
  let level = null, order = false, faultsDirty = [], frame = 0;
  function schedule() { if (!frame) frame = requestAnimationFrame(render); }

  function render() {
    frame = 0;
    const main = $("turns");
    let changed = null;
    for (const id of dirty) {
      const t = turns.get(id);
      let v = views.get(id);
      if (!t || (!t.transcript && !t.answer)) {
        if (v) { v.root.remove(); views.delete(id); order = true; }
        continue;
      }
      if (!v) {
        v = buildTurn(id);
        views.set(id, v);
        // keep the turns in order even if one arrives late
        const later = [...views.keys()].filter((k) => k > id).sort((x, y) => x - y)[0];
        main.insertBefore(v.root, later === undefined ? null : views.get(later).root);
        order = true;
      }
      updateTurn(v, t);
      changed = v;
    }
    dirty.clear();
    if (order) {
      const ids = [...views.keys()];
      const newest = Math.max(...ids);
      views.forEach((v, id) => v.root.classList.toggle("live", id === newest));
      $("empty").hidden = views.size > 0;
      order = false;
    }
    faultsDirty.forEach(renderFault);
    faultsDirty = [];
    if (level !== null) { setLevel(level); level = null; }
    if (changed && !userScrolled) window.scrollTo(0, document.body.scrollHeight);
  }

  function renderFault(f) {
    const list = $("faults");
    const li = el("li", f.active ? "" : "past",
                  new Date(f.t * 1000).toLocaleTimeString() + " " + f.source + ": " + f.message);
    li.dataset.source = f.source;
    list.prepend(li);
    if (f.active === false) {
      // a cleared fault: its earlier active line is history now
      list.querySelectorAll('li[data-source="' + CSS.escape(f.source) + '"]')
        .forEach((n) => n.classList.add("past"));
    }
    while (list.children.length > 5) list.lastChild.remove();
  }

  function handle(u) {
    if (u.type === "snapshot") {
      turns.clear();
      views.forEach((v) => v.root.remove());
      views.clear();
      dirty.clear();
      $("faults").textContent = "";
      u.turns.forEach((t) => { turns.set(t.turn_id, t); dirty.add(t.turn_id); });
      faultsDirty = u.faults.filter((f) => f.message);
      order = true;
      setState(u.state);
      level = u.level;
    } else if (u.type === "state") {
      setState(u.state);  // at once: a badge is one attribute, and no state is skipped
      return;
    } else if (u.type === "level") {
      level = u.rms;
    } else if (u.type === "turn") {
      turns.set(u.turn.turn_id, u.turn);
      dirty.add(u.turn.turn_id);
    } else if (u.type === "turn_removed") {
      turns.delete(u.turn_id);
      dirty.add(u.turn_id);
    } else if (u.type === "fault") {
      if (u.fault.message) faultsDirty.push(u.fault);
    }
    schedule();
  }

  function connect() {
    const token = new URLSearchParams(location.search).get("token");
    const src = new EventSource("events" + (token ? "?token=" + encodeURIComponent(token) : ""));
    const link = $("link");
    src.onopen = () => { link.textContent = "live"; link.classList.remove("down"); };
    src.onerror = () => { link.textContent = "reconnecting…"; link.classList.add("down"); };
    src.onmessage = (e) => handle(JSON.parse(e.data));
  }

  window.addEventListener("scroll", () => {
    userScrolled = window.innerHeight + window.scrollY < document.body.scrollHeight - 40;
  }, { passive: true });
  const saved = document.getElementById("snapshot");
  if (saved) {  // a page exported by `make demo`: the conversation is in the file
    handle(JSON.parse(saved.textContent));
    $("link").textContent = "saved " + saved.dataset.saved;
  } else {
    connect();
  }
})();
