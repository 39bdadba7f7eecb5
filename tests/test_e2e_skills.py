"""Skills through the virtual sound card, in one running dataflow (issue 12, "Done when").

Spoken questions are played into the microphone sink; what the assistant says is recorded
from speaker.monitor for the whole run; the LLM is a scripted server that counts requests.
In order: a multiplication and a 10 s timer answered without the LLM, the timer announcing
itself in a turn of the assistant's own, "say that again" repeating that announcement, and
"stop" silencing a long LLM answer with no further request.
"""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import pytest

from pipeline import messages as m
from tests.conftest import wait_until
from tests.live import REC_RATE, LiveAssistant, Recorder, play
from tests.scripted_server import Script, ScriptedServer
from tests.test_e2e_turns import LONG, loud_blocks

pytestmark = [pytest.mark.e2e, pytest.mark.sound]

TIMER_S = 10


def answer_for(messages: list[dict]) -> str:
    """Only the story question is meant for the LLM: it gets a ~40 s answer to stop."""
    q = messages[-1]["content"].lower()
    return LONG if "bread" in q else f"You asked {q.strip().rstrip('?.!')}. The answer is short."


class Run:
    """The running assistant, its recording and the scripted server, with waits on them."""

    def __init__(self, assistant: LiveAssistant, rec: Recorder, srv: ScriptedServer) -> None:
        self.assistant, self.rec, self.srv = assistant, rec, srv

    def requests(self) -> int:
        return len(self.srv.script.requests)

    def record(self, pred: Callable[[dict], bool], what: str, after: int = 0, timeout: float = 90.0) -> dict:
        """The first metrics record after the first `after` ones that satisfies `pred`."""
        return wait_until(lambda: next((r for r in self.assistant.turns()[after:] if pred(r)), None),
                          timeout, what, lambda: self.assistant.log()[-3000:])

    def user_turn(self, after: int, what: str) -> dict:
        return self.record(lambda r: m.is_user_turn(r["turn_id"]), what, after)

    def ask(self, wav, what: str) -> dict:
        """Play a question, return its turn's record once its answer has been played."""
        n = len(self.assistant.turns())
        play(wav)
        record = self.user_turn(n, what)
        self.rec.wait_quiet()  # heard to its end: the user speaks after the answer, not over it
        return record

    def sound_after(self, t: float) -> float | None:
        """Seconds from wall time `t` to the first sound recorded after it (None: none yet);
        only the recording since `t` is looked at, so polling it stays cheap."""
        assert self.rec.first_t is not None
        start = max(0, int((t - self.rec.first_t) * REC_RATE))
        raw = b"".join(list(self.rec.chunks))[2 * start:]
        tail = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=np.int16).astype(np.float32) / 32768.0
        hits = np.nonzero(loud_blocks(tail))[0]
        return None if hits.size == 0 else start / REC_RATE + hits[0] * 160 / REC_RATE - (t - self.rec.first_t)


def test_skills_answer_ring_repeat_and_stop(sound_card, tmp_path, make_speech):
    # not "14 times 12": tiny.en hears Piper's "fourteen" as "forty" (the ASR, not the skill)
    q_math = make_speech(["What is 17 times 12?"])
    q_timer = make_speech(["Set a timer for 10 seconds."])
    q_again = make_speech(["Say that again."])
    q_story = make_speech(["Tell me a long story about bread."])
    q_stop = make_speech(["Stop."], lead_s=0.0)
    with ScriptedServer(Script(answer_fn=answer_for, token_delay_s=0.01)) as srv, \
            LiveAssistant(tmp_path, {"OPENAI_BASE_URL": srv.base_url}) as assistant:
        assistant.wait_ready()
        rec = Recorder()
        wait_until(lambda: rec.first_t is not None, 10, "the recorder of speaker.monitor")
        run = Run(assistant, rec, srv)

        # 1. arithmetic, exact, without the LLM
        math = run.ask(q_math, "the multiplication's turn")
        assert "17 times 12" in math["transcript"], math  # else the ear, not the skill, failed
        assert "204" in math["answer"], math
        assert run.requests() == 0

        # 2. a 10 s timer: confirmed without the LLM, then announced by itself
        timer = run.ask(q_timer, "the timer request's turn")
        assert "10 seconds" in timer["answer"], timer
        assert run.requests() == 0
        after_confirm = time.time()
        ring = run.record(lambda r: not m.is_user_turn(r["turn_id"]), "the timer's announcement",
                          timeout=TIMER_S + 60)
        assert ring["turn_id"] > timer["turn_id"] and not ring["transcript"], ring
        assert "timer is done" in ring["answer"].lower() and not ring["interrupted"], ring
        heard = run.sound_after(after_confirm)
        assert heard is not None, "the announcement was not heard on speaker.monitor"
        delay = after_confirm + heard - timer["times"]["t_speech_end"]
        print(f"\ntimer announcement heard {delay:.2f} s after the end of the request "
              f"(t_first_played - t_speech_end {ring['times']['t_first_played'] - timer['times']['t_speech_end']:.2f} s)")
        assert TIMER_S - 0.5 <= delay <= TIMER_S + 6, delay  # generous: a busy 2-core machine
        assert run.requests() == 0
        rec.wait_quiet()  # the announcement heard to its end

        # 3. "say that again": the last thing said, the announcement, word for word
        again = run.ask(q_again, "the repeat's turn")
        assert again["answer"].split() == ring["answer"].split(), (again, ring)
        assert run.requests() == 0

        # 4. a long LLM answer, stopped 2 s into its playback
        n = len(assistant.turns())
        t_story = time.time()
        play(q_story)
        onset = wait_until(lambda: run.sound_after(t_story), 60, "the story on speaker.monitor",
                           lambda: assistant.log()[-3000:], interval=0.05)
        playing_2s = int((t_story + onset + 2.0 - rec.first_t) * REC_RATE)
        wait_until(lambda: rec.audio().size >= playing_2s, 10, "2 s of the story's playback")
        t_stop = time.time()
        play(q_stop)
        story = run.record(lambda r: "bread" in r["transcript"].lower(), "the story's turn", n)
        rec.wait_quiet(quiet_s=3.0)  # nothing more comes: 3 s of silence
        audio = rec.audio()
        turns = assistant.turns()
        requests = list(srv.script.requests)
        log = assistant.log()

    assert story["interrupted"], story
    assert len(story["answer"].split()) < len(LONG.split()) / 2, story  # cut well before its end
    assert len(requests) == 1, [r["messages"][-1] for r in requests]
    assert "answered by the stop skill" in log
    later = [r for r in turns[n:] if r["turn_id"] > story["turn_id"]]
    assert all(not r["answer"].strip() for r in later), later  # the stop turn says nothing
    # where the speaker went quiet for good: the end of its last sound (a pause between two
    # sentences, or the ducking while "Stop." is probed, is no end)
    loud = loud_blocks(audio)
    first = round((t_stop - rec.first_t) * 100)
    after = np.nonzero(loud[first:])[0]
    quiet = t_stop + (0.0 if after.size == 0 else (after[-1] + 1) / 100)
    print(f"speaker quiet {quiet - t_stop:.2f} s after \"Stop.\" began")
    assert quiet - t_stop < 3.0  # generous; the bench measures barge-in
    assert rec.first_t + loud.size / 100 - quiet >= 3.0  # then nothing for 3 s (wait_quiet)
