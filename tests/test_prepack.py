"""The create call packed from cached pieces is byte for byte what hiredis packs."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from redpromise import Redpromise, Settings
from redpromise.core.keys import LAYOUT_LEGACY, LAYOUT_SPREAD, Keys
from redpromise.redis.wire import pack
from redpromise.store import prepack as _prepack
from redpromise.store.prepack import CreatePacker
from redpromise.store.scripts import Script

CREATE = Script("create")

CASES = [
    # id, func, payload, group, timeout_ms, tags, retry
    ("a-1", "noop", b"\x82\xa1a\x91\x01\xa1k\x80", "worker", 86_400_000, b"", b""),
    ("é/日本\u2028x", "f.g:h-1", b"\r\n\x00\xff" * 300, "g_2", 1, b"\x81\xa1t\xa1v", b"\x93\x01"),
    ("x" * 512, "", b"", "", 2**62, b"", b""),  # a latent promise: no function, no group
]


def old_create(keys: Keys, id: str, func: str, payload: bytes, group: str, timeout_ms: int,
               tags: bytes, retry: bytes) -> tuple[list[str], list[object]]:  # fmt: skip
    """The keys and args Store.create built before the packer."""
    k = keys.partition(id)
    return (
        [keys.promise(id), keys.stream(k, group), keys.timeouts(k), keys.index(k, "pending"),
         keys.counts(k)],
        [id, func, payload, group, timeout_ms, tags, retry],
    )  # fmt: skip


@pytest.mark.parametrize("layout", [LAYOUT_LEGACY, LAYOUT_SPREAD])
@pytest.mark.parametrize("case", CASES)
def test_create_packed_from_pieces_equals_hiredis_packing_of_its_command(
    layout: int, case: tuple[str, str, bytes, str, int, bytes, bytes]
) -> None:
    keys = Keys("ns-é", 7, layout)
    packer = CreatePacker()
    for _ in range(2):  # the first call fills the cache, the second uses it
        got_keys, got_args, packed = packer.call(CREATE, keys, *case)
        assert (got_keys, got_args) == old_create(keys, *case)
        assert packed == pack([CREATE.command(got_keys, got_args)])


def test_create_keys_follow_a_key_layout_adopted_after_first_use() -> None:
    packer = CreatePacker()
    legacy, spread = Keys("rp", 16, LAYOUT_LEGACY), Keys("rp", 16, LAYOUT_SPREAD)
    packer.call(CREATE, legacy, "id-1", "f", b"", "g", 5, b"", b"")
    got_keys, got_args, packed = packer.call(CREATE, spread, "id-1", "f", b"", "g", 5, b"", b"")
    assert got_keys == old_create(spread, "id-1", "f", b"", "g", 5, b"", b"")[0]
    assert packed == pack([CREATE.command(got_keys, got_args)])


def test_create_packing_stays_exact_past_the_cache_bound(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_prepack, "_MAX_PIECES", 3)
    packer = CreatePacker()
    keys = Keys("rp", 4)
    for i in range(20):
        case = (f"id-{i}", "f", b"p", f"group{i % 9}", 10, b"", b"")
        got_keys, got_args, packed = packer.call(CREATE, keys, *case)
        assert packed == pack([CREATE.command(got_keys, got_args)])
    assert len(packer._pieces) <= 3


def test_prepacked_commands_are_sent_as_given_and_the_rest_packed() -> None:
    assert pack([["GET", "a"], ["GET", "b"]], [None, b"*1\r\n$4\r\nPING\r\n"]) == (
        b"*2\r\n$3\r\nGET\r\n$1\r\na\r\n*1\r\n$4\r\nPING\r\n"
    )


async def test_a_prepacked_create_after_a_script_cache_flush_is_loaded_and_resent(
    redis: Redis, namespace: str
) -> None:
    rp = Redpromise(redis=redis, settings=Settings(namespace=namespace))
    await rp.start()
    await redis.script_flush()
    await rp.begin_rpc("flushed", "noop", 1)
    assert await rp.get("flushed") is not None
    assert await redis.hget(rp.keys.promise("flushed"), "state") == b"pending"
    await rp.stop()
