"""The OpenAPI 3.1 description of the gateway routes (redpromise.aiohttp).

It states exactly what the gateway accepts and answers, so that a schema-driven fuzzer
finds no mismatch in either direction (tests/test_openapi_truth.py runs schemathesis
against a live gateway):

- a promise id is 1-512 UTF-8 *bytes* without control characters. JSON Schema counts
  characters, not bytes, so the schema says ``minLength: 1``, ``maxLength: 512`` (necessary:
  a character is at least one byte), a pattern refusing Unicode category Cc, and
  ``format: promise-id`` for the byte limit; the format is described under
  ``components.schemas.PromiseId``.
- numbers (bodies, ``timeout``) lie within +-1e308; a JSON value that redpromise stores
  travels as msgpack, so an integer beyond 64 bits reads as the nearest double.
- every status code an operation can answer is listed with its body; ``Retry-After`` is
  required on 503 and present on 200 while a promise is pending.
"""

from __future__ import annotations

from typing import Any

__all__ = ["ID_FORMAT", "openapi"]

ID_FORMAT = "promise-id"
"""The OpenAPI ``format`` of a promise id: 1-512 UTF-8 bytes, no control characters."""

_ERROR = {"$ref": "#/components/responses/Error"}

_ID_SCHEMA: dict[str, Any] = {
    "type": "string",
    "format": ID_FORMAT,
    "minLength": 1,
    "maxLength": 512,
    # Unicode category Cc: C0 controls, DEL and C1 controls.
    "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
    "description": (
        "A promise id: 1-512 bytes once UTF-8 encoded, any Unicode but control "
        "characters (category Cc: U+0000-U+001F, U+007F-U+009F)."
    ),
}

# The bound of every number the gateway reads, as an exact decimal.
_MAX_NUMBER = 1e308

_VALUE_SCHEMA: dict[str, Any] = {
    "description": (
        "Any JSON value. Numbers lie within +-1e308; an integer beyond 64 bits "
        "(outside [-2^63, 2^64-1]) is read as the nearest double, as JSON.parse does. "
        "Strings must be valid Unicode (no lone surrogates); nesting deeper than about "
        "900 levels is refused (400); the stored value is limited by "
        "Settings.max_payload_bytes (413)."
    ),
    "anyOf": [
        {"type": ["null", "boolean", "string"]},
        {"type": "number", "minimum": -_MAX_NUMBER, "maximum": _MAX_NUMBER},
        {"type": "array", "items": {"$ref": "#/components/schemas/Value"}},
        {"type": "object", "additionalProperties": {"$ref": "#/components/schemas/Value"}},
    ],
}

_OUTCOME_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "promise_id", "message"],
            "properties": {
                "status": {"const": "pending"},
                "promise_id": {"type": "string"},
                "message": {"type": "string"},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "promise_id", "result"],
            "properties": {
                "status": {"const": "resolved"},
                "promise_id": {"type": "string"},
                "result": {},
            },
        },
        {
            "type": "object",
            "additionalProperties": False,
            "required": ["status", "promise_id", "error"],
            "properties": {
                "status": {"const": "rejected"},
                "promise_id": {"type": "string"},
                "error": {"type": "string"},
                "error_type": {"type": "string"},
            },
        },
    ]
}

_REJECT_BODY: dict[str, Any] = {
    "description": 'the reason: {"error": "<message>"} or a JSON string',
    "oneOf": [
        {
            "type": "object",
            "required": ["error"],
            "properties": {"error": {"type": "string"}},
            # Other members are ignored, but must still be JSON the gateway reads.
            "additionalProperties": {"$ref": "#/components/schemas/Value"},
        },
        {"type": "string"},
    ],
}


def _json_content(schema: dict[str, Any]) -> dict[str, Any]:
    return {"application/json": {"schema": schema}}


def _op(
    summary: str,
    params: list[dict[str, Any]],
    secured: bool,
    responses: dict[str, Any],
    body: dict[str, Any] | None = None,
) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary, "parameters": params}
    if body is not None:
        op["requestBody"] = {
            "required": False,
            "description": body.get("description", "") + " (an empty body means the default)",
            "content": _json_content(body),
        }
    responses = {**responses, "502": _ERROR, "503": {"$ref": "#/components/responses/Retry"}}
    if secured:
        op["security"] = [{"bearer": []}]
        responses["401"] = {"$ref": "#/components/responses/Unauthorized"}
    op["responses"] = dict(sorted(responses.items()))
    return op


