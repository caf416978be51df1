"""Never silently stuck: every error reply a production Redis gives, on a real worker.

Each test runs one real worker process (tests/workers.py) and the real gateway on a
private redis-server, puts the server into one condition (tests/faults.py says how),
probes while it lasts, undoes it, and checks that:

- public calls raise the typed error (``StoreUnavailable``, or ``ConfigurationError``
  for NOPERM), never a raw redis-py error; the gateway answers 503 with ``Retry-After``
  and a JSON ``{"error": ...}``;
- the worker logs a WARNING (or an ERROR) naming the cause, rate-limited; its
  ``/healthz`` still answers 200 (an outage is not a liveness failure) and names the
  last Redis error of the loops that met it (under OOM only the function's checkpoint
  does: no loop sends a command OOM refuses);
- within a few seconds of recovery the *same* worker process serves a new promise,
  the promise it was running when the fault hit ends resolved, it logs ``recovered``,
  and no process exited.
"""

from __future__ import annotations

import json
from pathlib import Path

import aiohttp
import pytest

from redpromise import ConfigurationError, StoreUnavailable
from tests.faults import FAULTS, Fault, Observation, first_word, run_scenario
from tests.helpers import assert_eventually
from tests.procs import WorkerProcess
from tests.redis_server import free_port

pytestmark = pytest.mark.real

# "Within a few seconds of recovery": from the moment the server stops answering with
# the error to the first new promise completed by the same worker.
SERVED_WITHIN = 5.0
# One warning per loop when it starts failing, rate-limited while it lasts (~2 s here).
MAX_WARNINGS = 10


def assert_never_stuck(obs: Observation, fault: type[Fault]) -> None:
    failed = [c for c in obs.calls if c != "ok"]
    if fault.error is not None:
        assert failed, f"no public call failed while {fault.name} lasted: {obs.calls}"
        assert {first_word(c) for c in failed} == {fault.error.__name__}, failed
        assert obs.gateway_status == 503, (obs.gateway_status, obs.gateway_body)
        assert obs.gateway_retry_after is not None and int(obs.gateway_retry_after) > 0
        assert isinstance(obs.gateway_body, dict) and "error" in obs.gateway_body
        # The gateway was asked ~10 times a second: it must not log each refusal.
        assert any(fault.cause in w for w in obs.gateway_warnings()), obs.gateway_log
        assert len(obs.gateway_warnings()) <= MAX_WARNINGS, "\n".join(obs.gateway_warnings())
    else:  # the data is gone, the server is fine: nothing to refuse
        assert {first_word(c) for c in failed} <= {"PromiseNotFound"}, failed

    named = [w for w in obs.alerts() if fault.cause in w]
    assert named, f"no worker WARNING (or worse) names {fault.cause}:\n{obs.log_during}"
    assert len(obs.warnings()) <= MAX_WARNINGS, "\n".join(obs.warnings())
    # Every reply here is one a production Redis gives: none may be logged as unexpected.
    unexpected = [ln for ln in obs.alerts() if "does not expect" in ln]
    assert not unexpected, "\n".join(unexpected)
    assert obs.health_during is not None, "worker /healthz unreachable during the fault"
    assert obs.health_during[0] == 200, obs.health_during
    if fault.error is not None and fault.loops_fail:
        assert fault.cause in json.dumps(obs.health_during[1]), obs.health_during

    assert obs.worker_exit is None, f"the worker exited with {obs.worker_exit}"
    assert obs.served_by == obs.worker_pid, (
        f"no new promise served by worker {obs.worker_pid} within 10 s of recovery "
        f"(served by {obs.served_by}):\n{obs.log_after}"
    )
    assert obs.served_after is not None and obs.served_after < SERVED_WITHIN, obs.served_after
    if fault.keeps_data:
        assert obs.inflight == f"resolved by {obs.worker_pid}", obs.inflight
    if fault.loops_fail:
        assert obs.recovered_lines(), f"no INFO 'recovered' line:\n{obs.log_after}"
    assert obs.gateway_after == 200
    assert obs.health_after is not None and obs.health_after[0] == 200, obs.health_after


async def test_misconf_gives_store_unavailable_then_the_same_worker_serves(
    tmp_path: Path,
) -> None:
    assert FAULTS["MISCONF"].error is StoreUnavailable
    assert_never_stuck(await run_scenario(FAULTS["MISCONF"], tmp_path), FAULTS["MISCONF"])


async def test_readonly_failover_and_back_gives_store_unavailable_then_the_same_worker_serves(
    tmp_path: Path,
) -> None:
    assert_never_stuck(await run_scenario(FAULTS["READONLY"], tmp_path), FAULTS["READONLY"])


async def test_busy_script_gives_store_unavailable_then_the_same_worker_serves(
    tmp_path: Path,
) -> None:
    assert_never_stuck(await run_scenario(FAULTS["BUSY"], tmp_path), FAULTS["BUSY"])


async def test_loading_gives_store_unavailable_then_the_same_worker_serves(
    tmp_path: Path,
) -> None:
    assert_never_stuck(await run_scenario(FAULTS["LOADING"], tmp_path), FAULTS["LOADING"])


async def test_oom_gives_store_unavailable_then_the_same_worker_serves(tmp_path: Path) -> None:
    assert_never_stuck(await run_scenario(FAULTS["OOM"], tmp_path), FAULTS["OOM"])


async def test_flushall_mid_run_the_same_worker_recreates_its_groups_and_serves(
    tmp_path: Path,
) -> None:
    assert_never_stuck(await run_scenario(FAULTS["FLUSHALL"], tmp_path), FAULTS["FLUSHALL"])


async def test_noperm_gives_configuration_error_then_the_same_worker_serves(
    tmp_path: Path,
) -> None:
    assert FAULTS["NOPERM"].error is ConfigurationError
    assert_never_stuck(await run_scenario(FAULTS["NOPERM"], tmp_path), FAULTS["NOPERM"])


async def test_noperm_on_scripts_only_loses_no_entry_and_the_same_worker_serves(
    tmp_path: Path,
) -> None:
    fault = FAULTS["NOPERM-SCRIPTS"]
    assert_never_stuck(await run_scenario(fault, tmp_path), fault)


async def test_health_port_flag_serves_per_loop_status_as_json(
    real_url: str, namespace: str, tmp_path: Path
) -> None:
    port = free_port()
    worker = WorkerProcess(real_url, namespace, tmp_path, args=["--health-port", str(port)])
    try:
        worker.start()

        async def healthy() -> object:
            async with (
                aiohttp.ClientSession() as http,
                http.get(f"http://127.0.0.1:{port}/healthz") as resp,
            ):
                return (
                    resp.status == 200
                    and resp.content_type == "application/json"
                    and (await resp.json())
                )

        body = await assert_eventually(healthy, timeout=10)
        assert isinstance(body, dict), body
        assert "read" in json.dumps(body), f"no per-loop status (read loop) in {body}"
    finally:
        worker.close()
