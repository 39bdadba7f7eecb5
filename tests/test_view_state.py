"""The live view's event -> state logic (pipeline/view/state.py)."""

from __future__ import annotations

from pipeline.view.state import (
    Endpointed,
    Fault,
    LlmDelta,
    LlmEnd,
    MicLevel,
    Played,
    SpeechStarted,
    Transcript,
    ViewLimits,
    ViewState,
    spoken_offset,
)

T0 = 1000.0
TIMES = {"t_speech_end": T0 + 1.0, "t_utterance": T0 + 1.5, "t_transcript": T0 + 1.7,
         "t_llm_request": T0 + 1.71, "t_first_token": T0 + 1.9, "t_first_segment": T0 + 2.0,
         "t_first_audio": T0 + 2.2}


def states(updates: list[dict]) -> list[str]:
    return [u["state"] for u in updates if u["type"] == "state"]


def last_turn(updates: list[dict]) -> dict:
    return [u["turn"] for u in updates if u["type"] == "turn"][-1]


def question(v: ViewState, turn: int, text: str, t: float = T0) -> list[dict]:
    """A user turn up to its final transcript; returns the updates."""
    out = v.apply(SpeechStarted(turn, t))
    out += v.apply(Endpointed(turn, True, {"t_speech_end": t + 1.0, "t_utterance": t + 1.5}))
    out += v.apply(Transcript(turn, text, True, {"t_speech_end": t + 1.0, "t_transcript": t + 1.7}))
    return out


def answer(v: ViewState, turn: int, parts: list[str], segments: list[str], t: float = T0) -> list[dict]:
    out = []
    for i, part in enumerate(parts):
        out += v.apply(LlmDelta(turn, part, i, TIMES))
    out += v.apply(LlmEnd(turn, "stop", "", TIMES))
    played = {**TIMES, "t_first_played": t + 2.4}
    for i, seg in enumerate(segments):
        out += v.apply(Played(turn, "started", i, seg, t + 2.4 + i, played))
        out += v.apply(Played(turn, "finished", i, seg, t + 3.3 + i, played))
    out += v.apply(Played(turn, "turn_end", len(segments), "", t + 9, played))
    return out


def test_a_turn_goes_through_every_state_in_order():
    v = ViewState()
    out = question(v, 1, "What time is it?")
    out += answer(v, 1, ["It is ", "noon."], ["It is noon."])
    assert states(out) == ["hearing", "thinking", "speaking", "listening"]
    assert v.state == "listening"
    assert last_turn(out)["status"] == "done"


def test_tentative_transcript_is_replaced_by_the_final_one_and_not_after():
    v = ViewState()
    v.apply(SpeechStarted(1, T0))
    t = last_turn(v.apply(Transcript(1, "what tie", False)))
    assert (t["transcript"], t["transcript_final"]) == ("what tie", False)
    assert v.state == "hearing"  # a tentative transcript comes before the endpoint
    t = last_turn(v.apply(Transcript(1, "what time is it", True)))
    assert (t["transcript"], t["transcript_final"]) == ("what time is it", True)
    t = last_turn(v.apply(Transcript(1, "late tentative", False)))
    assert t["transcript"] == "what time is it"


def test_a_final_transcript_ends_hearing_when_the_endpoint_message_was_dropped():
    v = ViewState()
    v.apply(SpeechStarted(1, T0))
    assert states(v.apply(Transcript(1, "hello", True))) == ["thinking"]


def test_answer_streams_in_delta_order_and_duplicates_are_ignored():
    v = ViewState()
    question(v, 1, "Hi")
    assert last_turn(v.apply(LlmDelta(1, "Hello", 0)))["answer"] == "Hello"
    v.apply(LlmDelta(1, " you.", 2))
    v.apply(LlmDelta(1, " there", 1))
    t = last_turn(v.apply(LlmDelta(1, "XX", 1)))
    assert t["answer"] == "Hello there you."
    assert v.state == "thinking"


def test_spoken_part_is_marked_apart_from_what_is_still_to_come():
    v = ViewState()
    question(v, 1, "Tell me")
    v.apply(LlmDelta(1, "**First** sentence here. Second one follows. Third", 0))
    t = last_turn(v.apply(Played(1, "started", 0, "First sentence here.", T0 + 3)))
    a = t["answer"]
    assert (t["spoken_to"], a[: t["speaking_to"]]) == (0, "**First** sentence here.")
    t = last_turn(v.apply(Played(1, "finished", 0, "First sentence here.", T0 + 4)))
    assert a[: t["spoken_to"]] == "**First** sentence here."
    assert t["speaking_to"] == t["spoken_to"]
    t = last_turn(v.apply(Played(1, "started", 1, "Second one follows.", T0 + 4)))
    assert a[t["spoken_to"]: t["speaking_to"]] == " Second one follows."
    assert a[t["speaking_to"]:] == " Third"


def test_spoken_offset_aligns_words_not_characters():
    text = "Sure - here's *the* [answer](http://x): 42 apples."
    assert text[: spoken_offset(text, ["Sure - here's the answer"])] == "Sure - here's *the* [answer](http://x):"
    assert spoken_offset(text, []) == 0
    said = "Sure here's the answer forty two apples."
    assert spoken_offset(text, [said]) == len(text)  # "42" was said as words
    assert spoken_offset("", ["words"]) == 0


