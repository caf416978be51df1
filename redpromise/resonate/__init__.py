"""The Resonate face: Resonate's protocol ``2026-04-01`` served from redpromise's store, so
the Resonate SDKs (TypeScript, Python) run on Redis (``redpromise serve``, docs/resonate.md).

Mount it in an aiohttp application with :func:`add_resonate_routes`, or run ``redpromise
serve``.
"""

from redpromise.resonate.server import ResonateFace, ServeOptions, add_resonate_routes

__all__ = ["ResonateFace", "ServeOptions", "add_resonate_routes"]
