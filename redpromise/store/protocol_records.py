"""Request validation, stored texts and reply records of the Resonate protocol face.

Pure functions (no I/O) used by :mod:`redpromise.store.protocol`: a request's fields are
checked here (:class:`BadRequest` carries the 400 reply's text), the SDK's JSON is made
into the texts the scripts store once (never re-encoded by Lua), and the raw fields a
script returns are made into the protocol's records.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from redpromise.core.codec import as_text, encode, encode_error
from redpromise.core.errors import InvalidId, PayloadError, PayloadTooLarge
from redpromise.core.keys import validate_group, validate_id

__all__ = [
    "SETTLE_STATES",
    "TIMED_OUT_VALUE",
    "TIMER_VALUE",
    "BadRequest",
    "CreateArgs",
    "SettleArgs",
    "dumps",
    "group_of",
    "js_number",
    "json_param",
    "promise_record",
    "redpromise_value",
    "task_record",
]

SETTLE_STATES = ("resolved", "rejected", "rejected_canceled")
"""The states promise.settle and task.fulfill may ask for."""

_SAFE = 2**53  # integers Lua's doubles (and JavaScript's) hold exactly
_NO_LIMIT = sys.maxsize  # the protocol value is stored anyway; its redpromise copy too
_ADDRESS = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://(?:any|uni)@([^/]+)")
_ERROR_TYPES = {
    "rejected": "Error",
    "rejected_canceled": "PromiseCanceled",
    "rejected_timedout": "PromiseTimedOut",
}
_MAX_TYPE_NAME = 200  # characters of an SDK error's class name kept as redpromise's type
_ERROR_DEFAULTS = {
    "rejected": "Promise rejected",
    "rejected_canceled": "Promise canceled",
    "rejected_timedout": "Promise timedout",
}

TIMED_OUT_VALUE = encode_error("PromiseTimedOut", "Promise timedout", _NO_LIMIT)
"""redpromise's value of a promise that timed out (the same as a redpromise timeout's)."""
TIMER_VALUE = encode(None, _NO_LIMIT)
"""redpromise's value of a timer promise that fired (resolved, no value)."""


class BadRequest(Exception):
    """A request the protocol refuses with 400; ``str(exc)`` is the reply's text."""


def dumps(value: Any) -> str:
    """The one JSON text of a value the scripts store (compact, as given)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- field checks ---------------------------------------------------------------------


def need_object(data: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(data, Mapping):
        raise BadRequest(f"{where} must be an object")
    return data


def need_str(data: Mapping[str, Any], name: str, where: str = "data") -> str:
    v = data.get(name)
    if not isinstance(v, str):
        raise BadRequest(f"{where}.{name} must be a string")
    return v


def need_id(data: Mapping[str, Any], name: str, where: str = "data") -> str:
    v = need_str(data, name, where)
    try:
        return validate_id(v)
    except InvalidId as exc:
        raise BadRequest(f"{where}.{name}: {exc}") from exc


def need_int(data: Mapping[str, Any], name: str, where: str = "data") -> int:
    v = data.get(name)
    if isinstance(v, float) and v.is_integer():
        v = int(v)
    if not isinstance(v, int) or isinstance(v, bool) or not -_SAFE < v < _SAFE:
        raise BadRequest(f"{where}.{name} must be an integer (|n| < 2^53)")
    return v


def need_value(data: Mapping[str, Any], name: str, where: str = "data") -> Mapping[str, Any]:
    v = data.get(name)
    if not isinstance(v, Mapping):
        raise BadRequest(f"{where}.{name} must be an object {{headers?, data?}}")
    headers = v.get("headers")
    if headers is not None and not isinstance(headers, Mapping):
        raise BadRequest(f"{where}.{name}.headers must be an object")
    return v


def need_tags(data: Mapping[str, Any], where: str = "data") -> Mapping[str, str]:
    tags = data.get("tags")
    if not isinstance(tags, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in tags.items()
    ):
        raise BadRequest(f"{where}.tags must be an object of strings")
    return tags


def need_list(data: Mapping[str, Any], name: str, where: str = "data") -> Sequence[Any]:
    v = data.get(name)
    if not isinstance(v, list):
        raise BadRequest(f"{where}.{name} must be an array")
    return v


# -- derived fields -----------------------------------------------------------------------


def js_number(text: str) -> float:
    """``Number(text)`` as JavaScript computes it for a string (NaN when not a number)."""
    s = text.strip(" \t\n\r\v\f\u00a0\u2028\u2029\ufeff")
    if s == "":
        return 0.0
    if re.fullmatch(r"[+-]?Infinity", s):
        return -math.inf if s[0] == "-" else math.inf
    if re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", s):
        return float(s)
    for prefix, base in (("0x", 16), ("0o", 8), ("0b", 2)):
        if s[:2].lower() == prefix:
            try:
                return float(int(s[2:], base))
            except ValueError:
                return math.nan
    return math.nan


def _number_text(n: float) -> str:
    return str(int(n)) if n.is_integer() else repr(n)


def group_of(target: str) -> str:
    """redpromise's ``group`` of a target address (``poll://any@G/P`` -> G), else ''."""
    m = _ADDRESS.match(target)
    if m is None:
        return ""
    try:
        return validate_group(m.group(1))
    except InvalidId:
        return ""


