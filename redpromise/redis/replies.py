"""What redis-py hands back in a reply's place, by names the wings above may use.

Only the redis wing imports redis-py. The store and the worker still meet its exceptions:
a batch returns them in the places of the replies that failed, a pipelined read raises
them. They test for them by these names:

- :data:`ErrorReply`: an error reply from Redis, any code (what it means:
  :func:`redpromise.redis.classify.cause_of`); :func:`error_reply` makes one from an error
  text that a script returned as data (``{0, "WRONGTYPE ..."}``);
- :data:`ScriptMissing`: ``NOSCRIPT``, the script is not loaded and the call did not run;
- :data:`CONNECTION_LOST`: the connection failed or timed out under a command.

Whether a client speaks to a cluster is :func:`redpromise.redis.kinds.is_cluster`.
"""

from __future__ import annotations

from redis import exceptions as _rex

__all__ = ["CONNECTION_LOST", "ErrorReply", "ScriptMissing", "error_reply"]

ErrorReply = _rex.ResponseError
ScriptMissing = _rex.NoScriptError
CONNECTION_LOST: tuple[type[BaseException], ...] = (
    _rex.ConnectionError,
    _rex.TimeoutError,
    OSError,
)


def error_reply(text: str) -> ErrorReply:
    """The error reply ``text`` as redis-py raises one (so ``cause_of`` reads its code)."""
    return ErrorReply(text)

