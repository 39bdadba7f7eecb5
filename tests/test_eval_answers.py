"""Tests of the `make eval` helpers (tests/eval_answers.py): splits, order, reports. No model."""

from __future__ import annotations

from collections import Counter

from tests.eval_answers import Item, Result, compare, load_dev_set, report, shuffled


def test_the_dev_set_has_a_dev_split_and_two_held_out_splits():
    items = load_dev_set()
    counts = Counter(item.split for item in items)
    assert counts["dev"] == 66 and counts["held-out"] == 28 and counts["held-out-2"] >= 30
    assert len({item.question for item in items}) == len(items)  # no question asked twice
    # the second held-out set comes last, after everything that was tuned on
    assert [item.split for item in items[-counts["held-out-2"]:]] == ["held-out-2"] * counts["held-out-2"]


def test_shuffled_keeps_each_follow_up_right_after_its_question():
    items = load_dev_set()
    for seed in (1, 2, 3):
        order = shuffled(items, seed)
        assert sorted(i.question for i in order) == sorted(i.question for i in items)
        assert order != items
        for k, item in enumerate(order):
            if item.follow_up:
                parent = items[items.index(item) - 1]
                assert order[k - 1] is parent
    assert shuffled(items, 1) == shuffled(items, 1)  # the same seed, the same order


def test_report_gives_the_llm_share_of_each_split():
    items = [Item("What is seven times eight?", [["56"]], split="held-out"),
             Item("Who wrote Hamlet?", [["shakespeare"]], split="held-out"),
             Item("What is the capital of Egypt?", [["cairo"]], split="held-out-2")]
    res = Result(answers=["56.", "Dickens.", "Cairo."], right=[True, False, True], drifted=[False] * 3,
                 first_token_s=[0.1] * 3, total_s=[0.2] * 3)
    line = report("after", res, items)
    assert "held-out 1/2 (50 %; LLM part 0/1)" in line  # the arithmetic skill's question is apart
    assert "held-out-2 1/1 (100 %; LLM part 1/1)" in line
    assert "dev" not in line.split(";")[0]


def test_compare_lists_only_the_questions_the_variants_disagree_on():
    items = [Item("Who wrote Hamlet?", [["shakespeare"]]), Item("What is frozen water called?", [["ice"]])]
    a = Result(answers=["Shakespeare.", "Ice."], right=[True, True])
    b = Result(answers=["Dickens.", "Ice."], right=[False, True])
    lines = compare({"before": a, "after": b}, items)
    assert lines[0] == "  [dev] 'Who wrote Hamlet?'"
    assert "+ before" in lines[1] and "- after" in lines[2] and len(lines) == 3
