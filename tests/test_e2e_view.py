"""The live view in a real headless browser (Debian's chromium) while the whole dataflow holds
a spoken conversation through the PulseAudio virtual sound card.

One dataflow for all the checks: the page is opened before the first question; it must show
the transcript, the answer growing as the (scripted) LLM streams it, the state going
hearing -> thinking -> speaking -> listening, and the latency figure; a reload must show the
same turn again; a second question the LLM fails on must show as an error on its turn and in
the fault list.
"""

from __future__ import annotations

import re

import pytest

from tests.browser import Chromium, chromium_path
from tests.conftest import overlap
from tests.live import LiveAssistant, play
from tests.scripted_server import Script, ScriptedServer

pytestmark = [pytest.mark.e2e, pytest.mark.sound,
              pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")]

WAIT_MS = 60000

# Installed in the page: every state the badge shows and every text each turn's answer
# shows, in order (a MutationObserver sees each change, also several within one task).
RECORD = """(() => {
  const badge = document.getElementById('state');
  window.__states = [badge.dataset.state];
  window.__answers = {};
  const push = (list, v) => { if (list[list.length - 1] !== v) list.push(v); };
  new MutationObserver((records) => {
    for (const r of records) push(window.__states, r.oldValue);
    push(window.__states, badge.dataset.state);
  }).observe(badge, {attributes: true, attributeFilter: ['data-state'], attributeOldValue: true});
  new MutationObserver(() => {
    for (const t of document.querySelectorAll('[data-turn]')) {
      const list = window.__answers[t.dataset.turn] = window.__answers[t.dataset.turn] || [];
      push(list, t.querySelector('.answer').textContent);
    }
  }).observe(document.getElementById('turns'), {subtree: true, childList: true,
                                                 characterData: true});
  return true;
})()"""

# The turn once it is over on the page: back to listening, the latency figure shown.
TURN = """(() => {
  const t = document.querySelector('[data-turn="%d"]');
  const fig = t && t.querySelector('.latency .figure');
  if (!fig || document.getElementById('state').dataset.state !== 'listening') return null;
  return {transcript: t.querySelector('.transcript').textContent,
          answer: t.querySelector('.answer').textContent,
          spoken: t.querySelector('.spoken').textContent,
          latency: fig.textContent, stages: t.querySelectorAll('.bar span').length,
          states: window.__states || null, answers: (window.__answers || {})['%d'] || null};
})()"""

# A turn the LLM failed on: its error on the turn, the fault in the list.
FAILED = """(() => {
  const t = [...document.querySelectorAll('[data-turn]')].filter((n) => +n.dataset.turn > %d).pop();
  const status = t && t.querySelector('.status.error');
  const fault = [...document.querySelectorAll('#faults li')]
    .find((li) => li.textContent.includes('LLM failed'));
  if (!status || !fault || document.getElementById('state').dataset.state !== 'listening') return null;
  return {turn: +t.dataset.turn, status: status.textContent, fault: fault.textContent,
          answer: t.querySelector('.answer').textContent, states: window.__states};
})()"""


def answer(messages: list[dict]) -> str:
    said = messages[-1]["content"].strip().rstrip(".?!")
    return f"You said {said}. That is a fine question, and this is my short answer to it."


def in_order(seen: list[str], expected: list[str]) -> bool:
    """`expected` is a subsequence of `seen`."""
    it = iter(seen)
    return all(state in it for state in expected)


def test_the_page_follows_a_spoken_conversation(sound_card, tmp_path, make_speech):
    q1 = make_speech(["What is the capital of France?"])
    q2 = make_speech(["Play some jazz music."])
    # tokens 0.12 s apart: the answer streams for about 2 s, so the page can be seen growing it
    script = Script(answer_fn=answer, token_delay_s=0.12)
    with ScriptedServer(script) as srv:
        env = {"OPENAI_BASE_URL": srv.base_url, "VIEW_PORT": "0", "LLM_RETRIES": "0"}
        with LiveAssistant(tmp_path, env) as assistant:
            assistant.wait_ready()
            url = assistant.view_url()
            browser = Chromium(timeout_s=WAIT_MS / 1000 + 30)
            try:
                browser.open(url)
                browser.wait_for("document.getElementById('link').textContent === 'live'")
                browser.wait_for(RECORD)

                play(q1)
                turn = assistant.wait_turns(1, timeout=60)[0]
                tid = turn["turn_id"]
                first = browser.wait_for(TURN % (tid, tid), WAIT_MS)

                browser.reload()  # the session survives a reload
                again = browser.wait_for(TURN % (tid, tid), WAIT_MS)
                browser.wait_for(RECORD)

                srv.script.mode = "http500"  # the next question finds the LLM failing
                play(q2)
                failed = browser.wait_for(FAILED % tid, WAIT_MS)
            finally:
                browser.close()
            log = assistant.log()
        requests = list(srv.script.requests)

    # the transcript and the whole streamed answer, as the dataflow had them
    assert first["transcript"] == turn["transcript"], (first, log[-3000:])
    assert overlap("what is the capital of france", first["transcript"]) >= 0.6, first
    expected = answer(requests[0]["messages"])
    assert first["answer"] == expected, first
    assert first["spoken"] == expected  # heard to the end: all of it marked spoken
    # streamed: the page showed the answer growing, prefix by prefix, before it was whole
    grown = first["answers"]
    partial = [a for a in grown if a and a != expected]
    assert len(partial) >= 3 and all(expected.startswith(a) for a in partial), grown
    assert grown[-1] == expected
    # the state changes of a turn, in order
    assert in_order(first["states"], ["listening", "hearing", "thinking", "speaking", "listening"]), first["states"]
    # the latency: end of speech -> first sound, as the metrics have it, and its stage bar
    shown_ms = int(re.fullmatch(r"(\d+) ms", first["latency"]).group(1))
    assert abs(shown_ms - turn["durations"]["voice_to_voice"] * 1000) <= 1, (first, turn["durations"])
    assert first["stages"] >= 5
    # after the reload: the same turn, from the snapshot
    assert {k: again[k] for k in ("transcript", "answer", "latency")} == \
        {k: first[k] for k in ("transcript", "answer", "latency")}
    # the LLM's failure: the apology is the turn's answer, the error is shown, not only spoken
    assert [r["_mode"] for r in requests] == ["ok", "http500"], requests
    assert failed["status"] == "error (http)", failed
    assert f"LLM failed (http) in turn {failed['turn']}" in failed["fault"], failed
    assert "sorry" in failed["answer"].lower(), failed
    # (no "thinking" needed: a speculative request may fail before the endpoint is final)
    assert in_order(failed["states"], ["hearing", "error", "speaking", "listening"]), failed["states"]
