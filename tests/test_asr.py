"""ASR helpers: hallucination filter, speculative reuse, echo guard."""

import numpy as np

from pipeline.asr import EchoGuard, SpeculativeAsr, Transcript, is_hallucination


def test_known_hallucinations_are_recognised():
    assert is_hallucination("Thank you for watching!")
    assert is_hallucination(" you ")
    assert is_hallucination("...")
    assert not is_hallucination("What is the capital of France?")


def test_speculative_asr_reuses_the_tentative_transcript():
    calls = []

    def fake(audio):
        calls.append(audio.size)
        return Transcript(text=f"heard {audio.size}", audio_s=1.0, elapsed_s=0.1)

    asr = SpeculativeAsr(fake)
    a = np.zeros(100, dtype=np.float32)
    assert asr.utterance(1, a, final=False, same_as_tentative=False).text == "heard 100"
    assert asr.utterance(1, a, final=True, same_as_tentative=True).text == "heard 100"
    assert calls == [100]  # transcribed once
    b = np.zeros(200, dtype=np.float32)
    asr.utterance(2, a, final=False, same_as_tentative=False)
    assert asr.utterance(2, b, final=True, same_as_tentative=False).text == "heard 200"
    assert calls == [100, 100, 200]


def test_echo_guard_drops_the_assistants_own_words_only_while_they_play():
    guard = EchoGuard()
    guard.played(1, 0, "started", "Bread is one of the oldest foods.", 100.0)
    guard.played(1, 0, "finished", "Bread is one of the oldest foods.", 103.0)
    assert guard.is_echo("one of the oldest foods", 101.0, 102.5)
    assert not guard.is_echo("what time is it", 101.0, 102.5)
    # the same words said by the user after the assistant stopped: not an echo
    assert not guard.is_echo("one of the oldest foods", 110.0, 111.0)
    guard.played(2, 0, "started", "Still talking here.", 120.0)  # playing now
    assert guard.is_echo("still talking here", 120.5, 121.0)
