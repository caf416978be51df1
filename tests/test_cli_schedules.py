"""``redpromise schedules list|get|create|delete`` (docs/cli.md), as real subprocesses on a
real redis-server: JSON compared exactly, exit codes as documented."""

from __future__ import annotations

import pytest

from redpromise import Redpromise
from tests.test_cli import Cli, cli, one_error_line, out_json, rp, table_rows

pytestmark = pytest.mark.real

__all__ = ["cli", "rp"]  # fixtures


async def test_schedules_create_get_list_delete_with_documented_exit_codes(
    rp: Redpromise, cli: Cli
) -> None:
    made = out_json(
        cli(
            "schedules", "create", "nightly", "0 3 * * *", "report",
            "--args", '[1, "two"]', "--kwargs", '{"x": 3}',
            "--target", "poll://any@reports", "--timeout", "90", "--json",
        )
    )  # fmt: skip
    created, next_run = made.pop("created_at"), made.pop("next_run_at")
    assert next_run > created and next_run % 86_400_000 == 3 * 3_600_000
    assert made == {
        "id": "nightly",
        "kind": "redpromise",
        "cron": "0 3 * * *",
        "function": "report",
        "group": "reports",
        "args": [1, "two"],
        "kwargs": {"x": 3},
        "timeout_ms": 90_000,
        "promise_id": "{{.id}}.{{.timestamp}}",
        "last_run_at": None,
    }
    stored = await rp.schedule_get("nightly")
    assert stored == {**made, "created_at": created, "next_run_at": next_run}
    # Create is idempotent by id: the stored schedule is printed, exit 0.
    again = out_json(cli("schedules", "create", "nightly", "* * * * *", "other", "--json"))
    assert again == stored
    await rp.schedule("b", "@hourly", "ping")
    listed = out_json(cli("schedules", "list", "--json"))
    assert [s["id"] for s in listed["schedules"]] == ["b", "nightly"]
    assert listed["schedules"][1] == stored
    assert out_json(cli("schedules", "get", "nightly", "--json")) == stored
    header, rows = table_rows(cli("schedules", "list"))
    assert header[:5] == ["ID", "KIND", "CRON", "FUNCTION", "GROUP"]
    assert [r[0] for r in rows] == ["b", "nightly"]
    header, rows = table_rows(cli("schedules", "get", "b"))
    assert header == ["FIELD", "VALUE"] and ["function", "ping"] in rows

    assert out_json(cli("schedules", "delete", "b", "--json")) == {"id": "b", "deleted": True}
    assert "'b' not found" in one_error_line(cli("schedules", "delete", "b"), 1)
    assert "'b' not found" in one_error_line(cli("schedules", "get", "b"), 1)
    assert [s["id"] for s in await rp.schedules()] == ["nightly"]

    assert "cron" in one_error_line(cli("schedules", "create", "c", "61 * * * *", "f"), 2)
    assert "JSON" in one_error_line(cli("schedules", "create", "c", "* * * * *", "f",
                                        "--args", "{oops"), 2)  # fmt: skip
    assert "array" in one_error_line(cli("schedules", "create", "c", "* * * * *", "f",
                                         "--args", "{}"), 2)  # fmt: skip
    assert "id" in one_error_line(cli("schedules", "create", "bad\nid", "* * * * *", "f"), 2)
    bad_timeout = cli("schedules", "create", "c", "* * * * *", "f", "--timeout", "-1")
    assert bad_timeout.returncode == 2 and "timeout" in bad_timeout.stderr
    assert await rp.schedule_get("c") is None
