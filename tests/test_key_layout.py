"""Partition hash tags: layout 2 spreads partitions evenly over the cluster's slots, and a
namespace made before layouts existed keeps its layout-1 tags after the upgrade."""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.crc import key_slot

from redpromise import ConfigurationError, Context, Redpromise
from redpromise.core.keys import (
    LAYOUT_LEGACY,
    LAYOUT_SPREAD,
    SLOTS,
    Keys,
    slot_of_tag,
    slot_range,
    spread_tags,
)
from redpromise.store.store import STATES
from tests.conftest import fast_settings
from tests.redis_cluster import RedisCluster

MakeRp = Callable[..., Awaitable[Redpromise]]


def middle_suffix_tags(namespace: str, partitions: int) -> list[str]:
    """The layout-2 rule, tried literally: n = 0, 1, 2, … until the slot is the middle."""
    tags = []
    for k in range(partitions):
        wanted, n = slot_range(k, partitions), 0
        middle = (wanted.start + wanted.stop - 1) // 2
        while key_slot(f"{namespace}:{k}:{n}".encode()) != middle:
            n += 1
        tags.append(f"{namespace}:{k}:{n}")
    return tags


# ---------------------------------------------------------------- pure key computations


@pytest.mark.parametrize("partitions", [1, 3, 16, 64, 1000, SLOTS])
def test_spread_layout_puts_partition_k_in_slot_range_k(partitions: int) -> None:
    keys = Keys("rp", partitions)
    assert keys.layout == LAYOUT_SPREAD
    for k in range(partitions):
        first, end = k * SLOTS // partitions, (k + 1) * SLOTS // partitions
        assert first <= keys.slot(k) < end
        # the slot Redis computes for the real keys (hash tag rule included)
        assert key_slot(keys.stream(k, "worker").encode()) == keys.slot(k)
    if partitions == SLOTS:  # one partition per slot: every slot used exactly once
        assert sorted(keys.slot(k) for k in range(partitions)) == list(range(SLOTS))


@pytest.mark.parametrize("namespace", ["rp", "shop", "t0123456789ab", "bücher"])
@pytest.mark.parametrize("partitions", [1, 3, 16, 64, 250])
def test_spread_tags_are_the_smallest_suffix_on_the_middle_slot(
    namespace: str, partitions: int
) -> None:
    assert spread_tags(namespace, partitions) == middle_suffix_tags(namespace, partitions)


