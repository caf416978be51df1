// The seed's worker (group "worker"): registers the generator `foo(ctx, data)`, which does
// `data.steps` (default 2) checkpointed steps with ctx.run, then returns
// {result: "Processed: <JSON of data.input ?? data>", steps: [...]}, or throws
// new Error(data.fail) after the steps when data.fail is a string.
// Each step appends {"id", "step", "pid"} as a JSON line to the file in env STEP_LEDGER
// (when set) BEFORE it returns, so a test counts executions of every step; data.stepMs
// makes each step sleep that many milliseconds first (a window to kill the worker in).
// Env: RESONATE_URL (the server), RESONATE_TOKEN (optional), WORKER_PID (optional pid),
// WORKER_TTL_MS (the task lease, default the SDK's 60 s; short in crash tests so a killed
// worker's task is offered again soon).
// Prints READY once registered.
import { appendFileSync } from "node:fs";
import { Resonate } from "@resonatehq/sdk";

const LEDGER = process.env.STEP_LEDGER || "";

const resonate = new Resonate({
  url: process.env.RESONATE_URL,
  group: "worker",
  pid: process.env.WORKER_PID || undefined,
  token: process.env.RESONATE_TOKEN || undefined,
  ttl: process.env.WORKER_TTL_MS ? Number(process.env.WORKER_TTL_MS) : undefined,
});

async function step(_ctx, id, k, stepMs) {
  if (stepMs > 0) await new Promise((resolve) => setTimeout(resolve, stepMs));
  if (LEDGER) appendFileSync(LEDGER, `${JSON.stringify({ id, step: k, pid: process.pid })}\n`);
  return `step ${k} done`;
}

function* foo(ctx, data) {
  const d = data ?? {};
  const n = Number.isInteger(d.steps) ? d.steps : 2;
  const stepMs = typeof d.stepMs === "number" ? d.stepMs : 0;
  const steps = [];
  for (let k = 1; k <= n; k++) {
    steps.push(yield* ctx.run(step, ctx.id, k, stepMs));
  }
  if (typeof d.fail === "string") throw new Error(d.fail);
  return { result: `Processed: ${JSON.stringify(d.input ?? data)}`, steps };
}

resonate.register("foo", foo);

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    resonate.stop().finally(() => process.exit(0));
  });
}
console.log("READY");
