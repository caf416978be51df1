// The reference Resonate server for redpromise's conformance tests and benchmarks: the
// TypeScript SDK's in-memory protocol server (class `Server`, not exported by the package,
// so imported by file path) behind the HTTP face `redpromise serve` also offers.
//
//   node oracle_server.mjs [--port N] [--host H] [--debug]    HTTP: POST / and GET /poll/:group/:pid
//   node oracle_server.mjs --stdio                             JSON lines on stdin/stdout, no HTTP
//
// HTTP mode prints `READY <port>` once listening (port 0 = any free port).
//   POST /  body {kind, head, data}: the reply is {kind, head: {corrId, status, version}, data}
//           with the HTTP status equal to head.status. `now` is head["resonate:debug_time"]
//           when present, else the wall clock.
//   GET /poll/:group/:pid  Server-Sent Events (`data: <json>\n\n`); each message the server
//           sends is routed: poll://uni@g/p to that connection; poll://any@g[/p] to p when it
//           is connected, else to the group's connections in turn. A message with no
//           connection to take it is dropped: the 1 s tick re-offers pending work, as the
//           reference does. --debug: no tick (time advances only through debug.* requests).
// --stdio mode: each input line {"now": <ms>, "req": {kind, head, data}} gets one output line
//           {"status", "data", "messages": [{address, message}]}, so a test can drive
//           thousands of requests without HTTP.
// Env ORACLE_LOG=<file>: append one JSON line per request (kind, head, data, status, reply)
// and per message (address, the connection it went to), to learn what an SDK sends.
// Env ORACLE_TOKEN: when set, POST and poll requests need `Authorization: Bearer <token>`.
import { appendFileSync } from "node:fs";
import http from "node:http";
import { dirname, join } from "node:path";
import { createInterface } from "node:readline";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = dirname(fileURLToPath(import.meta.url));
const localJs = join(here, "node_modules/@resonatehq/sdk/dist/src/network/local.js");
const { Server } = await import(pathToFileURL(localJs).href);

const args = process.argv.slice(2);
const flag = (name) => args.includes(name);
const option = (name, fallback) => {
  const i = args.indexOf(name);
  return i >= 0 && i + 1 < args.length ? args[i + 1] : fallback;
};
const DEBUG = flag("--debug");
const STDIO = flag("--stdio");
const LOG = process.env.ORACLE_LOG || "";
const TOKEN = process.env.ORACLE_TOKEN || "";

const server = new Server();

function log(entry) {
  if (LOG) appendFileSync(LOG, `${JSON.stringify({ at: Date.now(), ...entry })}\n`);
}

// One request through the reference. A request the reference cannot digest (it throws on
// some malformed shapes instead of answering 400) answers 500 with the exception's message,
// so a differential test sees it rather than the oracle dying.
function apply(now, req) {
  try {
    return server.apply(now, req);
  } catch (e) {
    const message = e instanceof Error ? e.message : String(e);
    return { response: { kind: req?.kind, head: { status: 500 }, data: `oracle threw: ${message}` }, changes: [] };
  }
}

function sentMessages(changes) {
  return changes.filter((c) => c.kind === "message.send").map((c) => ({ address: c.address, message: c.message }));
}

// --- stdio mode -------------------------------------------------------------------------------
if (STDIO) {
  const rl = createInterface({ input: process.stdin, crlfDelay: Infinity });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let out;
    try {
      const { now, req } = JSON.parse(line);
      const result = apply(typeof now === "number" ? now : Date.now(), req);
      out = { status: result.response.head.status, data: result.response.data, messages: sentMessages(result.changes) };
    } catch (e) {
      out = { status: 400, data: `bad input line: ${e instanceof Error ? e.message : String(e)}`, messages: [] };
    }
    process.stdout.write(`${JSON.stringify(out)}\n`);
  }
  process.exit(0);
}

// --- HTTP mode: SSE connections and message routing -------------------------------------------
const groups = new Map(); // group -> Map(pid -> response)
const turns = new Map(); // group -> round-robin counter
const ADDRESS = /^poll:\/\/(uni|any)@([^/]+)(?:\/(.*))?$/;

