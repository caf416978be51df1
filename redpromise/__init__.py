"""redpromise: durable promises and durable dispatch for Python services, on Redis.

A stateless process creates a promise and dispatches a named function to a worker group
in one atomic write (:meth:`Redpromise.begin_rpc`); any worker of the group runs it,
checkpointing each step (``ctx.run``); anyone re-attaches by id (:meth:`Redpromise.get`)
and reads the outcome — after any process, or all of them, restarted.
"""

from redpromise.cli.runner import run_worker
from redpromise.client.client import Handle, PromiseInfo, Redpromise, SearchPage
from redpromise.core.errors import (
    ApplicationError,
    ConfigurationError,
    CorruptRecord,
    CrossSlot,
    InvalidCron,
    InvalidId,
    LeaseLost,
    NondeterminismError,
    PayloadError,
    PayloadTooLarge,
    PromiseCanceled,
    PromiseNotFound,
    PromiseRejected,
    PromiseTimedOut,
    RedpromiseError,
    StoreError,
    StoreUnavailable,
)
from redpromise.core.options import (
    Constant,
    Exponential,
    Linear,
    Never,
    Options,
    RetryPolicy,
    Settings,
)
from redpromise.worker.context import Context

__all__ = [
    "ApplicationError",
    "ConfigurationError",
    "Constant",
    "Context",
    "CorruptRecord",
    "CrossSlot",
    "Exponential",
    "Handle",
    "InvalidCron",
    "InvalidId",
    "LeaseLost",
    "Linear",
    "Never",
    "NondeterminismError",
    "Options",
    "PayloadError",
    "PayloadTooLarge",
    "PromiseCanceled",
    "PromiseInfo",
    "PromiseNotFound",
    "PromiseRejected",
    "PromiseTimedOut",
    "Redpromise",
    "RedpromiseError",
    "RetryPolicy",
    "SearchPage",
    "Settings",
    "StoreError",
    "StoreUnavailable",
    "run_worker",
]

__version__ = "0.1.0"
