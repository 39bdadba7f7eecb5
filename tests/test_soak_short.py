"""A short soak (tests/soak.py) in `make test`: ten turns in a row, all answered, no drift
worth the name, no node process growing by more than 10 % after warm-up."""

from __future__ import annotations

import pytest

from tests.soak import run_soak

pytestmark = pytest.mark.e2e


def test_ten_turns_in_a_row_are_all_answered_without_memory_growth(tmp_path):
    result = run_soak(turns=10, workdir=tmp_path)
    print("\n" + result.report())
    assert result.returncode == 0, result.log_tail
    assert result.unanswered == [], result.report() + "\n" + result.log_tail
    assert result.ok, result.report()
    # drift: generous (a shared 2-core machine); the 200-turn soak measures it properly
    assert result.latency["last"]["median"] < result.latency["first"]["median"] + 3.0, result.report()
