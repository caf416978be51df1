"""The dashboard's read-only schedules list (``/ui/api/schedules``): both kinds, behind the
gateway's token."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from redpromise import Redpromise
from redpromise.aiohttp import add_routes
from redpromise.store.protocol_schedules import ProtocolSchedules
from tests.test_dashboard_api import Client, serve

MakeRp = Callable[..., Awaitable[Redpromise]]

__all__ = ["serve"]  # fixture


async def test_the_schedules_list_shows_both_kinds_and_needs_the_token(
    make_rp: MakeRp, serve: Callable[[web.Application], Awaitable[Client]]
) -> None:
    rp = await make_rp(group="gateway")
    ours = await rp.schedule("ours", "*/5 * * * *", "report", 7, target="reports")
    status, _ = await ProtocolSchedules(rp.store).apply(
        "schedule.create",
        {
            "id": "theirs",
            "cron": "@daily",
            "promiseId": "theirs.{{.timestamp}}",
            "promiseTimeout": 1000,
            "promiseTags": {"resonate:target": "poll://any@g"},
        },
        None,
    )
    assert status == 200
    app = web.Application()
    add_routes(app, rp, "report", token="t")
    client = await serve(app)
    assert (await client.get("/ui/api/schedules")).status == 401
    resp = await client.get("/ui/api/schedules", headers={"Authorization": "Bearer t"})
    assert resp.status == 200
    listed = (await resp.json())["schedules"]
    assert [s["id"] for s in listed] == ["ours", "theirs"]
    assert listed[0] == ours
    assert (listed[1]["kind"], listed[1]["cron"], listed[1]["group"]) == (
        "protocol",
        "@daily",
        "poll://any@g",
    )
    page = await (await client.get("/ui")).text()
    assert 'id="schedules"' in page
