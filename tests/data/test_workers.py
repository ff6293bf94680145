"""Loader workers when the user does not say: the machine's cores shared among its training processes."""

import pytest

from sonofm.data import workers
from sonofm.data.workers import data_workers


@pytest.mark.parametrize(("cores", "processes", "expected"), [(2, 1, 1), (1, 1, 0), (16, 1, 8), (16, 8, 1),
                                                                (64, 4, 8), (8, 2, 3)])
def test_workers_follow_the_cores_of_each_process(monkeypatch, cores, processes, expected):
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.setattr(workers, "usable_cores", lambda: cores)
    assert data_workers(None, processes) == expected
    assert data_workers(3, processes) == 3  # a given count wins


def test_torchrun_local_world_size_shares_the_cores(monkeypatch):
    monkeypatch.setattr(workers, "usable_cores", lambda: 16)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert data_workers(None) == 3