def openapi(
    prefix: str = "", function: str = "foo", secured: bool = False, metrics: bool = True
) -> dict[str, Any]:
    """The OpenAPI 3.1 document served at ``{prefix}/openapi.json``.

    ``secured``: the routes other than ``healthz`` and ``openapi.json`` require a bearer
    token (and may answer 401). ``metrics``: ``/metrics`` is served (prometheus-client is
    installed); without it the route does not exist and is not described.
    """
    id_required = {
        "name": "id",
        "in": "query",
        "required": True,
        "schema": {"$ref": "#/components/schemas/PromiseId"},
    }
    id_optional = {**id_required, "required": False, "description": "a UUID when absent"}
    timeout = {
        "name": "timeout",
        "in": "query",
        "required": False,
        "description": (
            "long-poll: seconds to wait for completion, a JSON number >= 0; the server "
            "caps it at its max_wait"
        ),
        "schema": {"type": "number", "minimum": 0, "maximum": _MAX_NUMBER},
    }
    outcome = {"200": {"$ref": "#/components/responses/Outcome"}, "404": _ERROR, "400": _ERROR}
    value = {"$ref": "#/components/schemas/Value"}
    paths: dict[str, Any] = {
        "/begin": {
            "post": _op(
                f"Create a promise and dispatch {function}(body) to the worker group",
                [id_optional],
                secured,
                {"200": {"$ref": "#/components/responses/Begun"}, "400": _ERROR, "413": _ERROR},
                body={**value, "description": "the function's argument"},
            )
        },
        "/wait": {
            "get": _op(
                "Read (or long-poll) a promise's outcome",
                [id_required, timeout],
                secured,
                outcome,
            )
        },
        "/resolve": {
            "post": _op(
                "Resolve a pending promise with the JSON body (empty: null)",
                [id_required],
                secured,
                {**outcome, "413": _ERROR},
                body={**value, "description": "the value"},
            )
        },
        "/reject": {
            "post": _op(
                'Reject a pending promise: {"error": message} or a JSON string',
                [id_required],
                secured,
                {**outcome, "413": _ERROR},
                body=_REJECT_BODY,
            )
        },
        "/cancel": {
            "post": _op("Cancel a pending promise", [id_required], secured, outcome),
        },
        "/healthz": {
            "get": {
                "summary": "Redis reachable",
                "responses": {
                    "200": {
                        "description": "Redis answers",
                        "content": _json_content(
                            {
                                "type": "object",
                                "additionalProperties": False,
                                "required": ["status"],
                                "properties": {"status": {"const": "ok"}},
                            }
                        ),
                    },
                    "503": {"$ref": "#/components/responses/Unhealthy"},
                },
            }
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics of this process and its target group's queue",
                "responses": {
                    "200": {
                        "description": "the Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                },
            }
        },
        "/openapi.json": {
            "get": {
                "summary": "This document",
                "responses": {
                    "200": {
                        "description": "an OpenAPI 3.1 document",
                        "content": _json_content({"type": "object"}),
                    }
                },
            }
        },
    }
    retry_after = {
        "description": "seconds to wait before trying again",
        "schema": {"type": "string", "pattern": "^[0-9]+$"},
    }
    error_schema = {
        "type": "object",
        "additionalProperties": False,
        "required": ["error"],
        "properties": {"error": {"type": "string"}},
    }
    if not metrics:
        del paths["/metrics"]
    elif secured:  # metrics are read with the token too; a Prometheus scrape can send it
        get = paths["/metrics"]["get"]
        get["security"] = [{"bearer": []}]
        unauthorized = {"401": {"$ref": "#/components/responses/Unauthorized"}}
        get["responses"] = dict(sorted({**get["responses"], **unauthorized}.items()))
    doc: dict[str, Any] = {
        "openapi": "3.1.0",
        "info": {"title": "redpromise gateway", "version": "1"},
        "paths": {f"{prefix}{p}": v for p, v in paths.items()},
        "components": {
            "schemas": {"PromiseId": _ID_SCHEMA, "Value": _VALUE_SCHEMA},
            "responses": {
                "Begun": {
                    "description": "the promise exists (created now or before)",
                    "content": _json_content(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["promise", "status", "wait"],
                            "properties": {
                                "promise": {"type": "string"},
                                "status": {"const": "pending"},
                                "wait": {"type": "string"},
                            },
                        }
                    ),
                },
                "Outcome": {
                    "description": (
                        "the promise's state (canceled and timed-out promises are rejected "
                        'with "Promise canceled" / "Promise timedout"); Retry-After while '
                        "pending"
                    ),
                    "headers": {"Retry-After": {**retry_after, "required": False}},
                    "content": _json_content(_OUTCOME_SCHEMA),
                },
                "Error": {
                    "description": "an error",
                    "content": _json_content(error_schema),
                },
                "Retry": {
                    "description": "Redis unavailable or refusing for now, or a right missing",
                    "headers": {"Retry-After": {**retry_after, "required": True}},
                    "content": _json_content(error_schema),
                },
                "Unauthorized": {
                    "description": "missing or wrong bearer token",
                    "headers": {
                        "WWW-Authenticate": {"required": True, "schema": {"const": "Bearer"}}
                    },
                    "content": _json_content(error_schema),
                },
                "Unhealthy": {
                    "description": "Redis does not answer",
                    "headers": {"Retry-After": {**retry_after, "required": True}},
                    "content": _json_content(
                        {
                            "type": "object",
                            "additionalProperties": False,
                            "required": ["status", "error"],
                            "properties": {
                                "status": {"const": "unavailable"},
                                "error": {"type": "string"},
                            },
                        }
                    ),
                },
            },
        },
    }
    if secured:
        doc["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    return doc