def _decoded(value: Mapping[str, Any] | None) -> tuple[bool, Any]:
    """(True, JSON) when the SDK value's data is base64 of JSON; (True, None) without
    data; (False, None) when it is not decodable."""
    if value is None or value.get("data") is None:
        return True, None
    data = value.get("data")
    if not isinstance(data, str):
        return False, None
    try:
        return True, json.loads(base64.b64decode(data, validate=True))
    except (binascii.Error, ValueError, RecursionError):  # deeper than Python's parser goes
        return False, None


def func_of(param: Mapping[str, Any] | None) -> str:
    """The SDK function name a param carries (``{func, args, version}``), else ''."""
    ok, v = _decoded(param)
    if ok and isinstance(v, dict) and isinstance(v.get("func"), str):
        return str(v["func"])
    return ""


def call_of_param(param_text: str | bytes | None) -> dict[str, Any] | None:
    """A stored protocol param (``rs_param``) shaped as redpromise shows arguments
    (``{"args": [...], "kwargs": {}}``, as :func:`redpromise.core.codec.call_of`): the SDK's
    ``args`` when the data decodes as ``{func, args}``, else ``[<the decoded JSON>]``;
    ``None`` when there is none or it does not decode."""
    if not param_text:
        return None
    try:
        param = json.loads(param_text)
    except ValueError:
        return None
    ok, v = _decoded(param) if isinstance(param, dict) else (False, None)
    if not ok or v is None:
        return None
    if isinstance(v, dict) and isinstance(v.get("func"), str):
        args = v.get("args", [])
        return {"args": args if isinstance(args, list) else [args], "kwargs": {}}
    return {"args": [v], "kwargs": {}}


def redpromise_value(state: str, value: Mapping[str, Any] | None) -> bytes:
    """redpromise's stored outcome of a protocol value, so ``Redpromise.result()`` reads
    it: resolved -> the decoded JSON; rejected* -> an error whose message is the SDK
    error's ``message`` (or the JSON's text) and whose type is the SDK error's ``name``
    for a plain rejection; undecodable -> the value's JSON text."""
    ok, v = _decoded(value)
    raw = dumps(value) if value is not None else ""
    if state == "resolved":
        try:
            return encode(v if ok else raw, _NO_LIMIT)
        except PayloadError:
            return encode(raw, _NO_LIMIT)
    type_name = _ERROR_TYPES.get(state, "Error")
    if state == "rejected" and isinstance(v, dict) and v.get("__type") == "error":
        # The SDKs' error value names the thrown class: keep it (bounded: remote text).
        name = v.get("name")
        if isinstance(name, str) and 0 < len(name) <= _MAX_TYPE_NAME:
            type_name = name
    if not ok:
        message = raw
    elif v is None:
        message = _ERROR_DEFAULTS.get(state, "")
    elif isinstance(v, dict) and isinstance(v.get("message"), str):
        message = str(v["message"])
    else:
        try:
            message = v if isinstance(v, str) else dumps(v)
        except (ValueError, RecursionError):  # NaN-free JSON text cannot always be made
            message = raw
    try:
        return encode_error(type_name, message, _NO_LIMIT)
    except PayloadError:  # a lone surrogate: the value's own JSON text is plain ASCII
        return encode_error(type_name, raw, _NO_LIMIT)


def json_param(
    name: str, args: Sequence[Any], kwargs: Mapping[str, Any], limit: int
) -> dict[str, Any]:
    """The protocol ``param`` of the call ``name(*args)``: ``{headers: {}, data:
    base64(JSON {func, args, version: 1})}``, what the SDKs' ``beginRpc`` stores. Raises
    :class:`PayloadError` naming why when the call is not JSON (keyword arguments, a value
    JSON cannot carry, NaN or an infinity) and :class:`PayloadTooLarge` over ``limit``."""
    if kwargs:
        raise PayloadError(
            f"a JSON call takes positional arguments only (Resonate functions have no keyword "
            f"arguments): got {', '.join(sorted(kwargs))}"
        )
    try:
        text = json.dumps(
            {"func": name, "args": list(args), "version": 1},
            allow_nan=False,
            separators=(",", ":"),
            ensure_ascii=False,
        )
    except (TypeError, ValueError) as exc:
        raise PayloadError(f"the arguments of {name!r} are not JSON: {exc}") from exc
    data = base64.b64encode(text.encode("utf-8")).decode("ascii")
    if len(data) > limit:
        raise PayloadTooLarge(f"encoded payload is {len(data)} bytes; the limit is {limit}")
    return {"headers": {}, "data": data}