function connectionFor(address) {
  const m = ADDRESS.exec(address);
  if (!m) return null;
  const [, cast, group, pid] = m;
  const members = groups.get(group);
  if (!members || members.size === 0) return null;
  if (pid !== undefined && members.has(pid)) return { pid, res: members.get(pid) };
  if (cast === "uni") return null;
  const pids = [...members.keys()];
  const turn = turns.get(group) ?? 0;
  turns.set(group, turn + 1);
  const chosen = pids[turn % pids.length];
  return { pid: chosen, res: members.get(chosen) };
}

function deliver(changes) {
  for (const { address, message } of sentMessages(changes)) {
    const to = connectionFor(address);
    log({ send: address, to: to ? to.pid : null, message });
    if (to) to.res.write(`data: ${JSON.stringify(message)}\n\n`);
  }
  // The reference keeps every message for debug.snap, and finds an execute's earlier message
  // by a linear scan: unbounded growth and quadratic time in a long run. Outside --debug
  // nothing reads them, so they are dropped once routed.
  if (!DEBUG) server.outgoing = [];
}

function authorized(req) {
  return !TOKEN || req.headers.authorization === `Bearer ${TOKEN}`;
}

function reply(res, status, body) {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function handlePost(req, res) {
  const chunks = [];
  req.on("data", (c) => chunks.push(c));
  req.on("end", () => {
    let body;
    try {
      body = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    } catch {
      return reply(res, 400, { kind: "error", head: { status: 400 }, data: "request body is not JSON" });
    }
    const head = body?.head ?? {};
    if (!authorized(req)) {
      return reply(res, 401, { kind: body?.kind, head: { corrId: head.corrId, status: 401, version: head.version }, data: "unauthorized" });
    }
    const debugTime = head["resonate:debug_time"];
    const now = typeof debugTime === "number" ? debugTime : Date.now();
    const result = apply(now, body);
    const status = result.response.head.status;
    const out = { kind: result.response.kind, head: { corrId: head.corrId, status, version: head.version }, data: result.response.data };
    if (LOG) {
      const { auth: _auth, ...shownHead } = head;
      log({ kind: body.kind, head: shownHead, data: body.data, status, reply: result.response.data });
    }
    reply(res, status, out);
    deliver(result.changes);
  });
}

function handlePoll(req, res, group, pid) {
  if (!authorized(req)) return reply(res, 401, { error: "unauthorized" });
  res.writeHead(200, { "content-type": "text/event-stream", "cache-control": "no-cache", connection: "keep-alive" });
  res.flushHeaders();
  if (!groups.has(group)) groups.set(group, new Map());
  const members = groups.get(group);
  members.get(pid)?.end(); // a reconnect replaces the pid's older stream
  members.set(pid, res);
  log({ poll: `${group}/${pid}`, event: "open" });
  const ping = setInterval(() => res.write(": ping\n\n"), 15000);
  res.on("close", () => {
    clearInterval(ping);
    if (members.get(pid) === res) members.delete(pid);
    log({ poll: `${group}/${pid}`, event: "close" });
  });
}

const httpServer = http.createServer((req, res) => {
  const url = new URL(req.url ?? "/", "http://oracle");
  const parts = url.pathname.split("/").filter(Boolean);
  if (req.method === "POST" && parts.length === 0) return handlePost(req, res);
  if (req.method === "GET" && parts.length === 3 && parts[0] === "poll") {
    return handlePoll(req, res, decodeURIComponent(parts[1]), decodeURIComponent(parts[2]));
  }
  reply(res, 404, { error: `no route ${req.method} ${url.pathname}` });
});

if (!DEBUG) {
  setInterval(() => {
    const now = Date.now();
    const result = apply(now, { kind: "debug.tick", head: { corrId: "oracle-tick", version: "2026-04-01" }, data: { time: now } });
    deliver(result.changes);
  }, 1000);
}

for (const sig of ["SIGTERM", "SIGINT"]) process.on(sig, () => process.exit(0));

httpServer.listen(Number(option("--port", "0")), option("--host", "127.0.0.1"), () => {
  console.log(`READY ${httpServer.address().port}`);
});
