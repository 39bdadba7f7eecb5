"""Skills in the llm stage: answered without the LLM, spoken like any answer."""

from __future__ import annotations

import threading
from datetime import datetime

import pytest

from pipeline import messages as m
from pipeline.llm import Conversation, LlmClient, LlmConfig
from pipeline.skills import Skills, TimerBook
from pipeline.stages.llm import LlmStage
from tests.scripted_server import Script, ScriptedServer
from tests.test_stages import Collected

ONE, TWO, THREE = m.user_turn(1), m.user_turn(2), m.user_turn(3)
NOON = datetime(2026, 3, 5, 22, 42)


@pytest.fixture
def server():
    with ScriptedServer(Script(answer="Paris is the capital.", token_delay_s=0.0)) as srv:
        yield srv


def make_stage(srv: ScriptedServer, emit: Collected, skills: Skills | None = None) -> LlmStage:
    client = LlmClient(LlmConfig(base_url=srv.base_url, model="scripted", retries=0, embedded=False))
    stage = LlmStage(client, Conversation("be brief"), "Sorry.", emit,
                     skills=skills or Skills(clock=lambda: NOON))
    stage.start()
    return stage


def texts(emit: Collected, turn: int) -> list[m.LlmText]:
    return [x for x in emit.items if isinstance(x, m.LlmText) and x.turn_id == turn]


def ended(turn: int):
    return lambda items: any(isinstance(x, m.LlmText) and x.turn_id == turn and x.event == m.END for x in items)


def said(emit: Collected, turn: int) -> str:
    return "".join(x.text for x in texts(emit, turn) if x.event == m.DELTA)


def ask(stage: LlmStage, emit: Collected, turn: int, text: str) -> None:
    """The final transcript of `turn`, and the answer's end."""
    stage.handle(m.Transcript(turn, text))
    assert emit.wait_for(ended(turn))


def heard(stage: LlmStage, turn: int, text: str) -> None:
    """The speaker's report of an answer played to its end."""
    for event, said_ in ((m.STARTED, ""), (m.FINISHED, text), (m.TURN_END, "")):
        stage.handle(m.Played(turn, event, 0, 1.0, text=said_))


def test_the_time_is_told_without_the_llm_and_a_question_still_reaches_it(server):
    emit = Collected()
    stage = make_stage(server, emit)
    stage.handle(m.Transcript(ONE, "What time is it?", times={"t_transcript": 1.0}))
    assert emit.wait_for(ended(ONE))
    answer = texts(emit, ONE)
    assert said(emit, ONE) == "It's 10:42 PM."
    assert [x.event for x in answer] == [m.DELTA, m.END] and answer[-1].reason == m.REASON_STOP
    assert all(x.times["t_transcript"] == 1.0 and "t_first_token" in x.times and "t_skill" in x.times
               for x in answer)
    assert server.script.requests == []
    heard(stage, ONE, "It's 10:42 PM.")
    stage.handle(m.Transcript(TWO, "What is the capital of France?"))  # the positive control
    assert emit.wait_for(ended(TWO))
    assert said(emit, TWO) == "Paris is the capital." and len(server.script.requests) == 1
    assert not any("t_skill" in x.times for x in texts(emit, TWO))  # an LLM answer: not marked
    # the skill's answer is in the history like any other
    assert {"role": "assistant", "content": "It's 10:42 PM."} in server.script.requests[0]["messages"]
    stage.finish()


def test_arithmetic_is_exact(server):
    emit = Collected()
    stage = make_stage(server, emit)
    ask(stage, emit, ONE, "What is 14 times 12?")
    assert "168" in said(emit, ONE) and server.script.requests == []
    stage.finish()


def test_a_tentative_transcript_that_is_a_skill_is_not_sent_to_the_llm(server):
    emit = Collected()
    skills = Skills(clock=lambda: NOON)
    stage = make_stage(server, emit, skills)
    stage.handle(m.Transcript(ONE, "set a timer for 5 minutes", final=False))
    assert emit.items == [m.LlmReady(server.base_url)] and not skills.timers.timers()  # nothing acted on
    stage.handle(m.Transcript(ONE, "Set a timer for 5 minutes.", final=True))
    assert emit.wait_for(ended(ONE))
    assert said(emit, ONE) == "Timer set for 5 minutes." and len(skills.timers.timers()) == 1
    assert server.script.requests == []
    stage.finish()


def test_a_tentative_transcript_that_only_asks_is_answered_at_once(server):
    """Like an LLM answer, a skill that only tells something goes out on the tentative
    transcript (the speaker holds it until the turn is confirmed), so it is never later."""
    emit = Collected()
    stage = make_stage(server, emit)
    stage.handle(m.Transcript(ONE, "How many centimeters are in a meter?", final=False))
    assert emit.wait_for(ended(ONE))
    assert said(emit, ONE) == "There are 100 centimeters in a meter."
    stage.handle(m.Transcript(ONE, "How many centimeters are in a meter?", final=True))
    assert len([x for x in texts(emit, ONE) if x.event == m.END]) == 1  # answered once
    assert server.script.requests == []
    stage.finish()


