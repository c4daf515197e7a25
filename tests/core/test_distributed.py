"""Process-group lifecycle outside torchrun: a plain process is rank 0 of 1 and leaves by returning.
(Under torchrun: tests/fleet/test_distributed.py.)"""

from __future__ import annotations

from core.distributed import join_process_group, leave_process_group, process_group


def test_a_plain_process_is_rank_0_of_1_and_leaving_returns_its_exit_code(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert join_process_group() == (0, 1)
    assert process_group() == (0, 1)
    assert leave_process_group(3) == 3
