"""The exceptions redpromise raises, all rooted at :class:`RedpromiseError`.

::

    RedpromiseError
    ├── ConfigurationError        bad settings, a namespace made with other settings, or
    │                             a Redis user without a right redpromise needs (NOPERM)
    ├── InvalidId                 (also ValueError) an id or group name we refuse to store
    ├── InvalidCron               (also ValueError) a cron expression we cannot read
    ├── PayloadError              (also ValueError) a value msgpack cannot carry
    │   └── PayloadTooLarge       an encoded payload over the configured limit
    ├── StoreUnavailable          Redis unreachable, timing out, or refusing for now
    │                             (BUSY, LOADING, MISCONF, READONLY, OOM, TRYAGAIN, …): retry
    ├── StoreError                Redis answered an error redpromise does not expect
    ├── CorruptRecord             a record in Redis that redpromise did not write
    ├── CrossSlot                 a Resonate request joining two promise families that
    │                             live in different Redis Cluster slots
    ├── PromiseNotFound           (also KeyError) no promise with this id
    ├── PromiseRejected           the promise was rejected; carries the remote error
    │   ├── PromiseCanceled       … by cancel()
    │   └── PromiseTimedOut       … because its timeout passed
    ├── LeaseLost                 a worker's execution was fenced out (another owns it)
    ├── ApplicationError          raise it in a function to choose retry behaviour
    └── NondeterminismError       a replay asked for a step other than the one recorded
"""

from __future__ import annotations

__all__ = [
    "ApplicationError",
    "ConfigurationError",
    "CorruptRecord",
    "CrossSlot",
    "InvalidCron",
    "InvalidId",
    "LeaseLost",
    "NondeterminismError",
    "PayloadError",
    "PayloadTooLarge",
    "PromiseCanceled",
    "PromiseNotFound",
    "PromiseRejected",
    "PromiseTimedOut",
    "RedpromiseError",
    "StoreError",
    "StoreUnavailable",
]


class RedpromiseError(Exception):
    """Root of every exception redpromise raises on purpose."""


class ConfigurationError(RedpromiseError):
    """Settings are invalid, disagree with those the namespace was created with, or the
    Redis user lacks a right redpromise needs (``NOPERM``, ``NOAUTH``, ``WRONGPASS``).

    ``reason`` is the error reply's code when Redis refused (else ``""``).
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class CrossSlot(RedpromiseError):
    """A protocol request joins two promise families whose keys live in different slots of
    a Redis Cluster (a callback or a fence across families): one script cannot touch both.
    """


class InvalidId(RedpromiseError, ValueError):
    """An id, group or function name that redpromise refuses before writing anything."""


class InvalidCron(RedpromiseError, ValueError):
    """A cron expression that :meth:`redpromise.core.cron.Cron.parse` refuses: it is
    malformed, uses a form we do not support, or never fires."""


class PayloadError(RedpromiseError, ValueError):
    """A value that cannot be encoded with msgpack, or stored bytes that cannot be decoded."""


class PayloadTooLarge(PayloadError):
    """An encoded payload is larger than ``Settings.max_payload_bytes``."""


class StoreUnavailable(RedpromiseError):
    """Redis could not be reached, did not answer in time, or refused for now.

    Raised for connection loss and timeouts, and for the error replies of a Redis that
    will accept the operation again once an operator or a failover fixes it: ``BUSY``,
    ``LOADING``, ``MISCONF``, ``READONLY``, ``OOM``, ``TRYAGAIN``, ``CLUSTERDOWN``,
    ``MASTERDOWN``. ``reason`` names the condition (the error reply's code, or
    ``ConnectionError`` / ``TimeoutError``).

    The operation may or may not have been applied; every redpromise operation is safe to
    repeat with the same id.
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class StoreError(RedpromiseError):
    """Redis refused an operation with an error reply redpromise does not expect.

    Not retryable as such: it points at a bug or at a server redpromise does not support.
    ``reason`` is the error reply's code (``ERR`` when it has none).
    """

    def __init__(self, message: str, reason: str = "") -> None:
        super().__init__(message)
        self.reason = reason


class CorruptRecord(RedpromiseError):
    """A promise record or stream entry in Redis that redpromise did not write."""


class PromiseNotFound(RedpromiseError, KeyError):
    """No promise with this id exists (never created, or expired after its retention)."""

    def __init__(self, id: str) -> None:
        super().__init__(id)
        self.id = id

    def __str__(self) -> str:
        return f"{self.id} not found"


class PromiseRejected(RedpromiseError):
    """The promise was rejected. ``type`` and ``message`` are those of the remote error."""

    def __init__(self, id: str, type: str, message: str) -> None:
        super().__init__(f"{type}: {message}" if type else message)
        self.id = id
        self.type = type
        self.message = message


class PromiseCanceled(PromiseRejected):
    """The promise was canceled (state ``rejected_canceled``)."""

    def __init__(self, id: str) -> None:
        super().__init__(id, "", "Promise canceled")


class PromiseTimedOut(PromiseRejected):
    """The promise's timeout passed before it completed (state ``rejected_timedout``)."""

    def __init__(self, id: str) -> None:
        super().__init__(id, "", "Promise timedout")


class LeaseLost(RedpromiseError):
    """A worker's write was refused: its execution no longer owns the promise.

    Raised inside a function when the fence refuses a checkpoint; the execution stops
    and its result is never recorded. Another execution, or a completion, won.
    """


class ApplicationError(RedpromiseError):
    """Raise from a registered function to reject with a chosen type, or without retries.

    ``non_retryable=True`` rejects the promise at once, whatever the retry policy says.
    """

    def __init__(
        self, message: str, *, type: str | None = None, non_retryable: bool = False
    ) -> None:
        super().__init__(message)
        self.message = message
        self.type = type or "ApplicationError"
        self.non_retryable = non_retryable


class NondeterminismError(RedpromiseError):
    """A replayed function asked for a different step than the one recorded at that point."""
