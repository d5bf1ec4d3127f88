"""Sampling: balanced weights, seeded epoch orders, weighted draws, one order shared by processes."""

from __future__ import annotations

import numpy as np

from asttag.datasets import Example
from asttag.training import EpochSampler, balanced_weights


def test_balanced_weights_are_the_papers():
    examples = [Example("a.wav", (0,)), Example("b.wav", (0,)), Example("c.wav", (1, 2))]
    expected = [1000 / 2.01, 1000 / 2.01, 1000 / 1.01 + 1000 / 1.01]
    np.testing.assert_allclose(balanced_weights(examples, 3), expected)


def test_epoch_order_depends_on_seed_and_epoch_only():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(2)
    first = list(sampler)
    assert sorted(k.index for k in first) == list(range(10))
    assert [k.position for k in first] == list(range(10)) and {k.epoch for k in first} == {2}
    assert list(sampler) == first
    sampler.set_epoch(3)
    assert [k.index for k in sampler] != [k.index for k in first]


def test_weighted_sampling_draws_with_replacement_by_weight():
    sampler = EpochSampler(4000, seed=0, weights=np.tile([0.0, 1.0, 0.0, 3.0], 1000))
    drawn = np.array([k.index % 4 for k in sampler])
    assert len(drawn) == 4000 and set(drawn) == {1, 3}
    assert 0.7 < (drawn == 3).mean() < 0.8


def test_processes_share_one_order_round_robin():
    whole = [k.index for k in EpochSampler(11, seed=5)]
    shards = [list(EpochSampler(11, seed=5, rank=r, world_size=3)) for r in range(3)]
    assert all(len(s) == 4 for s in shards)
    padded = whole + whole[:1]  # 12 = 3 x 4: the start repeats, as DistributedSampler pads
    for rank, shard in enumerate(shards):
        assert [k.index for k in shard] == padded[rank::3]
        assert [k.position for k in shard] == list(range(rank, 12, 3))