@pytest.mark.parametrize("masters", [2, 3, 4, 5, 6, 7])
@pytest.mark.parametrize("partitions", [16, 24, 64])
def test_every_namespace_spreads_evenly_over_masters_with_equal_shares(
    masters: int, partitions: int
) -> None:
    # The shares redis-cli --cluster create gives: contiguous, as equal as slots allow.
    bounds = [m * SLOTS // masters for m in range(masters + 1)]
    for namespace in ["rp", *(f"ns{i}" for i in range(60))]:
        keys = Keys(namespace, partitions)
        per_master = Counter(
            next(m for m in range(masters) if keys.slot(k) < bounds[m + 1])
            for k in range(partitions)
        )
        counts = [per_master[m] for m in range(masters)]
        assert max(counts) - min(counts) <= 1, (namespace, counts)


def test_every_key_of_a_promise_shares_its_partitions_slot() -> None:
    keys = Keys("rp", 16)
    for id in ["a", "order-42", "ü" * 40, "x" * 512]:
        k = keys.partition(id)
        built = [keys.promise(id), keys.steps(id), keys.children(id), keys.stream(k, "g")]
        built += [keys.delayed(k), keys.timeouts(k), keys.dead(k), keys.channel(k)]
        built += [keys.index(k, s) for s in STATES] + [keys.counts(k)]
        assert {key_slot(key.encode()) for key in built} == {keys.slot(k)}


def test_legacy_layout_keeps_the_tags_of_the_previous_version() -> None:
    keys = Keys("shop", 16, LAYOUT_LEGACY)
    k = keys.partition("order-42")
    assert keys.promise("order-42") == f"{{shop:{k}}}:p:order-42"
    assert keys.stream(3, "worker") == "{shop:3}:q:worker"
    assert keys.channel(15) == "{shop:15}:c"
    assert keys.with_layout(LAYOUT_SPREAD).promise("order-42") != keys.promise("order-42")
    assert keys.with_layout(LAYOUT_LEGACY) is keys


def test_partitions_of_an_id_do_not_depend_on_the_layout() -> None:
    spread, legacy = Keys("rp", 16), Keys("rp", 16, LAYOUT_LEGACY)
    ids = [f"id-{i}" for i in range(200)]
    assert [spread.partition(i) for i in ids] == [legacy.partition(i) for i in ids]


def test_unknown_layouts_and_partition_counts_are_refused() -> None:
    with pytest.raises(ValueError):
        Keys("rp", 16, 3)
    for bad in (0, SLOTS + 1):
        with pytest.raises(ValueError):
            Keys("rp", bad)


# ---------------------------------------------------------------- against a real cluster


@pytest.mark.real
def test_tag_slots_match_cluster_keyslot(redis_cluster: RedisCluster) -> None:
    node = redis_cluster.nodes[0]
    rng = random.Random(7)
    tags = spread_tags("rp", 64) + [f"ns:{rng.getrandbits(64):x}" for _ in range(100)]
    tags += ["bücher:3:17", "a", "x" * 300]
    for tag in tags:
        assert int(node.command("CLUSTER", "KEYSLOT", tag)) == slot_of_tag(tag), tag
    keys = Keys("bücher", 16)
    for id in ["order-42", "ü" * 40]:
        slot = int(node.command("CLUSTER", "KEYSLOT", keys.promise(id)))
        assert slot == keys.slot(keys.partition(id))


@pytest.mark.real
def test_sixteen_partitions_spread_six_five_five_over_three_masters(
    redis_cluster: RedisCluster,
) -> None:
    masters = redis_cluster.masters()
    assert sorted(redis_cluster.slots_of(m) for m in masters) == [5461, 5461, 5462]
    keys = Keys("rp", 16)
    per_master = Counter(redis_cluster.master_of(keys.slot(k)).port for k in range(16))
    assert sorted(per_master.values()) == [5, 5, 6]
    legacy = Keys("rp", 16, LAYOUT_LEGACY)
    before = Counter(redis_cluster.master_of(legacy.slot(k)).port for k in range(16))
    print(f"16 partitions per master: legacy {sorted(before.values())}, "
          f"spread {sorted(per_master.values())}")  # fmt: skip


@pytest.mark.real
async def test_promises_on_a_cluster_live_on_their_partitions_master(
    redis_cluster: RedisCluster, namespace: str
) -> None:
    rp = Redpromise(redis_cluster.url, settings=fast_settings(namespace))
    try:
        ids = [f"order-{i}" for i in range(160)]
        for id in ids:
            await rp.begin_rpc(id, "double", 1)
        assert rp.keys.layout == LAYOUT_SPREAD
        expected = Counter(
            redis_cluster.master_of(rp.keys.slot(rp.keys.partition(id))).port for id in ids
        )
        found: Counter[int] = Counter()
        for master in redis_cluster.masters():
            with master.client() as direct:  # no redirection: what this master holds
                found[master.port] = sum(1 for _ in direct.scan_iter(f"{{{namespace}:*}}:p:*"))
        assert found == expected and len(found) == 3
    finally:
        await rp.stop()


# ---------------------------------------------------------------- the layout in rp:meta


async def previous_version(make_rp: MakeRp, **kwargs: Any) -> Redpromise:
    """A client behaving as the version before layouts: legacy tags, only ``partitions``
    pinned in meta."""
    rp = await make_rp(**kwargs)
    legacy = rp.keys.with_layout(LAYOUT_LEGACY)
    rp.keys = rp.store.keys = legacy

    async def pins_nothing() -> None:
        return None

    rp._adopt_key_layout = pins_nothing  # type: ignore[method-assign]
    return rp


async def double(ctx: Context, x: int) -> int:
    return 2 * x


async def test_a_new_namespace_pins_the_spread_layout(make_rp: MakeRp, redis: Redis) -> None:
    rp = await make_rp()
    await rp.begin_rpc("p1", "double", 1)
    assert await redis.hgetall(rp.keys.meta) == {b"partitions": b"16", b"layout": b"2"}
    assert rp.keys.layout == LAYOUT_SPREAD
    assert await redis.exists(Keys(rp.settings.namespace, 16).promise("p1")) == 1
    again = await make_rp()
    await again.get("p1")
    assert again.keys.layout == LAYOUT_SPREAD


async def test_promises_of_the_previous_version_complete_after_the_upgrade(
    make_rp: MakeRp, redis: Redis
) -> None:
    old = await previous_version(make_rp)
    handles = [await old.begin_rpc(f"old-{i}", "double", i) for i in range(8)]
    meta = old.keys.meta
    assert await redis.hgetall(meta) == {b"partitions": b"16"}
    ns = old.settings.namespace
    assert await redis.exists(*(f"{{{ns}:{old.keys.partition(h.id)}}}:p:{h.id}" for h in handles))

    # No safety poll within the test: a result can only come through the old channels.
    new = await make_rp(safety_poll=timedelta(minutes=5))
    new.register(double)
    await new.start()  # the upgraded worker serves the old streams
    for i, h in enumerate(handles):
        assert await (await new.get(h.id)).result(timeout=15) == 2 * i
        assert await h.result(timeout=15) == 2 * i
    assert new.keys.layout == LAYOUT_LEGACY and new.store.keys is new.keys
    assert await redis.hgetall(meta) == {b"partitions": b"16"}  # still the legacy layout
    after = await new.begin_rpc("after-upgrade", "double", 21)
    assert await after.result(timeout=15) == 42
    k = new.keys.partition("after-upgrade")
    assert await redis.exists(f"{{{ns}:{k}}}:p:after-upgrade") == 1


async def test_an_unknown_layout_is_refused(make_rp: MakeRp, redis: Redis) -> None:
    rp = await make_rp()
    await redis.hset(rp.keys.meta, mapping={"partitions": 16, "layout": 3})
    with pytest.raises(ConfigurationError, match="key layout"):
        await rp.start()
