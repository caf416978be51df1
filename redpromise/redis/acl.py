"""Checks, once at start, that the connected Redis user may do what redpromise needs.

A Redis ACL user lacking a right would otherwise fail late and obscurely (a refused
SUBSCRIBE, a refused command inside a Lua script after it wrote). :func:`check_acl` finds
every missing right up front and raises :class:`ConfigurationError` naming each of them
and giving the ``ACL SETUSER`` line that grants them.

How it checks, cheapest first:

1. ``ACL WHOAMI`` + ``ACL GETUSER`` in one round trip: a user with every command, key and
   channel (the ``default`` user of an unconfigured Redis) is done there.
2. Redis >= 7 and a user allowed ``ACL DRYRUN``: one pipelined ``DRYRUN`` per command
   redpromise sends, on the keys and channel it sends it on. Nothing runs.
3. Otherwise (Redis 6.2, or a user without ``acl`` rights, like the minimal one this
   module suggests): a probe on a connection of its own. Harmless commands on keys no
   promise can have (the id holds a control character), a Lua script that tries each
   command the transitions run (``redis.pcall``, so each refusal is caught and named)
   and leaves nothing behind, and a SUBSCRIBE to a completion channel.

A NOPERM met later (an ACL changed while running) is turned into a typed error by
``classify.as_redpromise_error``, which
names the refused right with :func:`describe_noperm`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import math
import re
from collections.abc import Sequence
from typing import Any

from redis.asyncio import Redis
from redis.asyncio.cluster import RedisCluster
from redis.exceptions import ResponseError

from redpromise.core.errors import ConfigurationError
from redpromise.core.keys import Keys
from redpromise.redis.batch import send_batch
from redpromise.redis.wire import pack

__all__ = [
    "CLUSTER_RULES",
    "OPERATOR_RULES",
    "check_acl",
    "describe_noperm",
    "setuser_line",
]

log = logging.getLogger("redpromise")

# No promise id or group name contains a control character: probe keys can't be real ones.
PROBE_ID = "\x00acl-probe"
_G = "\x00acl"  # probe consumer group, consumer and stream suffix

_README = 'see "Running as an ACL user" in redpromise\'s README'

# Every command a client sends itself, or the Lua transitions run (tests/test_acl.py checks
# this against the scripts), as ACL rules.
CLIENT_RULES = (
    "info", "ping", "evalsha", "script|load", "hget", "hmget", "hsetnx", "sadd",
    "smembers", "pexpire", "subscribe",
    # inside the scripts
    "time", "hset", "hdel", "hgetall", "hincrby", "del", "publish", "xadd", "xack",
    "xdel", "xclaim", "xpending", "xrange", "zadd", "zrem", "zscore", "pttl",
    # inside the Resonate face's scripts (store/lua/rs_*.lua) too
    "srem", "exists",
    # search (scan.lua and reads of the state indexes)
    "zrangebyscore", "zrevrangebyscore",
)  # fmt: skip
WORKER_RULES = (
    "xreadgroup", "xautoclaim", "xgroup|create", "xgroup|delconsumer", "xinfo|groups",
    "xinfo|consumers", "zrange", "type",
    # inside the scripts only workers run (acquire, take, bury); take also runs xreadgroup
    "xtrim",
)  # fmt: skip


# On a Redis >= 7 cluster (added on every node: ACLs are per node): the cluster client's
# own reads of the slot map and command table, and sharded pub/sub (the scripts' SPUBLISH,
# the waiters' SSUBSCRIBE). Not in the single-server line: Redis 6.2 knows no SPUBLISH.
CLUSTER_RULES = ("cluster|slots", "command", "spublish", "ssubscribe")
# The operator's reads (the CLI, the dashboard, the queue gauges of /metrics): stream
# lengths and info, the dead streams newest first, and whether a requeued id is taken.
OPERATOR_RULES = ("xlen", "xinfo|stream", "xrevrange", "exists")
# Commands a Lua script names by a variable, and every value the variable can hold
# (tests/test_acl.py fails on a variable missing here): settle.lua's `publish` is
# Store.publish.
SCRIPT_VARIABLES = {"publish": ("publish", "spublish")}


def rules(worker: bool, cluster: bool = False) -> tuple[str, ...]:
    """The command rules a client (``worker=False``) or a worker needs; ``cluster``: on a
    Redis >= 7 cluster."""
    both = CLIENT_RULES + WORKER_RULES if worker else CLIENT_RULES
    return both + CLUSTER_RULES if cluster else both


def _glob(text: str) -> str:
    """``text`` as a literal in a Redis glob pattern."""
    return re.sub(r"([*?\[\]\\])", r"\\\1", text)


def patterns(keys: Keys) -> tuple[list[str], str]:
    """``(key patterns, channel pattern)`` covering exactly one namespace's keys.

    Partition keys are hash-tagged (``{rp:3}:p:<id>``) and so start with ``{``, not
    with the namespace; only the meta key (``rp:meta``) does.
    """
    ns = _glob(keys.namespace)
    return [f"{{{ns}:*", _glob(keys.meta)], f"{{{ns}:*}}:c"


def _quote(arg: str) -> str:
    return f'"{arg}"' if re.search(r"[\s\"']", arg) else arg


def setuser_line(
    user: str,
    keys: Keys,
    *,
    worker: bool = True,
    db: int = 0,
    commands: Sequence[str] | None = None,
    key_access: bool = True,
    channel_access: bool = True,
    cluster: bool = False,
) -> str:
    """The ``ACL SETUSER`` line granting ``user`` what redpromise needs, and nothing else.

    By default every right (for a new user put ``on >password resetchannels`` after the
    name); ``cluster`` adds what a Redis >= 7 cluster needs. ``commands``, ``key_access``
    and ``channel_access`` narrow it to the rights a user lacks (or the operator's,
    :data:`OPERATOR_RULES`). It only adds rights: the user keeps its password and its
    other rights.
    """
    key_patterns, channel = patterns(keys)
    if commands is None:
        commands = [*rules(worker, cluster), *(["select"] if db else [])]
    parts = [f"+{r}" for r in commands]
    parts += [f"~{p}" for p in key_patterns] if key_access else []
    parts += [f"&{channel}"] if channel_access else []
    return " ".join(["ACL", "SETUSER", _quote(user), *(_quote(p) for p in parts)])


# -- NOPERM messages --------------------------------------------------------------------

_RUN = re.compile(r"no permissions to run the '([^']+)' command")
_DRY_KEY = re.compile(r"no permissions to access the '(.*)' key")
_DRY_CHANNEL = re.compile(r"no permissions to access the '(.*)' channel")


def describe_noperm(exc: BaseException | str) -> str | None:
    """The right a Redis ACL refusal names (``"the 'publish' command"``), or ``None`` when
    ``exc`` is not an ACL refusal.

    Understands NOPERM error replies (Redis 6.2 to 7.x wordings), the errors of a refused
    call inside a Lua script, and ``ACL DRYRUN`` answers.
    """
    text = str(exc)
    if m := _RUN.search(text):
        return f"the {m.group(1).upper()!r} command"
    if m := _DRY_KEY.search(text):
        return f"the key {m.group(1)!r}"
    if m := _DRY_CHANNEL.search(text):
        return f"the channel {m.group(1)!r}"
    if "no permissions to access one of the keys" in text:
        return "a key of the command"
    if "no permissions to access one of the channels" in text:
        return "a channel of the command"
    if "user executing the script can't run this command" in text:
        return "a command the Lua scripts run"
    if "user executing the script can't access at least one of the keys" in text:
        return "a key the Lua scripts use"
    if "user executing the script can't publish to the channel" in text:
        return "a completion channel (PUBLISH in a Lua script)"
    if text.startswith("NOPERM") or "no permissions" in text:
        return "a right (ACL)"
    return None


# -- the check --------------------------------------------------------------------------


class _Missing:
    """The rights found missing, grouped for the message."""

    def __init__(self) -> None:
        self.commands: dict[str, None] = {}
        self.keys: dict[str, None] = {}
        self.channels: dict[str, None] = {}
        self.other: dict[str, None] = {}

    def add(self, rule: str, key: str | None, reply: object) -> None:
        """Record the refusal ``reply`` of a use of ``rule`` on ``key``."""
        text = str(reply)
        if _RUN.search(text) or "can't run this command" in text:
            self.commands[rule] = None
        elif m := _DRY_KEY.search(text):
            self.keys[m.group(1)] = None
        elif m := _DRY_CHANNEL.search(text):
            self.channels[m.group(1)] = None
        elif "one of the keys" in text or "at least one of the keys" in text:
            self.keys[key or "?"] = None
        elif "channel" in text:
            self.channels[key or "?"] = None
        else:
            self.other[f"{rule}: {text}"] = None

    def __bool__(self) -> bool:
        return bool(self.commands or self.keys or self.channels or self.other)

    def describe(self) -> str:
        parts = []
        if self.commands:
            parts.append("commands " + ", ".join(c.upper() for c in self.commands))
        if self.keys:
            parts.append("keys " + ", ".join(repr(k) for k in self.keys))
        if self.channels:
            parts.append("channels " + ", ".join(repr(c) for c in self.channels))
        parts.extend(self.other)
        return "; ".join(parts)


class _Uses:
    """What redpromise sends, as ``(rule, key, argv)``: the argv is harmless to run."""

    def __init__(self, keys: Keys, worker: bool) -> None:
        k = keys.partition(PROBE_ID)
        self.keys = keys
        self.p = keys.promise(PROBE_ID)
        self.s = keys.steps(PROBE_ID)
        self.c = keys.children(PROBE_ID)
        self.q = keys.stream(k, _G)
        self.d = keys.delayed(k)
        self.t = keys.timeouts(k)
        self.x = keys.dead(k)
        # Matches the completion channels' pattern but is no partition's channel: a
        # probe's PUBLISH reaches no process listening for completions.
        self.ch = f"{{{keys.namespace}:{PROBE_ID}}}:c"
        self.worker = worker

    def client(self) -> list[tuple[str, str | None, list[Any]]]:
        p, c, d, m = self.p, self.c, self.d, self.keys.meta
        return [
            ("info", None, ["INFO", "cluster"]),  # is it a cluster? asked at every start
            ("ping", None, ["PING"]),
            ("hget", m, ["HGET", m, "partitions"]),
            # Not on the meta hash: the probe runs before the namespace's key layout is
            # pinned, and a meta with `partitions` but no `layout` reads as a legacy one.
            ("hsetnx", p, ["HSETNX", p, "probe", 1]),
            ("hmget", p, ["HMGET", p, "state"]),
            ("sadd", c, ["SADD", c, _G]),
            ("pexpire", c, ["PEXPIRE", c, 1000]),
            ("smembers", c, ["SMEMBERS", c]),
            ("zrangebyscore", d, ["ZRANGEBYSCORE", d, "-inf", "-inf", "LIMIT", 0, 1]),
            ("zrevrangebyscore", d, ["ZREVRANGEBYSCORE", d, "-inf", "-inf", "LIMIT", 0, 1]),
        ]

    def worker_side(self) -> list[tuple[str, str | None, list[Any]]]:
        if not self.worker:
            return []
        q, t = self.q, self.t
        return [
            ("xgroup|create", q, ["XGROUP", "CREATE", q, _G, "0", "MKSTREAM"]),
            ("pexpire", q, ["PEXPIRE", q, 1000]),
            ("xreadgroup", q, ["XREADGROUP", "GROUP", _G, _G, "COUNT", 1, "STREAMS", q, ">"]),
            ("xautoclaim", q, ["XAUTOCLAIM", q, _G, _G, 0, "0-0", "COUNT", 1]),
            ("xinfo|groups", q, ["XINFO", "GROUPS", q]),
            ("xinfo|consumers", q, ["XINFO", "CONSUMERS", q, _G]),
            ("xpending", q, ["XPENDING", q, _G, "-", "+", 1, _G]),
            ("xgroup|delconsumer", q, ["XGROUP", "DELCONSUMER", q, _G, _G]),
            ("type", q, ["TYPE", q]),
            ("zrange", t, ["ZRANGE", t, 0, 0]),
        ]

    def dryrun(self) -> list[tuple[str, str | None, list[Any]]]:
        """Every use, for ``ACL DRYRUN`` (never run, so writes may name real keys)."""
        p, s, q, d, t, x, ch = self.p, self.s, self.q, self.d, self.t, self.x, self.ch
        uses = [
            *self.client(),
            ("evalsha", p, ["EVALSHA", "0" * 40, 1, p]),
            ("script|load", None, ["SCRIPT", "LOAD", "return 0"]),
            ("subscribe", ch, ["SUBSCRIBE", ch]),
            ("time", None, ["TIME"]),
            ("hset", p, ["HSET", p, "f", "v"]),
            ("hdel", p, ["HDEL", p, "f"]),
            ("hincrby", p, ["HINCRBY", p, "f", 1]),
            ("pexpire", p, ["PEXPIRE", p, 1]),
            ("pttl", p, ["PTTL", p]),
            ("hsetnx", s, ["HSETNX", s, "1", "v"]),
            ("hgetall", s, ["HGETALL", s]),
            ("del", s, ["DEL", s]),
            ("publish", ch, ["PUBLISH", ch, PROBE_ID]),
            ("xadd", q, ["XADD", q, "*", "id", PROBE_ID]),
            ("xadd", x, ["XADD", x, "*", "id", PROBE_ID]),
            ("xack", q, ["XACK", q, _G, "0-1"]),
            ("xdel", q, ["XDEL", q, "0-1"]),
            ("xclaim", q, ["XCLAIM", q, _G, _G, 0, "0-1", "JUSTID"]),
            ("xpending", q, ["XPENDING", q, _G, "-", "+", 1]),
            ("xrange", q, ["XRANGE", q, "-", "+"]),
            ("zadd", d, ["ZADD", d, 0, _G]),
            ("zadd", t, ["ZADD", t, 0, _G]),
            ("zrem", d, ["ZREM", d, _G]),
            ("zrem", t, ["ZREM", t, _G]),
            ("zscore", d, ["ZSCORE", d, _G]),
            *self.worker_side(),
        ]
        if self.worker:  # never run by the probe: it would trim the real dead stream
            uses.append(("xtrim", x, ["XTRIM", x, "MAXLEN", 1000]))
        return uses


# Tries, with redis.pcall, each command the transitions run, on the probe's keys; writes
# only what it deletes before returning (real delayed/timeouts zsets get a member added
# and removed in the same atomic script). Returns {rule, key, error} per refusal.
#   KEYS: promise, steps, stream, delayed, timeouts, dead, children
#   ARGV: channel, member, '1' for a worker
_PROBE_LUA = """
local out = {}
local function try(rule, key, ...)
  local r = redis.pcall(...)
  if type(r) == 'table' and r.err and string.find(r.err, "user executing the script", 1, true) then
    out[#out + 1] = rule; out[#out + 1] = key; out[#out + 1] = r.err
  end
  return r
end
local p, s, q, d, t, x, c = KEYS[1], KEYS[2], KEYS[3], KEYS[4], KEYS[5], KEYS[6], KEYS[7]
local m = ARGV[2]
try('time', '', 'TIME')
try('hset', p, 'HSET', p, 'probe', '1')
try('hsetnx', p, 'HSETNX', p, 'probe', '1')
try('hincrby', p, 'HINCRBY', p, 'n', 1)
try('hget', p, 'HGET', p, 'probe')
try('hmget', p, 'HMGET', p, 'probe')
try('hdel', p, 'HDEL', p, 'probe')
try('pexpire', p, 'PEXPIRE', p, 1000)
try('pttl', p, 'PTTL', p)
try('hsetnx', s, 'HSETNX', s, '1', '1')
try('hgetall', s, 'HGETALL', s)
local id = try('xadd', q, 'XADD', q, '*', 'id', m)
if type(id) ~= 'string' then id = '0-1' end
try('pexpire', q, 'PEXPIRE', q, 1000)
try('xrange', q, 'XRANGE', q, '-', '+', 'COUNT', 1)
try('xpending', q, 'XPENDING', q, m, '-', '+', 1)
try('xclaim', q, 'XCLAIM', q, m, m, 0, id, 'JUSTID')
try('xack', q, 'XACK', q, m, id)
try('xdel', q, 'XDEL', q, id)
try('xrange', x, 'XRANGE', x, '+', '+')
for _, z in ipairs({d, t}) do
  try('zscore', z, 'ZSCORE', z, m)
  if type(try('zadd', z, 'ZADD', z, 0, m)) == 'number' then
    try('zrem', z, 'ZREM', z, m)
  end
end
if ARGV[3] == '1' then try('xtrim', q, 'XTRIM', q, 'MAXLEN', 1000) end
try('publish', ARGV[1], 'PUBLISH', ARGV[1], m)
try('del', p, 'DEL', p, s, q, c)
return out
"""


async def check_acl(redis: Redis | RedisCluster, keys: Keys, *, worker: bool) -> None:
    """Raise :class:`ConfigurationError` unless the connected user may run every command
    redpromise sends (as a worker when ``worker``) on the keys and channels of ``keys``'
    namespace. One round trip for a user with every right; a no-op on a server without
    ACLs. The message names each missing right and the ``ACL SETUSER`` line to run.
    """
    if isinstance(redis, RedisCluster):
        log.debug("no ACL check on a Redis Cluster client")
        return  # the probe's keys and connection are per node: not built for it yet
    kwargs = redis.connection_pool.connection_kwargs
    guess = str(kwargs.get("username") or "default")
    whoami, user = await send_batch(redis, [["ACL", "WHOAMI"], ["ACL", "GETUSER", guess]])
    if isinstance(whoami, ResponseError) and describe_noperm(whoami) is None:
        log.debug("no ACL check: ACL WHOAMI answered %s", whoami)
        return  # a server without ACLs: every user has every right
    name = guess if isinstance(whoami, ResponseError) else _text(whoami)
    if name != guess:
        (user,) = await send_batch(redis, [["ACL", "GETUSER", name]])
    if not isinstance(whoami, ResponseError) and _all_rights(user):
        return
    uses = _Uses(keys, worker)
    missing = None
    if not isinstance(whoami, ResponseError):
        missing = await _dryrun(redis, name, uses)
    if missing is None:
        missing = await _probe(redis, uses)
    if missing:
        if missing.channels:  # one partition's channel stands for all of them
            missing.channels = {patterns(keys)[1]: None}
        db = int(kwargs.get("db") or 0)
        if missing.other:  # a refusal we could not attribute: suggest every right
            line = setuser_line(name, keys, worker=worker, db=db)
        else:
            line = setuser_line(
                name,
                keys,
                commands=list(missing.commands),
                key_access=bool(missing.keys),
                channel_access=bool(missing.channels),
            )
        raise ConfigurationError(
            f"Redis user {name!r} lacks rights redpromise needs in namespace "
            f"{keys.namespace!r}: {missing.describe()}. Grant them with:\n    {line}\n({_README})",
            "NOPERM",
        )


def _text(v: Any) -> str:
    return v.decode("utf-8", "replace") if isinstance(v, bytes) else str(v)


def _all_rights(user: Any) -> bool:
    """Whether an ``ACL GETUSER`` reply (RESP2 pairs or RESP3 map) grants everything."""
    if isinstance(user, list):
        user = dict(zip(user[::2], user[1::2], strict=False))
    if not isinstance(user, dict):
        return False
    info = {_text(k): v for k, v in user.items()}
    flags = {_text(f) for f in info.get("flags") or []}

    def every(field: str, flag: str, prefix: str) -> bool:
        v = info.get(field)
        if flag in flags:
            return True
        if isinstance(v, list):  # Redis 6.2: the patterns without their prefix
            return [_text(x) for x in v] == ["*"]
        return v is not None and _text(v) == f"{prefix}*"

    return (
        ("allcommands" in flags or _text(info.get("commands") or b"") == "+@all")
        and every("keys", "allkeys", "~")
        and every("channels", "allchannels", "&")
    )


async def _dryrun(redis: Redis, user: str, uses: _Uses) -> _Missing | None:
    """The missing rights per ``ACL DRYRUN``, or ``None`` when it is not available."""
    todo = uses.dryrun()
    replies = await send_batch(redis, [["ACL", "DRYRUN", user, *argv] for _, _, argv in todo])
    missing = _Missing()
    for (rule, key, _), reply in zip(todo, replies, strict=True):
        if isinstance(reply, ResponseError):
            # Redis < 7 (no DRYRUN), or this user may not run it: probe instead.
            if "DRYRUN" in str(reply).upper() or describe_noperm(reply):
                return None
            missing.other[f"{rule}: {reply}"] = None
        elif _text(reply) != "OK":
            missing.add(rule, key, _text(reply))
    return missing


async def _probe(redis: Redis, uses: _Uses) -> _Missing:
    """The missing rights found by running harmless commands on a connection of its own
    (subscribed at the end, it never goes back to a pool).
    """
    sha = hashlib.sha1(_PROBE_LUA.encode("utf-8")).hexdigest()
    u = uses
    script_keys = [u.p, u.s, u.q, u.d, u.t, u.x, u.c]
    todo: list[tuple[str, str | None, list[Any]]] = [
        *u.client(),
        *u.worker_side(),
        ("script|load", None, ["SCRIPT", "LOAD", _PROBE_LUA]),
        ("evalsha", u.p, ["EVALSHA", sha, len(script_keys), *script_keys, u.ch, _G, int(u.worker)]),
    ]
    todo.append(("subscribe", u.ch, ["SUBSCRIBE", u.ch]))
    pool = redis.connection_pool
    conn: Any = pool.connection_class(
        **{**pool.connection_kwargs, "protocol": 2, "health_check_interval": 0}
    )
    replies: list[Any] = []
    try:
        async with asyncio.timeout(10):
            await conn.connect()
            await conn.send_packed_command(pack([argv for _, _, argv in todo]))
            for _ in todo:
                try:
                    replies.append(await conn.read_response(timeout=math.inf))
                except ResponseError as exc:
                    replies.append(exc)
    finally:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(conn.disconnect(), 2.0)
    missing = _Missing()
    for (rule, key, _), reply in zip(todo, replies, strict=True):
        if isinstance(reply, ResponseError) and describe_noperm(reply):
            missing.add(rule, key, reply)
    script_reply = replies[next(i for i, use in enumerate(todo) if use[0] == "evalsha")]
    if isinstance(script_reply, list):
        refused = [_text(v) for v in script_reply]
        for i in range(0, len(refused) - 2, 3):
            missing.add(refused[i], refused[i + 1] or None, refused[i + 2])
    return missing