def test_stop_says_nothing_and_asks_nothing(server):
    emit = Collected()
    stage = make_stage(server, emit)
    stage.handle(m.SpeechStarted(ONE, t_speech_start=0.0))
    ask(stage, emit, ONE, "Stop.")
    assert [(x.event, x.reason, x.text) for x in texts(emit, ONE)] == [(m.END, m.REASON_CANCELLED, "")]
    assert server.script.requests == []
    stage.finish()


def test_say_that_again_repeats_the_answer_as_it_was_heard(server):
    emit = Collected()
    stage = make_stage(server, emit)
    ask(stage, emit, ONE, "What is the capital of France?")
    heard(stage, ONE, "Paris is the capital.")
    ask(stage, emit, TWO, "Say that again.")
    assert said(emit, TWO) == "Paris is the capital." and len(server.script.requests) == 1
    stage.handle(m.Transcript(THREE, "What is 12 divided by 4?"))
    ask(stage, emit, THREE + 1000, "Repeat that.")
    assert said(emit, THREE + 1000) == said(emit, THREE) and "3" in said(emit, THREE)
    stage.finish()


def test_a_timer_rings_by_itself_in_an_assistant_turn_once_the_floor_is_free(server):
    emit = Collected()
    book = TimerBook()
    stage = make_stage(server, emit, Skills(clock=lambda: NOON, timers=book))
    stage.handle(m.SpeechStarted(ONE, t_speech_start=0.0))
    ask(stage, emit, ONE, "Set a timer for 5 minutes.")
    heard(stage, ONE, "Timer set for 5 minutes.")
    stage.handle(m.SpeechStarted(TWO, t_speech_start=1.0))  # the user speaks: the floor is theirs
    held = threading.Event()
    stage.floor.on_wait = held.set
    book.set(1, "tea", now=book.now() - 0.8)  # a 0.2 s timer
    assert held.wait(10)  # due, but waiting for the user's turn to end
    assert [x.turn_id for x in emit.items if isinstance(x, m.LlmText)] == [ONE, ONE]
    ask(stage, emit, TWO, "What is 2 plus 2?")
    heard(stage, TWO, "4.")
    ring = m.assistant_turn(TWO)
    assert emit.wait_for(ended(ring))
    assert TWO < ring < THREE and not m.is_user_turn(ring)
    assert said(emit, ring) == "Your tea timer is done."
    assert server.script.requests == []
    stage.handle(m.Transcript(THREE, "Say that again."))  # the announcement is the last answer
    assert emit.wait_for(ended(THREE))
    assert said(emit, THREE) == "Your tea timer is done."
    stage.finish()
    stage._timers.join(10)
    assert not stage._timers.is_alive()  # finish wakes the timer thread for good


def tool_stage(srv: ScriptedServer, emit: Collected) -> LlmStage:
    config = LlmConfig(base_url=srv.base_url, model="scripted", retries=0, embedded=False, tools=True)
    stage = LlmStage(LlmClient(config), Conversation("be brief"), "Sorry.", emit, skills=Skills(clock=lambda: NOON))
    stage.start()
    return stage


def calls_once(*fragments: str):
    """A server that answers the first request with a `calculate` call whose arguments
    arrive cut across chunks, and the follow-up (which carries the result) in text."""
    head = {"index": 0, "id": "call_1", "type": "function", "function": {"name": "calculate", "arguments": ""}}
    rest = [{"index": 0, "function": {"arguments": f}} for f in fragments]

    def tool_calls(request):
        if any(msg["role"] == "tool" for msg in request["messages"]):
            return None
        return [head, *rest]
    return tool_calls


def ask_with_tools(script: Script) -> Collected:
    """One question not a skill, to a stage that offers the tools; what it sent."""
    emit = Collected()
    with ScriptedServer(script) as srv:
        stage = tool_stage(srv, emit)
        ask(stage, emit, ONE, "Help me with my homework please.")
        stage.finish()
    return emit


def tool_result(messages) -> str:
    return next(msg["content"] for msg in messages if msg["role"] == "tool")


def test_a_tool_call_split_across_chunks_runs_the_skill_and_the_answer_streams():
    script = Script(token_delay_s=0.0, tool_calls_fn=calls_once('{"operation": "mul', 'tiply", "a": 1', '4, "b": 12}'),
                    answer_fn=lambda messages: "So: " + tool_result(messages))
    emit = ask_with_tools(script)
    assert len(script.requests) == 2 and "calculate" in str(script.requests[0]["tools"])
    assert "168" in tool_result(script.requests[1]["messages"])
    assert said(emit, ONE).startswith("So: ") and "168" in said(emit, ONE)
    assert texts(emit, ONE)[-1].reason == m.REASON_STOP


def test_a_tool_call_with_malformed_arguments_gets_a_short_spoken_error():
    script = Script(token_delay_s=0.0, tool_calls_fn=calls_once('{"operation": "multiply", "a": '),
                    answer="")
    emit = ask_with_tools(script)
    assert "Error" in tool_result(script.requests[1]["messages"])  # the model was told
    assert said(emit, ONE) == "Sorry, that request went wrong."  # and the user was not left in silence
    assert texts(emit, ONE)[-1].reason == m.REASON_STOP


def test_without_llm_tools_none_are_offered(server):
    emit = Collected()
    stage = make_stage(server, emit)
    ask(stage, emit, ONE, "Help me with my homework please.")
    stage.finish()
    assert "tools" not in server.script.requests[0]
