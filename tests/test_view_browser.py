"""The live view in a real headless browser (Debian's chromium): a ViewState fed with a
scripted conversation, the page loaded from the server, its DOM read over DevTools."""

from __future__ import annotations

import pytest

from pipeline.view import export
from pipeline.view.server import Hub, ServerConfig, ViewServer
from pipeline.view.state import (
    Endpointed,
    Fault,
    LlmDelta,
    LlmEnd,
    MicLevel,
    Played,
    SpeechStarted,
    Transcript,
)
from tests.browser import Chromium, chromium_path

pytestmark = pytest.mark.skipif(chromium_path() is None, reason="chromium is not installed")

T0 = 1_700_000_000.0
TIMES = {"t_speech_end": T0 + 1.0, "t_utterance": T0 + 1.3, "t_transcript": T0 + 1.5,
         "t_llm_request": T0 + 1.51, "t_first_token": T0 + 1.7, "t_first_segment": T0 + 1.8,
         "t_first_audio": T0 + 2.0}
PLAYED = {**TIMES, "t_first_played": T0 + 2.1}

BEFORE = [  # turn 1, over before the page opens: it comes in the snapshot
    SpeechStarted(1, T0),
    Endpointed(1, True, TIMES),
    Transcript(1, "What is the capital of France?", True, TIMES),
    LlmDelta(1, "The capital of France ", 0, TIMES),
    LlmDelta(1, "is Paris.", 1, TIMES),
    LlmEnd(1, "stop", "", TIMES),
    Played(1, "started", 0, "The capital of France is Paris.", T0 + 2.1, PLAYED),
    Played(1, "finished", 0, "The capital of France is Paris.", T0 + 3.5, PLAYED),
    Played(1, "turn_end", 1, "", T0 + 3.5, PLAYED),
]
PUSHED = [  # turn 2, pushed once the page is connected
    Fault("llm-server", "crashed; dora restarted it", T0 + 10, active=False),
    MicLevel(0.3, T0 + 10),
    SpeechStarted(2, T0 + 10),
    Transcript(2, "tell me a joke", False),
    Endpointed(2, True),
    Transcript(2, "Tell me a joke.", True, TIMES),
    LlmDelta(2, "Why did the chicken cross the road? ", 0),
    LlmDelta(2, "To get to the other side.", 1),
    Played(2, "started", 0, "Why did the chicken cross the road?", T0 + 12),
    Played(2, "finished", 0, "Why did the chicken cross the road?", T0 + 13),
]


class ScriptedHub(Hub):
    """Applies the PUSHED events right after the first page subscribed, so they reach it
    by the push path and not in its snapshot."""

    pushed = False

    def subscribe(self):
        snapshot, q = super().subscribe()
        if not self.pushed:
            self.pushed = True
            for event in PUSHED:
                self.apply(event)
        return snapshot, q


PAGE_FACTS = """(() => {
  const turns = [...document.querySelectorAll('[data-turn]')];
  const two = document.querySelector('[data-turn="2"]');
  // the last pushed event marks the first sentence of turn 2 as spoken
  if (!two || !two.querySelector('.spoken').textContent) return null;
  return {
    state: document.getElementById('state').dataset.state,
    badge: document.getElementById('state').textContent,
    transcripts: turns.map(t => t.querySelector('.transcript').textContent),
    answers: turns.map(t => t.querySelector('.answer').textContent),
    spoken2: two.querySelector('.spoken').textContent,
    rest2: two.querySelector('.rest').textContent,
    latency1: turns[0].querySelector('.latency .figure').textContent,
    bar1: turns[0].querySelectorAll('.bar span').length,
    faults: document.getElementById('faults').textContent,
    meter: document.getElementById('level').style.transform,
  };
})()"""


@pytest.fixture
def page():
    hub = ScriptedHub()
    for event in BEFORE:
        hub.apply(event)
    server = ViewServer(hub, ServerConfig("127.0.0.1", 0, "")).start()
    browser = Chromium()
    try:
        yield browser, server
    finally:
        browser.close()
        server.stop()


def test_the_page_shows_transcript_streamed_answer_state_and_latency(page):
    browser, server = page
    browser.open(server.url())
    facts = browser.wait_for(PAGE_FACTS)
    assert (facts["state"], facts["badge"]) == ("speaking", "speaking")
    assert facts["transcripts"] == ["What is the capital of France?", "Tell me a joke."]
    assert facts["answers"] == ["The capital of France is Paris.",
                                "Why did the chicken cross the road? To get to the other side."]
    assert facts["spoken2"] == "Why did the chicken cross the road?"
    assert facts["rest2"] == " To get to the other side."
    assert facts["latency1"] == "1100 ms"
    assert facts["bar1"] == 7
    assert "llm-server" in facts["faults"]
    assert facts["meter"].startswith("scaleX(0.") and facts["meter"] != "scaleX(0.000)"

    # a reload mid-session shows the whole conversation again (from the snapshot)
    browser.reload()
    again = browser.wait_for(PAGE_FACTS)
    assert again["transcripts"] == facts["transcripts"]
    assert again["answers"] == facts["answers"]
    assert again["state"] == "speaking"


def test_the_exported_page_renders_the_conversation_offline(tmp_path):
    hub = Hub()
    for event in BEFORE:
        hub.apply(event)
    path = export.write(hub.snapshot(), tmp_path / "conversation.html")
    browser = Chromium()
    try:
        browser.open(path.as_uri())
        facts = browser.wait_for("""(() => {
          const t = document.querySelector('[data-turn="1"]');
          return t && {transcript: t.querySelector('.transcript').textContent,
                       answer: t.querySelector('.answer').textContent,
                       latency: t.querySelector('.latency .figure').textContent,
                       link: document.getElementById('link').textContent};
        })()""")
    finally:
        browser.close()
    assert facts["transcript"] == "What is the capital of France?"
    assert facts["answer"] == "The capital of France is Paris."
    assert facts["latency"] == "1100 ms"
    assert facts["link"].startswith("saved ")


def test_updates_change_the_turn_in_place_not_rebuild_it(page):
    browser, server = page
    browser.open(server.url())
    browser.wait_for(PAGE_FACTS)
    browser.call("Runtime.evaluate", expression=(
        "window.__two = document.querySelector('[data-turn=\"2\"]');"
        "window.__spoken = window.__two.querySelector('.spoken');"))
    server.hub.apply(LlmDelta(2, " Ha!", 2))
    server.hub.apply(Played(2, "started", 1, "To get to the other side.", T0 + 13))
    same = browser.wait_for("""(() => {
      const two = document.querySelector('[data-turn="2"]');
      if (!two.querySelector('.answer').textContent.endsWith('Ha!')) return null;
      if (!two.querySelector('.current').textContent) return null;
      return {turn: two === window.__two, spoken: two.querySelector('.spoken') === window.__spoken};
    })()""")
    assert same == {"turn": True, "spoken": True}