def test_latency_is_end_of_speech_to_first_sound_with_every_stage():
    v = ViewState()
    question(v, 1, "Hi")
    t = last_turn(answer(v, 1, ["Hello."], ["Hello."]))
    lat = t["latency"]
    assert abs(lat["total_s"] - 1.4) < 1e-6
    names = [s["name"] for s in lat["stages"]]
    assert names == ["endpoint", "asr", "llm_request", "first_token", "first_segment",
                     "tts_first", "to_speaker"]
    assert abs(sum(s["s"] for s in lat["stages"]) - lat["total_s"]) < 1e-3
    assert dict((s["name"], s["s"]) for s in lat["stages"])["asr"] == 0.2


def test_no_latency_before_the_first_sound():
    v = ViewState()
    out = question(v, 1, "Hi") + v.apply(LlmDelta(1, "Hel", 0, TIMES))
    assert last_turn(out)["latency"] is None


def test_barge_in_shows_interrupted_and_marks_the_cut_turn():
    v = ViewState()
    question(v, 1, "Tell me a story")
    v.apply(LlmDelta(1, "Once upon a time there was a dragon.", 0))
    v.apply(Played(1, "started", 0, "Once upon a time there was a dragon.", T0 + 3))
    assert states(v.apply(SpeechStarted(2, T0 + 4))) == ["interrupted"]
    t = last_turn(v.apply(Played(1, "interrupted", 0, "Once upon a time", T0 + 4.1)))
    assert t["status"] == "interrupted"
    assert v.state == "interrupted"  # the new turn is being heard
    assert states(v.apply(Endpointed(2, True))) == ["thinking"]


def test_llm_error_shows_error_then_the_apology_plays():
    v = ViewState()
    question(v, 1, "Hi")
    v.apply(LlmDelta(1, "Sorry, I can't answer right now.", 0))
    out = v.apply(LlmEnd(1, "error", "timeout", {"t_llm_error": T0 + 20}))
    assert states(out) == ["error"]
    faults = [u["fault"] for u in out if u["type"] == "fault"]
    assert faults and "timeout" in faults[0]["message"] and not faults[0]["active"]
    assert states(v.apply(Played(1, "started", 0, "Sorry, I can't answer right now.", T0 + 21))) == ["speaking"]
    t = last_turn(v.apply(Played(1, "turn_end", 1, "", T0 + 23)))
    assert (t["status"], t["error"], v.state) == ("error", "timeout", "listening")


def test_an_active_fault_shows_error_while_idle_and_clears():
    v = ViewState()
    assert states(v.apply(Fault("microphone", "no audio for 3 s", T0))) == ["error"]
    assert states(v.apply(SpeechStarted(1, T0 + 1))) == ["hearing"]
    v.apply(Transcript(1, "hi", True))
    answer(v, 1, ["Hello."], ["Hello."])
    assert v.state == "error"  # back to idle, the fault is still there
    assert states(v.apply(Fault("microphone", "audio is back", T0 + 20, active=False))) == ["listening"]
    assert [f["active"] for f in v.snapshot()["faults"]] == [True, False]


def test_a_turn_that_came_to_nothing_is_dropped():
    v = ViewState()
    v.apply(SpeechStarted(1, T0))  # a cough: never endpointed
    assert v.tick(T0 + 5) == []
    out = v.tick(T0 + 17)
    assert {"type": "turn_removed", "turn_id": 1} in out and states(out) == ["listening"]
    v.apply(SpeechStarted(2, T0 + 20))
    out = v.apply(SpeechStarted(3, T0 + 21))  # turn 2 ended silently, turn 3 starts
    assert {"type": "turn_removed", "turn_id": 2} in out
    assert list(v.turns) == [3]


def test_snapshot_after_reload_has_the_whole_conversation():
    v = ViewState()
    question(v, 1, "First question")
    answer(v, 1, ["First answer."], ["First answer."])
    question(v, 2, "Second question", T0 + 30)
    v.apply(LlmDelta(2, "Second ans", 0))
    v.apply(MicLevel(0.25, T0 + 32))
    snap = v.snapshot()
    assert snap["type"] == "snapshot" and snap["state"] == "thinking" and snap["level"] == 0.25
    assert [(t["transcript"], t["answer"]) for t in snap["turns"]] == [
        ("First question", "First answer."), ("Second question", "Second ans")]
    assert snap["turns"][0]["latency"]["total_s"] > 0


def test_history_is_bounded_and_late_messages_of_forgotten_turns_are_ignored():
    v = ViewState(ViewLimits(max_turns=3))
    removed = []
    for turn in range(1, 7):
        out = question(v, turn, f"question {turn}", T0 + 10 * turn)
        removed += [u["turn_id"] for u in out if u["type"] == "turn_removed"]
    assert [t["transcript"] for t in v.snapshot()["turns"]] == ["question 4", "question 5", "question 6"]
    assert removed == [1, 2, 3]
    assert v.apply(LlmDelta(2, "late", 0)) == []
    assert len(v.turns) == 3


def test_old_turn_messages_do_not_move_the_badge():
    v = ViewState()
    question(v, 1, "one")
    v.apply(SpeechStarted(2, T0 + 5))
    assert states(v.apply(Played(1, "started", 0, "x", T0 + 5.1))) == []
    assert states(v.apply(Played(1, "turn_end", 1, "", T0 + 5.2))) == []
    assert v.state == "interrupted"
