"""What a failure from Redis means: its cause, whether waiting fixes it, its typed error.

Every loop and every public call asks this one module, so that a ``MISCONF`` is
recognised the same way in the read loop, in a completion and at the gateway:

- :func:`cause_of` names the condition: the error reply's code (``MISCONF``, ``READONLY``,
  ``NOPERM``, …, also when Redis reports it from inside a script), or the exception's
  class for connection loss and timeouts;
- :func:`retryable` tells the conditions that end by themselves or by an operator's fix
  while the process waits (an outage, a failover, a full or busy or loading server);
- :func:`as_redpromise_error` turns a redis-py exception into redpromise's: ``StoreUnavailable``,
  ``ConfigurationError`` (missing rights), ``CorruptRecord`` (``WRONGTYPE``) or
  ``StoreError`` (anything else Redis answers).
"""

from __future__ import annotations

import re
from typing import Any

from redis import exceptions as rex

from redpromise.core.errors import ConfigurationError, CorruptRecord, StoreError, StoreUnavailable
from redpromise.redis.acl import describe_noperm

__all__ = [
    "RETRYABLE",
    "as_redpromise_error",
    "cause_of",
    "is_redis_failure",
    "retryable",
    "translate_errors",
]

# Error replies that end by waiting (or by an operator's fix that needs no restart).
RETRYABLE = frozenset(
    {
        "BUSY",
        "LOADING",
        "MISCONF",
        "READONLY",
        "OOM",
        "TRYAGAIN",
        "CLUSTERDOWN",
        "MASTERDOWN",
        "NOREPLICAS",
        "NOSCRIPT",  # a script cache emptied under us: loaded again on the next call
        "NOGROUP",  # a wiped dataset: the worker creates its groups again
        "MOVED",  # a slot moved (a failover, a reshard) and the retries ran out
        "ASK",
        "UNBLOCKED",  # a blocked read ended as its server turned replica (a failover)
        "ConnectionError",
        "TimeoutError",
    }
)
_RIGHTS = frozenset({"NOPERM", "NOAUTH", "WRONGPASS"})

# redis-py strips the code from the message of the replies it has a class for.
_BY_CLASS: tuple[tuple[type[BaseException], str], ...] = (
    (rex.BusyLoadingError, "LOADING"),
    (rex.NoPermissionError, "NOPERM"),
    (rex.AuthenticationError, "NOAUTH"),
    (rex.ReadOnlyError, "READONLY"),
    (rex.OutOfMemoryError, "OOM"),
    (rex.NoScriptError, "NOSCRIPT"),
    (rex.TryAgainError, "TRYAGAIN"),
    (rex.MovedError, "MOVED"),  # before AskError, its base class
    (rex.AskError, "ASK"),
    (rex.MasterDownError, "MASTERDOWN"),
    (rex.ClusterDownError, "CLUSTERDOWN"),
    (rex.ConnectionError, "ConnectionError"),
    (rex.TimeoutError, "TimeoutError"),
)
# A code at the start of a reply, or the code of a command that failed inside a script
# ("... script: ...", "ERR Error running script ...: -MISCONF ...").
_CODE = re.compile(r"^-?([A-Z][A-Z_]{2,})\b")
_KNOWN = RETRYABLE | _RIGHTS | {"WRONGTYPE", "CROSSSLOT", "MOVED", "ASK", "EXECABORT"}
# Redis 7 reports a right missing inside a script as a plain ERR.
_SCRIPT_NOPERM = "The user executing the script can't"
_INSIDE = re.compile(
    r"(?<![A-Za-z])-?(" + "|".join(sorted(_KNOWN - {"ConnectionError", "TimeoutError"})) + r")\b"
)


def cause_of(exc: BaseException) -> str:
    """The condition behind ``exc``: an error reply's code, or a short class name."""
    if isinstance(exc, StoreUnavailable | StoreError | ConfigurationError) and exc.reason:
        return exc.reason
    if isinstance(exc, CorruptRecord):
        return "WRONGTYPE"
    code = getattr(exc, "status_code", None)
    if isinstance(exc, rex.ResponseError | rex.ConnectionError) and code:
        code = str(code)
        if code != "ERR":
            return code
    text = str(exc)
    m = _CODE.match(text)
    if m is not None and m.group(1) != "ERR" and isinstance(exc, rex.ResponseError):
        return m.group(1)
    if isinstance(exc, rex.ResponseError):
        if _SCRIPT_NOPERM in text:
            return "NOPERM"
        inner = _INSIDE.search(text)
        if inner is not None:
            return inner.group(1)
    for cls, name in _BY_CLASS:
        if isinstance(exc, cls):
            return name
    if isinstance(exc, rex.ResponseError):
        return "ERR"
    if isinstance(exc, OSError | TimeoutError):
        return "ConnectionError" if isinstance(exc, OSError) else "TimeoutError"
    return type(exc).__name__


def is_redis_failure(exc: BaseException) -> bool:
    """Whether ``exc`` comes from talking to Redis (not from a bug of ours)."""
    return isinstance(
        exc,
        rex.RedisError | OSError | TimeoutError | StoreUnavailable | StoreError | CorruptRecord,
    ) or (isinstance(exc, ConfigurationError) and cause_of(exc) in _RIGHTS)


def retryable(exc: BaseException) -> bool:
    """Whether waiting (with backoff) is the right answer to ``exc``."""
    if isinstance(exc, StoreUnavailable):
        return True
    if isinstance(exc, rex.RedisError | OSError | TimeoutError):
        return cause_of(exc) in RETRYABLE
    return False


def as_redpromise_error(exc: BaseException) -> BaseException:
    """The redpromise error a redis-py error stands for (``exc`` itself otherwise)."""
    if not isinstance(exc, rex.RedisError | OSError):
        return exc
    cause = cause_of(exc)
    if cause in RETRYABLE or isinstance(exc, rex.ConnectionError | rex.TimeoutError | OSError):
        return StoreUnavailable(f"Redis unavailable ({cause}): {exc}", cause)
    if cause in _RIGHTS:
        return ConfigurationError(
            f"the Redis user lacks {describe_noperm(exc) or 'a right redpromise needs'} "
            f"({cause}): {exc}; "
            "see 'Running as an ACL user' in the README",
            cause,
        )
    if cause == "WRONGTYPE":
        return CorruptRecord(f"a key of the wrong type in Redis: {exc}")
    return StoreError(f"Redis refused the operation: {exc}", cause)


class translate_errors:
    """Turn redis-py's errors into redpromise's (see :func:`as_redpromise_error`).

    A class rather than an ``asynccontextmanager``: it wraps every client call, and a
    generator-based context manager costs several times more per use.
    """

    __slots__ = ()

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, typ: type[BaseException] | None, exc: Any, tb: Any) -> None:
        if exc is not None and (err := as_redpromise_error(exc)) is not exc:
            raise err from exc
