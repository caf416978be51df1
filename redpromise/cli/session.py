"""Opening a namespace for one CLI command, without ever creating one."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit, urlunsplit

from redpromise.client.client import DEFAULT_URL, Redpromise
from redpromise.core.options import Settings
from redpromise.redis.classify import translate_errors

__all__ = ["NamespaceNotFound", "open_namespace", "redact", "resolve_url"]


class NamespaceNotFound(LookupError):
    """No redpromise namespace of that name at that URL (exit 1)."""


def resolve_url(flag: str | None) -> str:
    """``--url``, else ``REDPROMISE_URL``, else the library's default."""
    return flag or os.environ.get("REDPROMISE_URL") or DEFAULT_URL


def redact(url: str) -> str:
    """``url`` without its password, for messages."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.hostname or ""
        netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
        return urlunsplit(parts._replace(netloc=netloc))
    except ValueError:
        return "<the Redis URL>"


@asynccontextmanager
async def open_namespace(url: str, namespace: str | None) -> AsyncIterator[Redpromise]:
    """A ready :class:`Redpromise` on an existing namespace, with its partition count
    read from the namespace (``REDPROMISE_PARTITIONS`` need not be set, nor right).

    Raises :class:`NamespaceNotFound` when the namespace holds no data: a CLI command
    must not create a namespace (a typo would pin one with default settings).
    """
    overrides = {"namespace": namespace} if namespace else {}
    settings = Settings.from_env(**overrides)
    rp = Redpromise(url, settings=settings)
    try:
        # The cluster client when the URL names a cluster node: the meta key may live on
        # another node. Then read what the namespace was made with, before _ready() pins it.
        await rp._detect_cluster()
        async with translate_errors():
            stored = await rp.redis.hget(rp.keys.meta, "partitions")
        if stored is None:
            raise NamespaceNotFound(
                f"no redpromise namespace {settings.namespace!r} at {redact(url)}"
            )
        if int(stored) != settings.partitions:
            await rp.stop()
            rp = Redpromise(url, settings=Settings.from_env(**overrides, partitions=int(stored)))
        await rp._ready()  # not start(): no worker, and no eviction warning per command
        yield rp
    finally:
        await rp.stop()
