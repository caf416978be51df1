"""services/gateway.py runs on uvloop when it is installed, as the worker CLI does."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.redis_server import free_port
from tests.services import GatewayProcess


@pytest.mark.skipif(not Path("/proc/self/maps").exists(), reason="reads /proc/<pid>/maps")
@pytest.mark.parametrize(("flag", "on_uvloop"), [("1", True), ("0", False)])
def test_gateway_runs_on_uvloop_unless_redpromise_uvloop_is_0(
    tmp_path: Path, flag: str, on_uvloop: bool
) -> None:
    pytest.importorskip("uvloop")
    # Redis down at startup is only a warning: the process listens all the same.
    url = f"redis://127.0.0.1:{free_port()}/0"
    gw = GatewayProcess(url, "loop", tmp_path, env={"REDPROMISE_UVLOOP": flag}).start()
    try:
        assert gw.proc is not None
        maps = Path(f"/proc/{gw.proc.pid}/maps").read_text()
        assert ("uvloop/loop." in maps) is on_uvloop
    finally:
        gw.close()
