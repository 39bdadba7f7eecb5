"""ASR helpers: hallucination filter, speculative reuse, echo guard."""

import numpy as np

from pipeline.asr import SpeculativeAsr, Transcript, is_hallucination, is_loop, normalise
from pipeline.echo.guard import EchoGuard


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


def test_echo_guard_forgets_a_segment_that_never_closed():
    """Issue #13 §3: a `started` that came after its `interrupted` stayed open for good,
    and every later question made of its words was dropped as echo."""
    guard = EchoGuard(keep_s=30.0)
    guard.played(1, 0, "interrupted", "The capital of France is Paris.", 100.2)
    guard.played(1, 0, "started", "The capital of France is Paris.", 100.0)
    assert guard.is_echo("the capital of France", 101.0, 102.0)  # still counts as playing
    assert not guard.is_echo("the capital of France", 140.0, 141.0)  # but not for good


def test_echo_guard_takes_a_lone_word_of_the_answer_for_echo_but_not_an_interruption():
    guard = EchoGuard()
    guard.played(1, 2, "started", "Today every country has its own kind of bread. Stop.", 100.0)
    assert guard.is_echo("Today.", 100.1, 100.8)  # the residue of a segment's first word
    assert not guard.is_echo("Stop!", 100.1, 100.8)  # a user cutting in
    assert not guard.is_echo("Cheese?", 100.1, 100.8)  # not a word being played
    assert not guard.is_echo("", 100.1, 100.8)


def _padded(speech: np.ndarray) -> np.ndarray:
    """Speech as the VAD cuts it: a little silence on both sides."""
    pad = np.zeros(3200, dtype=np.float32)
    return np.concatenate([pad, speech, pad])


def test_short_utterances_use_the_short_encoder_window_and_long_ones_the_full(speak_16k):
    from tests.conftest import _transcriber

    tr = _transcriber()
    assert tr.config.window_s == 10.0
    assert tr.window_for(3.0) == 10.0 and tr.window_for(5.0) == 10.0
    assert tr.window_for(5.4) == 30.0  # more than half of the window: it may end early
    result = tr.transcribe(_padded(speak_16k("What is the largest ocean?")))
    assert result.window_s == 10.0
    assert normalise(result.text) == "what is the largest ocean"


def test_a_repetition_loop_of_a_short_window_falls_back_to_the_full_window(speak_16k):
    """With a 6 s window Whisper loops ("What color is the sky? What color is ..."): the result must not."""
    from pipeline.asr import AsrConfig, Transcriber

    tr = Transcriber(AsrConfig(window_s=6.0))
    audio = _padded(speak_16k("What color is the sky?"))
    looped = tr._decode(audio, 6.0)
    assert is_loop(" ".join(seg.text for seg in looped))  # the loop this guards against
    result = tr.transcribe(audio)
    assert result.window_s == 30.0
    assert normalise(result.text) == "what color is the sky"


def test_decoding_loops_are_told_from_speech():
    assert is_loop("What is the capital of friends? What is the capital of friends? What is the")
    assert is_loop("Yes. Yes. Yes.")
    assert is_loop("Turn it off. Please, turn it off. Turn it off. Turn it off. Turn")
    assert not is_loop("Bye bye.")
    assert not is_loop("What is the capital of France?")
    assert not is_loop("I said no, no, I did not.")
    assert not is_loop("")


def test_a_transcript_a_short_window_ended_early_is_redone_with_the_full_window():
    """A 6.7 s answer of the assistant (recorded from a test run): in a 10 s window Whisper
    stopped after "You ask, please tell me about the weather." and dropped the rest."""
    from pathlib import Path

    from pipeline.audio import read_wav
    from tests.conftest import _transcriber

    tr = _transcriber()
    audio, _ = read_wav(Path(__file__).parent / "data" / "cut_short_by_short_window.wav", target_rate=16000)
    short = tr._decode(audio, 10.0)
    assert tr._stopped_early(short, audio.size / 16000)  # what the guard is for
    result = tr.transcribe(audio)
    assert result.window_s == 30.0
    assert {"weather", "berlin", "tomorrow", "question", "answer"} <= set(normalise(result.text).split())


def test_ending_probabilities_read_the_last_word_and_the_final_mark():
    from pipeline.asr import ending_probabilities

    pieces = {1: " What", 2: " time", 3: " does", 4: " th", 5: "at", 6: "?", 7: "!"}

    def logits(p: float, token: int) -> np.ndarray:
        x = np.full(8, np.log((1 - p) / 7), dtype=np.float32)
        x[token] = np.log(p)
        return x

    tokens = [1, 2, 3, 4, 5, 6]
    steps = [logits(0.9, 1), logits(0.95, 2), logits(0.9, 3), logits(0.7, 4), logits(0.4, 5),
             logits(0.6, 6)]
    word, mark = ending_probabilities(tokens, steps, pieces.__getitem__)
    assert round(word, 3) == 0.4 and round(mark, 3) == 0.6  # the word's least likely piece
    word, mark = ending_probabilities(tokens[:5], steps[:5], pieces.__getitem__)
    assert round(word, 3) == 0.4 and mark == 0.0  # no mark


def test_a_transcript_carries_whisper_s_confidence_in_its_ending(speak_16k):
    from tests.conftest import _transcriber

    result = _transcriber().transcribe(_padded(speak_16k("What time is it?")))
    assert result.text.endswith("?")
    assert 0.5 < result.last_word_p <= 1.0 and 0.5 < result.end_mark_p <= 1.0
