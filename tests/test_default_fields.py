"""Records without their default-valued fields: create.lua stores no version, attempt or
deliveries of 0 and no empty entry, tags or retry, and every reader takes a missing field
as its default, on fakeredis and a real Redis. During a rolling upgrade the previous
release's scripts share the namespace: they must run such a record's whole life too, and
the current scripts one the previous release wrote with every default stored."""

from __future__ import annotations

import hashlib
import subprocess
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from redpromise import Redpromise
from redpromise.client.inspect import Inspector
from redpromise.core.codec import encode
from redpromise.store.scripts import _INCLUDE, DURABLE, SCRIPT_NAMES, Script
from redpromise.store.store import Store
from tests.storeops import HOUR_MS, LIMIT, G, acquire, deliver, fields, promote, stream, text

MakeRp = Callable[..., Awaitable[Redpromise]]

ALWAYS = ["state", "func", "args", "group", "created_at", "timeout_at"]

# The last release whose create.lua stored every default (version '0', attempt '0',
# deliveries '0', entry '', tags '', retry ''), and whose other scripts expect them. Its
# Python differs from this one's readers only in Inspector.detail's `deliveries` of a
# pending record (null when missing: docs/operations.md), so the tests below run its
# scripts under the current Python.
PREVIOUS_RELEASE = "e1e2498ca8805a5f4a641ab38c3125b46975ec75"
ROOT = Path(__file__).resolve().parent.parent


