// Differential oracle for redpromise/store/protocol_schedules.py: runs requests through the
// Resonate reference server (class Server of the TypeScript SDK, network/local.js).
//
// Usage: TZ=UTC node oracle_schedules.mjs   (cron-parser computes in the local zone)
// Env:   RESONATE_NODE_MODULES  the node_modules holding @resonatehq/sdk (default /tmp/rs/node_modules)
// Input:  one scenario per line: [{"now": <ms>, "req": {"kind", "head", "data"}}, ...]
//         (a fresh Server per scenario)
// Output: one line per scenario: [{"status", "data", "fired": [<promise record>, ...]}, ...]
//         fired: the promises the step created (its promise.set changes)
import { createInterface } from "node:readline";
import path from "node:path";
import { pathToFileURL } from "node:url";

const modules = process.env.RESONATE_NODE_MODULES ?? "/tmp/rs/node_modules";
const local = path.join(modules, "@resonatehq/sdk/dist/src/network/local.js");
const { Server } = await import(pathToFileURL(local).href);

const out = [];
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line) continue;
  const server = new Server();
  const replies = [];
  for (const { now, req } of JSON.parse(line)) {
    const { response, changes } = server.apply(now, req);
    const fired = changes.filter((c) => c.kind === "promise.set").map((c) => c.promise);
    replies.push({ status: response.head.status, data: response.data, fired });
  }
  out.push(JSON.stringify(replies));
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
