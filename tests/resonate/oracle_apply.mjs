// A differential oracle: the TypeScript SDK's in-memory protocol server, driven over
// stdio. Usage: node oracle_apply.mjs <path to the SDK's dist/src/network/local.js>
// (or RESONATE_LOCAL_JS). Reads JSON lines {"now": ms, "req": {kind, head, data}} and
// answers each with one JSON line {"status", "data"} ({"error"} when the server threw).
import { createInterface } from "node:readline";
import { pathToFileURL } from "node:url";

const path = process.argv[2] ?? process.env.RESONATE_LOCAL_JS;
const { Server } = await import(pathToFileURL(path).href);
let server = new Server({ timeoutMode: "eager" });

const lines = createInterface({ input: process.stdin, crlfDelay: Infinity });
for await (const line of lines) {
  if (!line.trim()) continue;
  let out;
  try {
    const { now, req } = JSON.parse(line);
    if (req.kind === "oracle.new") {
      server = new Server({ timeoutMode: "eager" });
      out = { status: 200, data: {} };
    } else {
      const { response } = server.apply(now, req);
      out = { status: response.head.status, data: response.data ?? null };
    }
  } catch (err) {
    out = { error: String(err && err.stack ? err.stack : err) };
  }
  process.stdout.write(JSON.stringify(out) + "\n");
}
