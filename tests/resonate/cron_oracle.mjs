// Differential oracle for redpromise/core/cron.py: answers with the npm package cron-parser,
// the library the Resonate reference server computes schedule times with.
//
// Usage: TZ=UTC node cron_oracle.mjs   (cron-parser works in the process's local zone)
// Env:   RESONATE_NODE_MODULES  the node_modules holding cron-parser (default /tmp/rs/node_modules)
// Input:  one JSON object per line: {"cron": <string>, "starts": [<ms>, ...]}
// Output: one JSON object per line, in order:
//   {"ok": true, "nexts": [<ms>, ...]}  parse(cron, {currentDate: start}).next() per start
//   {"ok": false}                       parse or the first next() threw (the reference's 400)
//   {"ok": "mixed", "nexts": [...]}     next() threw for some starts only
import { createRequire } from "node:module";
import { createInterface } from "node:readline";
import path from "node:path";

const modules = process.env.RESONATE_NODE_MODULES ?? "/tmp/rs/node_modules";
const require = createRequire(import.meta.url);
const { CronExpressionParser } = require(path.join(modules, "cron-parser"));

function nextOf(cron, start) {
  try {
    return CronExpressionParser.parse(cron, { currentDate: new Date(start) }).next().getTime();
  } catch {
    return null;
  }
}

const out = [];
const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of rl) {
  if (!line) continue;
  const { cron, starts } = JSON.parse(line);
  const nexts = starts.map((s) => nextOf(cron, s));
  const failed = nexts.filter((n) => n === null).length;
  if (failed === nexts.length) out.push(JSON.stringify({ ok: false }));
  else if (failed > 0) out.push(JSON.stringify({ ok: "mixed", nexts }));
  else out.push(JSON.stringify({ ok: true, nexts }));
}
process.stdout.write(out.join("\n") + (out.length ? "\n" : ""));
