// BullMQ on Node adapter (same protocol as _proto.py): queue.add, job.waitUntilFinished
// (QueueEvents), its normal result path. Run from bench/node so bullmq resolves.
import { createRequire } from "node:module";
import { fileURLToPath } from "node:url";
import path from "node:path";
const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, "..", "node", "package.json"));
const { Queue, Worker, QueueEvents } = require("bullmq");

const argv = process.argv.slice(2);
const role = argv[0];
const opt = (k, d) => { const i = argv.indexOf(`--${k}`); return i >= 0 ? argv[i + 1] : d; };
const url = new URL(opt("url"));
const connection = { host: url.hostname, port: Number(url.port), maxRetriesPerRequest: null };
const n = Number(opt("n", "1000")), mode = opt("mode", "throughput");
const conc = Number(opt("concurrency", "100")), windowSize = Number(opt("window", "500"));

if (role === "worker") {
  const w = new Worker("bench", async (job) => job.data.x + 1, { connection, concurrency: conc });
  await w.waitUntilReady();
  console.log("READY");
  process.on("SIGTERM", async () => { await w.close(); process.exit(0); });
} else {
  const q = new Queue("bench", { connection });
  const ev = new QueueEvents("bench", { connection });
  await ev.waitUntilReady();
  const begin = (i) => q.add("noop", { x: i });
  const result = (job) => job.waitUntilFinished(ev, 600000);
  for (let i = 0; i < 20; i++) await result(await begin(10000000 + i));
  const windowed = async (count, fn) => {
    let next = 0;
    const lane = async () => { while (next < count) { const i = next++; await fn(i); } };
    await Promise.all(Array.from({ length: Math.min(windowSize, count) }, lane));
  };
  const now = () => performance.now() / 1000;
  let out;
  if (mode === "latency") {
    const s = [];
    for (let i = 0; i < n; i++) {
      const t = now();
      const v = await result(await begin(i));
      s.push((now() - t) * 1000);
      if (v !== i + 1) throw new Error(`bad result ${v}`);
    }
    s.sort((a, b) => a - b);
    const p = (q) => s[Math.min(s.length - 1, Math.round(q * (s.length - 1)))];
    out = { p50_ms: p(0.5), p99_ms: p(0.99), mean_ms: s.reduce((a, b) => a + b, 0) / s.length, samples: n };
  } else {
    const jobs = new Array(n);
    const t0 = now();
    await windowed(n, async (i) => { jobs[i] = await begin(i); });
    const t1 = now();
    let bad = 0;
    await windowed(n, async (i) => { if ((await result(jobs[i])) !== i + 1) bad++; });
    const t2 = now();
    out = { n, jobs_per_s: n / (t2 - t0), total_s: t2 - t0, enqueue_s: t1 - t0,
            enqueue_per_s: n / (t1 - t0), wrong_results: bad };
  }
  console.log(JSON.stringify(out));
  await ev.close(); await q.close();
  process.exit(0);
}
