"""The async-HTTP-API pattern for any aiohttp application (``pip install redpromise[aiohttp]``).

The public face of :mod:`redpromise.http` (routes, OpenAPI document and dashboard live
there): ``add_routes(app, rp, function, target=...)`` gives a service the gateway routes.
See :mod:`redpromise.http.gateway` for the routes and their status codes.
"""

from redpromise.http.gateway import Gateway
from redpromise.http.openapi import openapi
from redpromise.http.routes import GATEWAYS, REDPROMISE, add_routes

__all__ = ["GATEWAYS", "REDPROMISE", "Gateway", "add_routes", "openapi"]
