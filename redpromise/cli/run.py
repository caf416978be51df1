"""Running one parsed command: the namespace opened, errors turned into exit codes and
one line on stderr."""

from __future__ import annotations

import argparse
import asyncio
import sys

from redpromise.cli.ops import EXIT_REFUSED
from redpromise.cli.output import UsageError
from redpromise.cli.schedules import ScheduleNotFound
from redpromise.cli.session import NamespaceNotFound, open_namespace, redact, resolve_url
from redpromise.client.inspect import DeadRecordNotFound, NotRequeueable
from redpromise.core.errors import (
    ConfigurationError,
    PromiseNotFound,
    RedpromiseError,
    StoreUnavailable,
)

__all__ = ["run"]


async def _command(args: argparse.Namespace, url: str) -> int:
    async with open_namespace(url, args.namespace) as rp:
        code: int = await args.run(rp, args)
        return code


def _fail(code: int, message: str) -> int:
    print(f"redpromise: {' '.join(message.split())}", file=sys.stderr)
    return code


def run(args: argparse.Namespace) -> int:
    url = resolve_url(args.url)
    try:
        return asyncio.run(_command(args, url))
    except (PromiseNotFound, NamespaceNotFound, DeadRecordNotFound, ScheduleNotFound) as exc:
        message = f"promise {exc.id!r} not found" if isinstance(exc, PromiseNotFound) else exc
        return _fail(1, str(message))
    except StoreUnavailable as exc:
        return _fail(3, f"{exc} (at {redact(url)})")
    # Wrong credentials or a missing right will not fix themselves: retrying is useless,
    # the command line or the deployment must change. Hence 2, not 3.
    except (UsageError, ConfigurationError, ValueError) as exc:
        return _fail(2, str(exc))
    except (NotRequeueable, RedpromiseError) as exc:
        return _fail(EXIT_REFUSED, f"{type(exc).__name__}: {exc}")
