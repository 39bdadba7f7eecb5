"""Answer length: sentence ends found in streamed text, the cut after the allowed sentences,
and the client closing the stream there (the server stops generating)."""

from __future__ import annotations

import threading

import pytest

from pipeline.answer_length import SentenceLimit, asks_for_more, sentence_ends
from pipeline.llm import LlmClient, LlmConfig
from tests.scripted_server import Script, ScriptedServer


@pytest.mark.parametrize(
    ("text", "first"),
    [
        ("The capital of France is Paris. It is big.", "The capital of France is Paris."),
        ("Pi is about 3.14. It never ends.", "Pi is about 3.14."),
        ("Dr. Watson helped Sherlock Holmes. He was", "Dr. Watson helped Sherlock Holmes."),
        ("J. K. Rowling wrote it. She", "J. K. Rowling wrote it."),
        ("Eat fruit, e.g. apples and pears. They", "Eat fruit, e.g. apples and pears."),
        ("Here is how:\n1. Boil water.\n2. Add the egg.", "Here is how:\n1. Boil water."),
        ('He said "yes." Then he left.', 'He said "yes."'),
        ("Really?! Yes.", "Really?!"),
        ("It is 5 p.m. Time for tea.", None),  # "p.m." is no end: errs on the side of not cutting
    ],
)
def test_first_sentence_end(text: str, first: str | None) -> None:
    ends = sentence_ends(text)
    assert (text[: ends[0]] if ends else None) == first


def test_an_end_is_only_known_when_the_next_sentence_starts() -> None:
    assert sentence_ends("It is Paris.") == []
    assert sentence_ends("It is Paris. ") == []
    assert sentence_ends("It is Paris. and more") == []  # lower case: not a new sentence


def test_limit_passes_deltas_through_until_the_cut() -> None:
    limit = SentenceLimit(1)
    out = [limit.push(d) for d in ["The", " capital", " is", " Paris", ".", " It", " is"]]
    assert "".join(out) == "The capital is Paris."
    assert limit.done
    two = SentenceLimit(2)
    said = "".join(two.push(d) for d in ["One. ", "Two. ", "Three. ", "Four."])
    assert said.strip() == "One. Two." and two.done
    unlimited = SentenceLimit(0)
    assert "".join(unlimited.push(d) for d in ["One. ", "Two."]) == "One. Two." and not unlimited.done


@pytest.mark.parametrize(
    ("question", "more"),
    [
        ("Explain how vaccines work.", True),
        ("Tell me more about it.", True),
        ("How do I bake bread, step by step?", True),
        ("Why is the sky blue?", True),
        ("What is the capital of France?", False),
        ("How many legs does a spider have?", False),
    ],
)
def test_asks_for_more(question: str, more: bool) -> None:
    assert asks_for_more(question) is more


def test_the_client_stops_reading_after_the_first_sentence() -> None:
    script = Script(answer="The capital of France is Paris. It is a lovely city with many old bridges.")
    with ScriptedServer(script) as srv:
        config = dict(base_url=srv.base_url, model="scripted", retries=0, hold_after_s=0.0)
        cut = "".join(LlmClient(LlmConfig(**config, max_sentences=1)).stream(
            [{"role": "user", "content": "hi"}], threading.Event()))
        whole = "".join(LlmClient(LlmConfig(**config, max_sentences=0)).stream(
            [{"role": "user", "content": "hi"}], threading.Event()))
        sent_for_both = script.tokens_sent
    assert cut == "The capital of France is Paris."
    assert whole == script.answer
    # the cut stream was closed early: fewer tokens went out than two whole answers
    assert sent_for_both < 2 * len(script.answer.split())


@pytest.mark.parametrize(
    ("question", "heard"),
    [
        ("What is the capital of France?", "The capital of France is Paris."),
        ("Explain what Paris is like.", "The capital of France is Paris. It is a lovely city. It has old bridges."),
    ],
)
def test_the_responder_cuts_unless_the_question_asks_for_more(question: str, heard: str) -> None:
    from pipeline import messages as m
    from pipeline.llm import Conversation
    from pipeline.responder import Responder

    got: list[m.LlmText] = []
    ended = threading.Event()

    def sink(msg: m.LlmText) -> None:
        got.append(msg)
        if msg.event == m.END:
            ended.set()

    script = Script(answer="The capital of France is Paris. It is a lovely city. It has old bridges.")
    with ScriptedServer(script) as srv:
        client = LlmClient(LlmConfig(base_url=srv.base_url, model="scripted", retries=0, hold_after_s=0.0,
                                     max_sentences=1))
        responder = Responder(client, Conversation("be brief"), "Sorry.", sink)
        responder.on_transcript(m.Transcript(1, question))
        assert ended.wait(10)
    assert "".join(x.text for x in got if x.event == m.DELTA) == heard
    assert got[-1].reason == m.REASON_STOP
