"""SeededEpochSampler: seeded orders, source-balanced epochs (draws counted per source), sharding over ranks."""

from collections import Counter
from unittest import mock

import pytest

from sonofm.data import sampling
from sonofm.data.sampling import SeededEpochSampler

SOURCES = [0] * 90 + [1] * 9 + [2] * 4  # a large archive, a small one, a tiny one


def draws_per_source(sampler: SeededEpochSampler) -> Counter:
    return Counter(SOURCES[position] for position, _ in sampler)


def test_balanced_epochs_draw_each_source_equally():
    sampler = SeededEpochSampler(len(SOURCES), seed=1, sources=SOURCES)
    for epoch in range(3):
        sampler.set_epoch(epoch)
        counts = draws_per_source(sampler)
        assert sum(counts.values()) == len(SOURCES)  # the epoch keeps its length
        assert max(counts.values()) - min(counts.values()) <= 1, counts
    positions = [position for position, _ in sampler]
    tiny = Counter(position for position in positions if SOURCES[position] == 2)
    assert len(tiny) == 4 and max(tiny.values()) - min(tiny.values()) <= 1  # walked through evenly
    large = [position for position in positions if SOURCES[position] == 0]
    assert len(set(large)) == len(large)  # subsampled without repeats


def test_the_default_stays_uniform_and_unchanged():
    uniform = SeededEpochSampler(len(SOURCES), seed=1)
    counts = draws_per_source(uniform)
    assert counts == Counter(SOURCES)  # every image exactly once
    assert [p for p, _ in uniform] == [p for p, _ in SeededEpochSampler(len(SOURCES), seed=1)]
    assert [p for p, _ in uniform] != [p for p, _ in SeededEpochSampler(len(SOURCES), seed=1, sources=SOURCES)]


def test_balanced_order_depends_on_seed_and_epoch_only():
    first = list(SeededEpochSampler(len(SOURCES), seed=4, sources=SOURCES))
    again = SeededEpochSampler(len(SOURCES), seed=4, sources=SOURCES)
    assert list(again) == first
    again.set_epoch(1)
    assert list(again) != first


def test_two_ranks_share_a_balanced_epoch_without_overlap():
    whole = list(SeededEpochSampler(len(SOURCES), seed=2, sources=SOURCES))
    shares = []
    for rank in (0, 1):
        with mock.patch.object(sampling, "_rank_and_world", return_value=(rank, 2)):
            shares.append(list(SeededEpochSampler(len(SOURCES), seed=2, sources=SOURCES)))
    assert len(shares[0]) == len(shares[1]) == 52
    assert sorted(shares[0] + shares[1][:51]) == sorted(whole)  # rank 1's last key pads the round


def test_source_ids_must_match_the_samples():
    with pytest.raises(ValueError, match="3 source ids for 4 samples"):
        SeededEpochSampler(4, sources=[0, 0, 1])


def test_source_weights_set_each_sources_share():
    sampler = SeededEpochSampler(len(SOURCES), seed=3, sources=SOURCES, source_weights=[1.0, 2.0, 0.0])
    counts = draws_per_source(sampler)
    assert counts[2] == 0 and sum(counts.values()) == len(SOURCES)
    assert (counts[0], counts[1]) in ((35, 68), (34, 69))  # 103 draws split 1:2, the remainder of 1 at random
    with pytest.raises(ValueError, match="need one weight >= 0 per source"):
        SeededEpochSampler(len(SOURCES), sources=SOURCES, source_weights=[1.0, 1.0])
