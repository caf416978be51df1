"""What a Lua script call costs Redis before it does any work, in instructions.

    PYTHONPATH=. python bench/eval_cost.py [--n 2000]

Runs a private redis-server under valgrind's callgrind (as ``bench/script_cost.py
--callgrind``) and, for each probe, sends ``--n`` commands in pipelined batches of 100 and
prints the instructions Redis executed per command:

- ``PING`` and an ``EXISTS`` from the client: the floor of any command;
- ``EVALSHA`` of ``return 1`` with no arguments, then with 9 KEYS and 12 ARGV (acquire.lua's
  shape): the script call itself, and what each argument adds;
- the same script with one ``redis.call('EXISTS', KEYS[1])`` and with ten: what a command
  costs inside a script against the same command sent by a client;
- ``HMGET`` of 12 fields of a 12-field hash from the client and inside a script.

These are the fixed costs that ``bench/PROFILE.md`` weighs against the work of each
transition (why ``take`` amortises acquire's call over a partition's entries, and why the
Redis cost per promise cannot halve without dropping commands the guarantees need).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

import redis

sys.path.insert(0, str(Path(__file__).resolve().parent))

from script_cost import Callgrind, server

FIELDS = [f"f{i}" for i in range(12)]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", type=int, default=2000)
    a = p.parse_args()
    with server(callgrind=True, cluster_mode=False) as (_url, r, meter):
        assert meter is not None
        r.hset("h", mapping={f: "v" * 10 for f in FIELDS})
        noop = r.script_load("return 1")
        one = r.script_load("redis.call('EXISTS', KEYS[1]) return 1")
        ten = r.script_load("for i = 1, 10 do redis.call('EXISTS', KEYS[1]) end return 1")
        names = ", ".join(map(repr, FIELDS))
        hmget = r.script_load(f"redis.call('HMGET', KEYS[1], {names}) return 1")
        keys = ["h", *[f"k{i}" for i in range(8)]]
        args = ["a" * 10] * 12
        probes: list[tuple[str, list[object], int]] = [
            ("PING", ["PING"], 1),
            ("EXISTS (client)", ["EXISTS", "h"], 1),
            ("EVALSHA return 1, no arguments", ["EVALSHA", noop, 0], 1),
            ("EVALSHA return 1, 9 KEYS + 12 ARGV", ["EVALSHA", noop, 9, *keys, *args], 1),
            ("EVALSHA with 1 redis.call EXISTS", ["EVALSHA", one, 1, "h"], 1),
            ("EVALSHA with 10 redis.call EXISTS, per call", ["EVALSHA", ten, 1, "h"], 10),
            ("HMGET 12 fields (client)", ["HMGET", "h", *FIELDS], 1),
            ("EVALSHA with one HMGET of 12 fields", ["EVALSHA", hmget, 1, "h"], 1),
        ]
        for name, cmd, per in probes:
            print(f"| {name} | {measure(meter, r, cmd, a.n) / per:,.0f} |")


def measure(meter: Callgrind, r: redis.Redis, cmd: list[object], n: int) -> float:
    def run() -> None:
        for _ in range(0, n, 100):
            pipe = r.pipeline(transaction=False)
            for _ in range(100):
                pipe.execute_command(*cmd)
            pipe.execute()

    return timed(meter, run) / n


def timed(meter: Callgrind, fn: Callable[[], None]) -> float:
    meter.start()
    fn()
    return meter.stop()


if __name__ == "__main__":
    print("| probe | Redis instructions per command |")
    print("|---|---:|")
    main()