@dataclass(frozen=True, slots=True)
class CreateArgs:
    """A validated promise.create's data, as rs_create.lua's ten ARGV."""

    id: str
    timeout_at: int
    param: str  # '' = absent (task.create stores the record without one)
    tags: str
    target: str
    timer: bool
    external: bool
    branch: str
    delay: str  # resonate:delay as a number's text, '' unless finite
    group: str
    func: str

    @classmethod
    def parse(cls, data: Any, where: str = "data", *, default_param: bool = True) -> CreateArgs:
        data = need_object(data, where)
        id = need_id(data, "id", where)
        timeout_at = need_int(data, "timeoutAt", where)
        tags = need_tags(data, where)
        param: Mapping[str, Any] | None = None
        if "param" in data:
            param = need_value(data, "param", where)
        target = tags.get("resonate:target", "")
        delay = js_number(tags["resonate:delay"]) if "resonate:delay" in tags else math.nan
        return cls(
            id=id,
            timeout_at=timeout_at,
            param=dumps(param) if param is not None else ("{}" if default_param else ""),
            tags=dumps(tags),
            target=target,
            timer=tags.get("resonate:timer") == "true",
            external=(
                tags.get("resonate:scope") == "global"
                or tags.get("resonate:external") == "true"
                or "resonate:target" in tags
                or tags.get("resonate:timer") == "true"
            ),
            branch=tags.get("resonate:branch", ""),
            delay=_number_text(delay) if math.isfinite(delay) else "",
            group=group_of(target),
            func=func_of(param),
        )

    def argv(self) -> list[str]:
        return [
            str(self.timeout_at),
            self.param,
            self.tags,
            self.target,
            "1" if self.timer else "0",
            "1" if self.external else "0",
            self.branch,
            self.delay,
            self.group,
            self.func,
        ]


@dataclass(frozen=True, slots=True)
class SettleArgs:
    """A validated promise.settle's data, as rs_settle_req's three ARGV."""

    id: str
    state: str
    value: str
    rp_value: bytes

    @classmethod
    def parse(cls, data: Any, where: str = "data") -> SettleArgs:
        data = need_object(data, where)
        id = need_id(data, "id", where)
        state = data.get("state")
        if state not in SETTLE_STATES:
            raise BadRequest(f"{where}.state must be one of {', '.join(SETTLE_STATES)}")
        value = need_value(data, "value", where)
        return cls(id, str(state), dumps(value), redpromise_value(str(state), value))

    def argv(self) -> list[str | bytes]:
        return [self.state, self.value, self.rp_value]


# -- records ---------------------------------------------------------------------------------


def _num(raw: Any) -> int | float:
    text = as_text(raw)
    try:
        return int(text)
    except ValueError:
        f = float(text)
        return int(f) if f.is_integer() else f


def promise_record(raw: Sequence[Any]) -> dict[str, Any]:
    """A promise record from rs_core.lua's rs_raw fields: id, state, param, value, tags,
    timeout_at, created_at, completed_at ('' = absent)."""
    rec: dict[str, Any] = {"id": as_text(raw[0]), "state": as_text(raw[1])}
    if raw[2]:
        rec["param"] = json.loads(raw[2])
    if raw[3]:
        rec["value"] = json.loads(raw[3])
    rec["tags"] = json.loads(raw[4])
    rec["timeoutAt"] = _num(raw[5])
    rec["createdAt"] = _num(raw[6])
    if raw[7]:
        rec["settledAt"] = _num(raw[7])
    return rec


def task_record(raw: Sequence[Any]) -> dict[str, Any]:
    """A task record from rs_core.lua's rs_task_raw fields: id, state, version, pid, ttl
    ('' = absent), resumes."""
    rec: dict[str, Any] = {
        "id": as_text(raw[0]),
        "version": _num(raw[2]),
        "state": as_text(raw[1]),
        "resumes": sorted(as_text(r) for r in raw[5]),
    }
    if raw[3]:
        rec["pid"] = as_text(raw[3])
    if raw[4]:
        rec["ttl"] = _num(raw[4])
    return rec
