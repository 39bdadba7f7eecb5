"""The sentence-end cue: the bundled SmolLM2 says whether a transcript reads finished
(pipeline/turn/text_end.py), and the asr stage sends its score with tentative transcripts."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline import messages as m
from pipeline.turn.text_end import load, unpunctuated
from tests.test_stages import ONE, _heard


@pytest.fixture(scope="module")
def sentence_end():
    scorer = load("")
    scorer.warm_up()
    return scorer


@pytest.mark.parametrize(("text", "bare"), [
    ("Who discovered?", "Who discovered"), ("Tell me a joke.", "Tell me a joke"),
    ("Where is the nearest...", "Where is the nearest"), ("  Hello!? ", "Hello"), ("", ""),
])
def test_final_marks_are_taken_off(text: str, bare: str) -> None:
    assert unpunctuated(text) == bare


# Half questions Whisper wrote as if finished, and whole questions of the same shape
# (none of them from the bench's sentences, whose scores chose the threshold).
HALVES = ["Who invented?", "Could you remind me to water?", "Where is the closest?",
          "Can you describe how?", "What is the boiling point of?", "How do I get to?"]
WHOLES = ["Who invented the telephone?", "Could you remind me to water the plants?",
          "Where is the closest pharmacy?", "Can you describe how bees make honey?",
          "What is the boiling point of water?", "How do I get to the airport?"]


def test_half_questions_read_unfinished_and_whole_ones_far_less_so(sentence_end) -> None:
    halves = [sentence_end(t) for t in HALVES]
    wholes = [sentence_end(t) for t in WHOLES]
    assert max(halves) < 0.02, halves  # under TURN_TEXT_END_P: they wait
    # each whole question reads ten times more finished than its half, though some can
    # still fall under the threshold ("... pharmacy" 0.03): docs/echo-and-turn-taking.md
    assert all(w > 10 * h for h, w in zip(halves, wholes, strict=True)), (halves, wholes)
    assert sum(w >= 0.05 for w in wholes) >= len(wholes) - 1, wholes


def test_questions_ending_on_a_preposition_are_told_from_their_halves(sentence_end) -> None:
    # "... of?" reads unfinished to the words; the model tells whole ones from halves
    wholes = [sentence_end(t) for t in ["What is this made of?", "Who is the present for?",
                                        "Where did you come from?", "What are you looking for?"]]
    halves = [sentence_end(t) for t in ["What is the population of?", "Tell me a story about?",
                                        "How far is it to?", "Who wrote the book about?"]]
    assert max(halves) < 0.02, halves  # never read finished (TURN_TEXT_COMPLETE_P 0.2)
    # most whole ones are; "Who is the present for?" scores 0.006 and waits as before
    assert sum(w >= 0.2 for w in wholes) >= 3, wholes


def test_a_text_without_words_is_not_doubted(sentence_end) -> None:
    assert sentence_end("") == 1.0 and sentence_end("?!") == 1.0


def test_the_asr_stage_scores_tentative_transcripts_only_when_the_words_do_not_say(sentence_end):
    from pipeline.asr import SpeculativeAsr
    from pipeline.stages.asr import AsrStage

    said = iter(["Who invented?", "What is the capital of", "What is this made of?",
                 "Who invented the telephone?"])
    scored: list[str] = []

    def scorer(text: str) -> float:
        scored.append(text)
        return sentence_end(text)

    stage = AsrStage(SpeculativeAsr(lambda audio: _heard(next(said))), sentence_end=scorer)
    audio = np.zeros(16000, np.float32)

    def utt(turn: int, final: bool) -> m.Utterance:
        return m.Utterance(turn, audio, 1.0, 2.0, 2.1, final, False, m.ASR_RATE)

    sent = stage.handle(utt(ONE, final=False))
    transcript = next(sent)  # sent before the scorer runs: the LLM's speculation starts
    assert isinstance(transcript, m.Transcript) and scored == []
    [score] = list(sent)
    assert isinstance(score, m.TextEnd) and scored == ["Who invented?"]
    assert (score.turn_id, score.text) == (ONE, "Who invented?") and score.p < 0.05
    of = list(stage.handle(utt(ONE + 1000, final=False)))  # "... of" is unfinished anyway
    assert [type(x) for x in of] == [m.Transcript, m.TextEnd] and of[1].p == -1.0
    stranded = list(stage.handle(utt(ONE + 2000, final=False)))  # "... of?": the model tells
    assert [type(x) for x in stranded] == [m.Transcript, m.TextEnd] and stranded[1].p > 0.2
    whole = list(stage.handle(utt(ONE + 3000, final=True)))  # a final one ends the turn
    assert [type(x) for x in whole] == [m.Transcript]
    assert scored == ["Who invented?", "What is this made of?"]