def release_source(commit: str, path: str) -> str:
    try:
        out = subprocess.run(
            ["git", "-C", str(ROOT), "show", f"{commit}:{path}"],
            capture_output=True,
            check=True,
            text=True,
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip(f"needs the git history of release {commit[:7]}")
    return out.stdout


def release_names(commit: str) -> list[str]:
    """The transitions the release had (take.lua came later)."""
    listing = release_source(commit, "redpromise/lua")  # `git show` of a tree lists it
    have = {line.removesuffix(".lua") for line in listing.splitlines()}
    return [name for name in SCRIPT_NAMES if name in have]


def release_scripts(commit: str) -> dict[str, Script]:
    """The scripts of an earlier release, loaded from git as _scripts.py loads its own."""
    scripts: dict[str, Script] = {}
    for name in release_names(commit):
        source = release_source(commit, f"redpromise/lua/{name}.lua")
        seen: set[str] = set()

        def include(match: Any, seen: set[str] = seen) -> str:
            inc = match.group(1)
            if inc in seen:
                return ""
            seen.add(inc)
            return release_source(commit, f"redpromise/lua/includes/{inc}.lua")

        while _INCLUDE.search(source):
            source = _INCLUDE.sub(include, source)
        script = object.__new__(Script)
        script.name, script.durable, script.source = name, name in DURABLE, source
        script.sha = hashlib.sha1(source.encode()).hexdigest()
        scripts[name] = script
    return scripts


async def ready(make_rp: MakeRp) -> Redpromise:
    rp = await make_rp()
    await rp.counts()  # pins the namespace's key layout, as any first call does
    return rp


async def whole_life(store: Store, rp: Redpromise, id: str) -> None:
    """Acquire, checkpoint, heartbeat, retry, promote, acquire again (the step comes
    back), complete; then search and the inspector read the completed record."""
    entry = await deliver(store, id)
    res = await acquire(store, id, entry)
    assert (res[0], res[1], res[2], res[7], res[8]) == (1, 1, b"fn", 1, [])
    assert int(res[4] or 0) == 0 and (res[6] or b"") == b"retry-policy"
    assert await store.checkpoint(id, 1, 1, b"step-one") == 1
    script, keys, args = store.heartbeat_call(id, G, "c1", 1, entry)
    assert await script(store.redis, keys, args) == [1]
    assert await store.retry(id, G, 1, 0, b"err", entry=entry) == 1
    assert await promote(store, id) == [1]
    again = await deliver(store, id)
    res = await acquire(store, id, again)
    assert (res[0], res[1], res[4], res[7], res[8]) == (1, 2, b"1", 1, [b"1", b"step-one"])
    assert await store.checkpoint(id, 1, 2, b"zombie") == -3
    assert (await store.complete(id, G, 2, "resolved", encode(42, LIMIT)))[:2] == [1, b"resolved"]
    assert await store.redis.xlen(stream(store, id)) == 0

    page = await rp.search(tags={"team": "a"})
    [info] = [r for r in page.records if r.id == id]
    got_info = (info.state, info.attempt, info.value, dict(info.tags))
    assert got_info == ("resolved", 1, 42, {"team": "a"})
    detail = await Inspector(rp).detail(id)
    got = {k: detail[k] for k in ("state", "attempt", "version", "deliveries", "tags", "result")}
    assert got == {
        "state": "resolved",
        "attempt": 1,
        "version": 2,
        "deliveries": None,
        "tags": {"team": "a"},
        "result": 42,
    }
    assert detail["completed_by"] == "2" and detail["owner"] is None


async def create_tagged(store: Store, id: str) -> None:
    tags = encode({"team": "a"}, LIMIT)
    args = encode({"a": [1]}, LIMIT)
    created = await store.create(id, "fn", args, G, HOUR_MS, tags, b"retry-policy")
    assert created[0] is True


# ---------------------------------------------------------------- the current release


async def test_a_record_without_default_fields_goes_through_its_whole_life(
    make_rp: MakeRp,
) -> None:
    rp = await ready(make_rp)
    await create_tagged(rp.store, "p1")
    assert list(await fields(rp.store, "p1")) == [*ALWAYS, "entry", "tags", "retry"]
    await whole_life(rp.store, rp, "p1")


async def test_a_pending_record_reads_its_missing_fields_as_defaults(make_rp: MakeRp) -> None:
    rp = await ready(make_rp)
    await rp.store.create("latent", "fn", encode({"a": []}, LIMIT), "", HOUR_MS, b"", b"")
    assert list(await fields(rp.store, "latent")) == ALWAYS
    rec = await rp.store.read("latent")
    assert rec is not None and (rec.attempt, rec.version, rec.tags) == (0, 0, None)
    detail = await Inspector(rp).detail("latent")
    got = {k: detail[k] for k in ("attempt", "version", "deliveries", "owner", "tags")}
    assert got == {"attempt": 0, "version": 0, "deliveries": 0, "owner": None, "tags": {}}
    [info] = (await rp.search(state="pending")).records
    assert (info.id, info.attempt, dict(info.tags)) == ("latent", 0, {})


async def test_the_fence_reads_a_missing_version_as_zero(make_rp: MakeRp) -> None:
    # Before its first acquire a promise is at version 0, stored or not: a fenced write
    # for version 0 passes, one for any other version is refused, as before.
    rp = await ready(make_rp)
    store = rp.store
    await create_tagged(store, "p1")
    assert await store.checkpoint("p1", 1, 1, b"x") == -3
    assert await store.checkpoint("p1", 0, 1, b"x") == 1
    assert await store.complete("p1", G, 1, "resolved", b"v") == [-3]
    assert (await store.complete("p1", G, 0, "resolved", b"v"))[:2] == [1, b"resolved"]


# ---------------------------------------------------------------- rolling upgrade


async def test_the_previous_release_runs_a_record_without_default_fields(
    make_rp: MakeRp,
) -> None:
    rp = await ready(make_rp)
    await create_tagged(rp.store, "p1")  # written by the current create.lua
    assert "version" not in await fields(rp.store, "p1")
    rp.store.scripts = release_scripts(PREVIOUS_RELEASE)
    await whole_life(rp.store, rp, "p1")


async def test_the_current_release_runs_a_record_the_previous_one_wrote(
    make_rp: MakeRp,
) -> None:
    rp = await ready(make_rp)
    current = rp.store.scripts
    rp.store.scripts = release_scripts(PREVIOUS_RELEASE)
    await create_tagged(rp.store, "p1")
    f = await fields(rp.store, "p1")
    assert (f["version"], f["attempt"], f["deliveries"]) == (b"0", b"0", b"0")
    rp.store.scripts = current
    await whole_life(rp.store, rp, "p1")


async def test_a_latent_record_of_either_release_reads_the_same(make_rp: MakeRp) -> None:
    rp = await ready(make_rp)
    await rp.store.create("new", "fn", encode({"a": []}, LIMIT), "", HOUR_MS, b"", b"")
    current = rp.store.scripts
    rp.store.scripts = release_scripts(PREVIOUS_RELEASE)
    await rp.store.create("old", "fn", encode({"a": []}, LIMIT), "", HOUR_MS, b"", b"")
    rp.store.scripts = current
    inspector = Inspector(rp)
    views = []
    for id in ("new", "old"):
        rec = await rp.store.read(id)
        assert rec is not None
        detail = await inspector.detail(id)
        drop = ("id", "created_at", "timeout_at")
        views.append(({k: v for k, v in detail.items() if k not in drop}, rec.attempt, rec.version))
        assert text(rec.id) == id
    assert views[0] == views[1]
