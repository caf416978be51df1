// The seed's flow as a benchmark, on the TypeScript Resonate SDK: one process plays the
// gateway (beginRpc "foo" on poll://any@worker, then result()), keeping `window` promises in
// flight; the worker is another process (worker.mjs). Prints one JSON line of figures.
// A postgres:// <url> runs the same flow on resonate-pg through @resonatehq/sdk/postgres.
//
//   node flow.mjs <url> <count> <window> <steps> [<warmup>]
//
// The same program measures `redpromise serve`, the SDK's own in-memory server (the
// ceiling of the SDK itself) and any other Resonate server: only <url> changes.
import { Resonate } from "@resonatehq/sdk";

const [url, countArg, windowArg, stepsArg, warmupArg] = process.argv.slice(2);
const count = Number(countArg ?? 2000);
const window = Number(windowArg ?? 100);
const steps = Number(stepsArg ?? 0);
const warmup = Number(warmupArg ?? 200);
const run = `${process.pid}-${Date.now()}`;

// A postgres:// url: Resonate's Postgres connector (resonate-pg) instead of a server.
const resonate = url.startsWith("postgres")
  ? new Resonate({
      group: "gateway",
      network: new (await import("@resonatehq/sdk/postgres")).PostgresNetwork({
        connectionString: url,
        group: "gateway",
      }),
    })
  : new Resonate({ url, group: "gateway" });

async function one(i, latencies) {
  const started = performance.now();
  const handle = await resonate.beginRpc(
    `bench-${run}-${i}`,
    "foo",
    { steps, i },
    resonate.options({ target: "poll://any@worker" }),
  );
  await handle.result();
  if (latencies) latencies.push(performance.now() - started);
}

async function phase(n, offset, latencies) {
  let next = 0;
  const lanes = [];
  for (let w = 0; w < Math.min(window, n); w++) {
    lanes.push(
      (async () => {
        while (next < n) {
          const i = next++;
          await one(offset + i, latencies);
        }
      })(),
    );
  }
  await Promise.all(lanes);
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

await phase(warmup, 0, null);
const latencies = [];
const t0 = performance.now();
await phase(count, warmup, latencies);
const seconds = (performance.now() - t0) / 1000;
latencies.sort((a, b) => a - b);
console.log(
  JSON.stringify({
    count,
    window,
    steps,
    seconds: Number(seconds.toFixed(3)),
    per_second: Number((count / seconds).toFixed(1)),
    p50_ms: Number(pct(latencies, 50).toFixed(2)),
    p99_ms: Number(pct(latencies, 99).toFixed(2)),
  }),
);
await resonate.stop();
process.exit(0);
