// Live view of the voice assistant: renders the updates pushed on /events (Server-Sent
// Events). No framework, nothing loaded from elsewhere; all text goes in with textContent.
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
    badge.dataset.state = state;
    badge.textContent = LABELS[state] || state;
  }

  function setLevel(rms) {
    // RMS to a 0..100 % meter on a dB scale (-60 dBFS .. 0)
    const db = rms > 0 ? 20 * Math.log10(rms) : -100;
    $("level").style.width = Math.max(0, Math.min(100, (db + 60) / 60 * 100)) + "%";
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

  function renderTurn(t) {
    let node = document.querySelector('[data-turn="' + t.turn_id + '"]');
    if (!t.transcript && !t.answer) { if (node) node.remove(); return; }
    const fresh = el("section", "turn");
    fresh.dataset.turn = t.turn_id;
    fresh.classList.toggle("interrupted", t.status === "interrupted");
    const you = el("div", "who", "you");
    const said = el("div", "you transcript" + (t.transcript_final ? "" : " tentative"),
                    t.transcript || "…");
    fresh.append(you, said);
    const who = el("div", "who", "assistant");
    if (t.status && t.status !== "done") {
      who.append(el("span", "status" + (t.status === "error" ? " error" : ""),
                    t.status + (t.error ? " (" + t.error + ")" : "")));
    }
    const answer = el("div", "answer");
    const a = t.answer || "";
    answer.append(el("span", "spoken", a.slice(0, t.spoken_to)),
                  el("span", "current", a.slice(t.spoken_to, t.speaking_to)),
                  el("span", "rest", a.slice(t.speaking_to)));
    fresh.append(who, answer);
    if (t.latency) fresh.append(latencyBlock(t.latency));
    const main = $("turns");
    if (node) { node.replaceWith(fresh); } else {
      // keep the turns in order even if one arrives late
      const later = [...main.querySelectorAll("[data-turn]")].find((n) => +n.dataset.turn > t.turn_id);
      main.insertBefore(fresh, later || null);
    }
    $("empty").hidden = true;
    markLive();
    if (!userScrolled) fresh.scrollIntoView({ block: "end" });
  }
  function markLive() {
    const all = document.querySelectorAll("[data-turn]");
    all.forEach((n, i) => n.classList.toggle("live", i === all.length - 1));
  }

  function renderFault(f) {
    const li = el("li", f.active ? "" : "past",
                  new Date(f.t * 1000).toLocaleTimeString() + " " + f.source + ": " + f.message);
    li.dataset.source = f.source;
    $("faults").prepend(li);
    if (f.active === false) {
      // a cleared fault: its earlier active line is history now
      $("faults").querySelectorAll('li[data-source="' + CSS.escape(f.source) + '"]')
        .forEach((n) => n.classList.add("past"));
    }
    while ($("faults").children.length > 5) $("faults").lastChild.remove();
  }

  function handle(u) {
    if (u.type === "snapshot") {
      turns.clear();
      document.querySelectorAll("[data-turn]").forEach((n) => n.remove());
      $("faults").textContent = "";
      u.turns.forEach((t) => { turns.set(t.turn_id, t); renderTurn(t); });
      u.faults.forEach((f) => { if (f.message) renderFault(f); });
      setState(u.state);
      setLevel(u.level);
    } else if (u.type === "state") {
      setState(u.state);
    } else if (u.type === "level") {
      setLevel(u.rms);
    } else if (u.type === "turn") {
      turns.set(u.turn.turn_id, u.turn);
      renderTurn(u.turn);
    } else if (u.type === "turn_removed") {
      turns.delete(u.turn_id);
      const n = document.querySelector('[data-turn="' + u.turn_id + '"]');
      if (n) n.remove();
      markLive();
    } else if (u.type === "fault") {
      if (u.fault.message) renderFault(u.fault);
    }
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
  });
  const saved = document.getElementById("snapshot");
  if (saved) {  // a page exported by `make demo`: the conversation is in the file
    handle(JSON.parse(saved.textContent));
    $("link").textContent = "saved " + saved.dataset.saved;
  } else {
    connect();
  }
})();
