"""End-of-turn policy and transcript cues (pure: scripted model, silence given in ms)."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from pipeline.settings import SettingsError, load
from pipeline.turn.cues import Cue, transcript_cue
from pipeline.turn.policy import EndOfTurn, PolicyConfig

AUDIO = np.zeros(16000, dtype=np.float32)


@pytest.mark.parametrize("text", [
    "What is the capital of", "What is the capital of?", "Tell me about the", "Um", "uh,",
    "What's the weather like in Paris and", "How far is it to", "What is...", "What is my",
])
def test_unfinished_transcripts(text: str) -> None:
    assert transcript_cue(text) is Cue.INCOMPLETE


@pytest.mark.parametrize("text", [
    "What is the capital of Spain?", "What time is it?", "Where are you from?",
    "Tell me a joke.", "What is this?", "Can you?",
])
def test_finished_transcripts(text: str) -> None:
    assert transcript_cue(text) is Cue.COMPLETE


@pytest.mark.parametrize("text", ["", "  ", "What is the capital of Spain"])
def test_unknown_transcripts(text: str) -> None:
    assert transcript_cue(text) is Cue.UNKNOWN


class Model:
    def __init__(self, p: float) -> None:
        self.p = p
        self.calls = 0

    def __call__(self, audio: np.ndarray) -> float:
        self.calls += 1
        return self.p


def first_end(policy: EndOfTurn, step: int = 32, until: int = 10000,
              transcript_at: int | None = None, text: str = "") -> int | None:
    """Silence (ms) at which the policy ends the turn, asking every `step` ms."""
    for ms in range(0, until, step):
        if transcript_at is not None and ms == transcript_at:
            policy.transcript(text)
        if policy.should_end(ms, lambda: AUDIO):
            return ms
    return None


CFG = PolicyConfig(check_ms=256, end_silence_ms=512, max_pause_ms=1984, disagree_ms=1984)


def test_model_complete_ends_at_check_and_asks_once() -> None:
    model = Model(0.9)
    policy = EndOfTurn(PolicyConfig(256, 512, 1984, use_cues=False), model)
    assert first_end(policy) == 256
    assert model.calls == 1 and policy.reason == "complete"


def test_model_incomplete_waits_for_max_pause() -> None:
    policy = EndOfTurn(PolicyConfig(256, 512, 1984, use_cues=False), Model(0.1))
    assert first_end(policy) == 1984
    assert policy.reason == "max pause"


def test_incomplete_cue_outweighs_a_complete_model() -> None:
    policy = EndOfTurn(CFG, Model(0.95))
    assert first_end(policy, transcript_at=192, text="What is the capital of?") == 1984


def test_complete_model_waits_for_the_transcript_then_ends() -> None:
    policy = EndOfTurn(CFG, Model(0.95))
    assert first_end(policy, transcript_at=320, text="What is the capital of Spain?") == 320


def test_complete_model_without_transcript_ends_at_end_silence() -> None:
    policy = EndOfTurn(CFG, Model(0.95))
    assert first_end(policy) == 512
    assert policy.reason == "unsettled"


def test_a_complete_cue_against_the_model_ends_after_disagree_ms() -> None:
    text = "What is the capital of Spain?"
    config = PolicyConfig(256, 512, 1984, disagree_ms=992)
    policy = EndOfTurn(config, Model(0.1))
    assert first_end(policy, transcript_at=224, text=text) == 992
    assert policy.reason == "disagree"
    assert first_end(EndOfTurn(config, Model(0.1))) == 1984  # no transcript: no disagreement


def test_cues_alone() -> None:
    cues = PolicyConfig(256, 512, 1984, use_model=False)
    assert first_end(EndOfTurn(cues), transcript_at=64, text="Tell me a joke.") == 256
    assert first_end(EndOfTurn(cues), transcript_at=64, text="Tell me about the") == 1984
    assert first_end(EndOfTurn(cues)) == 512


def test_an_unpunctuated_transcript_waits_unsure_ms() -> None:
    cues = PolicyConfig(256, 512, 1984, use_model=False, unsure_ms=1504)
    policy = EndOfTurn(cues)
    assert first_end(policy, transcript_at=96, text="who wrote the book") == 1504
    assert policy.reason == "unsure"
    # no transcript yet says nothing about the words: the end silence as before
    policy = EndOfTurn(cues)
    assert first_end(policy) == 512 and policy.reason == "unsettled"
    # a finished one still ends at the check
    assert first_end(EndOfTurn(cues), transcript_at=96, text="Who wrote the book?") == 256


def test_a_finished_reading_whisper_doubts_is_unsure() -> None:
    cues = PolicyConfig(256, 512, 1984, use_model=False, unsure_ms=1504, min_word_p=0.8,
                        min_mark_p=0.5)
    guessed = EndOfTurn(cues)
    guessed.transcript("Can you tell me about that?", last_word_p=0.41, end_mark_p=0.9)
    assert first_end(guessed) == 1504 and guessed.reason == "unsure"
    unsure_mark = EndOfTurn(cues)
    unsure_mark.transcript("What time is it?", last_word_p=0.99, end_mark_p=0.3)
    assert first_end(unsure_mark) == 1504
    sure = EndOfTurn(cues)
    sure.transcript("What time is it?", last_word_p=0.99, end_mark_p=0.95)
    assert first_end(sure) == 256 and sure.reason == "complete"
    # a name at the end is often less sure, but it is not a guess at a cut-off question
    name = EndOfTurn(cues)
    name.transcript("What is the capital of Spain?", last_word_p=0.71, end_mark_p=0.9)
    assert first_end(name) == 256
    # an unfinished reading stays unfinished, however sure Whisper is of the word
    of = EndOfTurn(cues)
    of.transcript("What is the capital of", last_word_p=0.99, end_mark_p=0.0)
    assert first_end(of) == 1984


def test_unsure_ms_is_clamped_by_the_settings() -> None:
    s = load({"TURN_UNSURE_MS": "300", "VAD_END_SILENCE_MS": "500"})
    assert PolicyConfig.from_settings(s).unsure_ms == 500
    s = load({"TURN_UNSURE_MS": "5000", "TURN_MAX_PAUSE_MS": "2000"})
    assert PolicyConfig.from_settings(s).unsure_ms == 2000


def test_voice_forgets_the_pause() -> None:
    model = Model(0.1)
    policy = EndOfTurn(CFG, model)
    assert not policy.should_end(300, lambda: AUDIO)
    policy.voice()
    model.p = 0.9
    policy.transcript("What is the capital of Spain?")
    assert policy.should_end(256, lambda: AUDIO)
    assert model.calls == 2


def test_no_signal_is_the_fixed_silence() -> None:
    policy = EndOfTurn(PolicyConfig(256, 512, 1984, use_model=False, use_cues=False))
    assert first_end(policy, transcript_at=0, text="Tell me a joke.") == 512


def test_config_order_is_checked() -> None:
    with pytest.raises(ValueError):
        PolicyConfig(check_ms=600, end_silence_ms=500)
    with pytest.raises(ValueError):
        EndOfTurn(PolicyConfig(), None)
    with pytest.raises(SettingsError, match="TURN_CHECK_MS"):
        load({"TURN_CHECK_MS": "800", "VAD_END_SILENCE_MS": "500"})


@pytest.mark.parametrize("text", [
    "Yeah.", "yes", "Mm-hmm.", "Uh-huh", "Okay.", "Right.", "I see.", "Sure.", "Got it.",
    "yeah yeah", "Okay, okay.", "Yeah, okay.", "Oh, I see.",
])
def test_backchannels(text: str) -> None:
    from pipeline.turn.backchannel import is_backchannel

    assert is_backchannel(text)


@pytest.mark.parametrize("text", [
    "", "Stop.", "Wait.", "No.", "No, I meant Paris.", "Yeah, but why?", "Okay stop.",
    "What is the capital of Spain?", "yeah yeah yeah yeah", "Right, and the population?",
])
def test_not_backchannels(text: str) -> None:
    from pipeline.turn.backchannel import is_backchannel

    assert not is_backchannel(text)


@pytest.mark.parametrize(("text", "name"), [
    ("What is the capital of Spain?", True), ("Who painted the Mona Lisa?", True),
    ("What time does that?", False), ("Spain?", False), ("Can I?", False), ("", False),
])
def test_names_at_the_end(text: str, name: bool) -> None:
    from pipeline.turn.cues import ends_on_a_name

    assert ends_on_a_name(text) is name


# graded doubt (issue #13): the kind of the last word decides how much of Whisper's doubt counts

GRADED = PolicyConfig(256, 512, 1984, use_model=False, unsure_ms=1984, min_word_p=0.8,
                      guess_word_p=0.9, content_word_p=0.5, doubt_ms=992)


def ends_at(text: str, word_p: float, config: PolicyConfig = GRADED) -> int | None:
    policy = EndOfTurn(config)
    policy.transcript(text, last_word_p=word_p, end_mark_p=0.9)
    return first_end(policy)


def test_a_pronoun_ending_needs_more_confidence_than_another_word() -> None:
    # "Um, what is the" heard as "What is that?" with P("that") 0.86: a guess, it waits
    assert ends_at("What is that?", 0.86) == 1984
    assert ends_at("What is the weather like today?", 0.86) == 256
    # a whole question ending on a pronoun Whisper is sure of ends at once
    assert ends_at("What time is it?", 0.94) == 256


def test_a_mildly_doubted_content_word_waits_less_than_a_doubted_function_word() -> None:
    # "How far away is the moon?" with P("moon") 0.6: a misheard real word more often than a
    # guess, it waits doubt_ms; a preposition or a pronoun as unsure waits the full unsure_ms
    assert ends_at("How far away is the moon?", 0.6) == 992
    assert ends_at("Where are you from?", 0.6) == 1984
    assert ends_at("Can you tell me about that?", 0.6) == 1984
    # a content word Whisper hardly believes is as unsure as any other
    assert ends_at("How many legs are made?", 0.35) == 1984
    # above min_word_p nothing is doubted
    assert ends_at("How far away is the moon?", 0.85) == 256


def test_the_graded_doubt_can_be_turned_off() -> None:
    before = replace(GRADED, guess_word_p=0.0, content_word_p=1.0)
    assert ends_at("What is that?", 0.86, before) == 256
    assert ends_at("How far away is the moon?", 0.6, before) == 1984


def test_the_graded_doubt_settings_are_read_and_clamped() -> None:
    s = load({"TURN_GUESS_WORD_P": "0.95", "TURN_CONTENT_WORD_P": "0.4", "TURN_DOUBT_MS": "300",
              "VAD_END_SILENCE_MS": "500"})
    config = PolicyConfig.from_settings(s)
    assert (config.guess_word_p, config.content_word_p, config.doubt_ms) == (0.95, 0.4, 500)
    s = load({"TURN_DOUBT_MS": "5000", "TURN_MAX_PAUSE_MS": "2000"})
    assert PolicyConfig.from_settings(s).doubt_ms == 2000


@pytest.mark.parametrize("text", ["Why do cats?", "How many likes does this?",
                                  "What time does the dog?", "Does it?",
                                  "Tell me a joke. Why don't you?"])
def test_a_do_question_that_stops_after_its_subject_is_unfinished(text: str) -> None:
    assert transcript_cue(text) is Cue.INCOMPLETE
    assert transcript_cue(text, do_questions=False) is not Cue.INCOMPLETE
    assert ends_at(text, 0.99) == 1984


@pytest.mark.parametrize("text", ["Why do cats purr?", "What does this mean?",
                                  "How many legs does a spider have?", "What did you do?",
                                  "Yes, I do.", "How long does it take?"])
def test_a_do_question_with_its_verb_reads_finished(text: str) -> None:
    assert transcript_cue(text) is Cue.COMPLETE


def test_the_do_question_cue_is_a_setting() -> None:
    assert PolicyConfig.from_settings(load({})).do_questions is True
    off = PolicyConfig.from_settings(load({"TURN_DO_QUESTIONS": "false"}))
    assert off.do_questions is False
    assert ends_at("Why do cats?", 0.99, replace(GRADED, do_questions=False)) == 256


def test_a_transcript_on_its_way_is_waited_for_past_the_end_silence() -> None:
    """ASR slower than the end silence (the cores are busy): the half question's transcript
    "What is the capital of" comes at 800 ms; the pause must not end as unsettled at 512."""
    cues = PolicyConfig(256, 512, 1984, use_model=False, unsure_ms=1504)
    policy = EndOfTurn(cues)
    policy.speculated()
    assert first_end(policy, transcript_at=800, text="What is the capital of") == 1984
    policy = EndOfTurn(cues)
    policy.speculated()
    assert first_end(policy, transcript_at=800, text="What is the capital of Spain?") == 800
    # a transcript that never comes is waited for up to the unsure wait
    policy = EndOfTurn(cues)
    policy.speculated()
    assert first_end(policy) == 1504 and policy.reason == "unsettled"
    # the user speaks again: the next pause expects its own transcript
    policy.voice()
    assert first_end(policy) == 512


def test_awaiting_the_transcript_can_be_turned_off() -> None:
    policy = EndOfTurn(PolicyConfig(256, 512, 1984, use_model=False, await_transcript=False))
    policy.speculated()
    assert first_end(policy) == 512


def ends_with_text_p(text: str, text_end_p: float, config: PolicyConfig = GRADED,
                     word_p: float = 0.99) -> int | None:
    policy = EndOfTurn(config)
    policy.transcript(text, last_word_p=word_p, end_mark_p=0.9, text_end_p=text_end_p)
    return first_end(policy)


TEXT = replace(GRADED, text_end_p=0.05, text_complete_p=1.0)


def test_a_finished_looking_transcript_the_language_model_reads_unfinished_waits() -> None:
    # "Who discovered ... penicillin?" heard as "Who discovered?" (sentence end P 0.004)
    assert ends_with_text_p("Who discovered?", 0.004, TEXT) == 1984
    assert ends_with_text_p("Could you remind me to call?", 0.029, TEXT) == 1984
    # a whole question the model reads finished ends at the first check
    assert ends_with_text_p("Who discovered penicillin?", 0.4, TEXT) == 256
    # without the cue (TURN_TEXT_END_P=0) the "?" ends the turn at once
    assert ends_with_text_p("Who discovered?", 0.004, replace(TEXT, text_end_p=0.0)) == 256


def test_the_language_model_does_not_undo_the_other_cues() -> None:
    # "... of" stays unfinished, a doubted guess still waits, whatever the model says
    assert ends_with_text_p("What is the capital of", 0.9, TEXT) == 1984
    assert ends_with_text_p("What is that?", 0.9, TEXT, word_p=0.86) == 1984
    # a name ending is never doubted by Whisper's probability, but is by the model's
    assert ends_with_text_p("Translate good morning into Intel!", 0.9, TEXT) == 256


def test_an_unmarked_transcript_the_language_model_reads_finished_can_end_the_turn() -> None:
    sure = replace(TEXT, text_complete_p=0.2)
    # "who painted the Mona Lisa" (no mark, P(end) 0.33): finished
    assert ends_with_text_p("who painted the Mona Lisa", 0.33, sure) == 256
    assert ends_with_text_p("who painted the Mona Lisa", 0.33, TEXT) == 1984  # off: unsure
    # not when the last word is Whisper's usual guess ("Set a timer for it", 0.33),
    # below the threshold, or a content word Whisper doubts
    assert ends_with_text_p("Set a timer for it", 0.33, sure) == 1984
    assert ends_with_text_p("who wrote the book", 0.15, sure) == 1984
    assert ends_with_text_p("", 1.0, sure) == 1984  # no words: nothing reads finished
    assert ends_with_text_p("who wrote pride and prejudice", 0.33, sure, word_p=0.5) == 1984
    assert ends_with_text_p("who wrote pride and prejudice", 0.33, sure) == 256
    # a name is not doubted for Whisper's probability (it writes names less surely)
    assert ends_with_text_p("who painted the Mona Lisa", 0.33, sure, word_p=0.5) == 256


def test_a_question_ending_on_a_preposition_reads_finished_when_the_model_says_so() -> None:
    sure = replace(TEXT, text_complete_p=0.2)
    # "What are clouds made of?": "of" reads unfinished, the model reads it finished (0.72)
    assert ends_with_text_p("What are clouds made of?", 0.72, sure) == 256
    assert ends_with_text_p("What are clouds made of?", 0.72, TEXT) == 1984  # off
    # its halves score ~0.001: still unfinished
    assert ends_with_text_p("What is the capital of?", 0.0006, sure) == 1984
    # without Whisper's "?", or on an article or conjunction, the words decide
    assert ends_with_text_p("What are clouds made of", 0.72, sure) == 1984
    assert ends_with_text_p("Tell me about the?", 0.72, sure) == 1984
    assert ends_with_text_p("What is the difference between a frog and?", 0.72, sure) == 1984
    # and Whisper's doubt of the preposition still counts
    assert ends_with_text_p("Where are you from?", 0.76, sure, word_p=0.3) == 1984


def test_the_language_model_cue_settings() -> None:
    config = PolicyConfig.from_settings(load({}))
    assert (config.text_end_p, config.text_complete_p) == (0.05, 0.2)
    off = PolicyConfig.from_settings(load({"TURN_TEXT_MODEL": "false"}))
    assert (off.text_end_p, off.text_complete_p) == (0.0, 1.0)
    assert PolicyConfig.from_settings(load({"TURN_TEXT_END_P": "0.1"})).text_end_p == 0.1
    with pytest.raises(SettingsError, match="TURN_TEXT_END_P"):
        load({"TURN_TEXT_END_P": "2"})
