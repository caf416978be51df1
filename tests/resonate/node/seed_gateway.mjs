// The seed's gateway (group "gateway"): an Express 5 app that starts `foo` on the worker
// group and reports its state, holding no state of its own between requests.
//   GET|POST /begin?id=<id>&data=<json>[&retry=<json>]  beginRpc(id, "foo", data, target
//        poll://any@worker; retry {type, data} as the SDK's retry policies take it, e.g.
//        {"type": "constant", "data": {"delay": 50, "maxRetries": 2}})
//        -> 200 {promise, status: "pending", wait: "/wait?id=<id>"} (a repeated id attaches)
//   GET /wait?id=<id>  -> {status: "pending"} | {status: "resolved", result}
//        | {status: "rejected", error: <message>}; 404 {error: "<id> not found"}
// Env: RESONATE_URL (the server), PORT (0 = any), RESONATE_TOKEN (optional).
// Prints `READY <port>` once listening.
import { randomUUID } from "node:crypto";
import express from "express";
import { Constant, Exponential, Linear, Never, Resonate } from "@resonatehq/sdk";

const POLICIES = { constant: Constant, exponential: Exponential, linear: Linear, never: Never };

const resonate = new Resonate({
  url: process.env.RESONATE_URL,
  group: "gateway",
  token: process.env.RESONATE_TOKEN || undefined,
});

const app = express();
app.use(express.json());

function param(req, name) {
  return req.query[name] ?? req.body?.[name];
}

async function begin(req, res) {
  const id = String(param(req, "id") ?? randomUUID());
  let data = param(req, "data") ?? {};
  if (typeof data === "string") {
    try {
      data = JSON.parse(data);
    } catch {
      return res.status(400).json({ error: "data is not JSON" });
    }
  }
  let retryPolicy;
  const retry = param(req, "retry");
  if (retry !== undefined) {
    try {
      const r = typeof retry === "string" ? JSON.parse(retry) : retry;
      retryPolicy = new POLICIES[r.type](r.data ?? {});
    } catch {
      return res.status(400).json({ error: "retry is not one of the SDK's retry policies" });
    }
  }
  const opts = { target: "poll://any@worker", ...(retryPolicy ? { retryPolicy } : {}) };
  try {
    const handle = await resonate.beginRpc(id, "foo", data, resonate.options(opts));
    res.status(200).json({ promise: handle.id, status: "pending", wait: `/wait?id=${encodeURIComponent(handle.id)}` });
  } catch (e) {
    res.status(500).json({ error: e instanceof Error ? e.message : String(e) });
  }
}

app.get("/begin", begin);
app.post("/begin", begin);

app.get("/wait", async (req, res) => {
  const id = String(param(req, "id") ?? "");
  let handle;
  try {
    handle = await resonate.get(id);
  } catch {
    return res.status(404).json({ error: `${id} not found` });
  }
  if (!(await handle.done())) return res.status(200).json({ status: "pending" });
  try {
    const result = await handle.result();
    res.status(200).json({ status: "resolved", result });
  } catch (e) {
    res.status(200).json({ status: "rejected", error: e instanceof Error ? e.message : String(e) });
  }
});

for (const sig of ["SIGTERM", "SIGINT"]) {
  process.on(sig, () => {
    resonate.stop().finally(() => process.exit(0));
  });
}

const listener = app.listen(Number(process.env.PORT ?? 0), "127.0.0.1", () => {
  console.log(`READY ${listener.address().port}`);
});
