// The benchmark's worker: group "worker", function "foo" with `data.steps` ctx.run steps
// (each returns at once: the figures are the protocol's cost, not the work's).
//
//   node worker.mjs <url>
import { Resonate } from "@resonatehq/sdk";

const [url] = process.argv.slice(2);
// A postgres:// url: Resonate's Postgres connector (resonate-pg) instead of a server.
const resonate = url.startsWith("postgres")
  ? new Resonate({
      group: "worker",
      network: new (await import("@resonatehq/sdk/postgres")).PostgresNetwork({
        connectionString: url,
        group: "worker",
      }),
    })
  : new Resonate({ url, group: "worker" });

function step(_ctx, i) {
  return i;
}

function* foo(ctx, data) {
  const out = [];
  for (let i = 0; i < (data?.steps ?? 0); i++) {
    out.push(yield* ctx.run(step, i));
  }
  return { i: data?.i, steps: out };
}

resonate.register("foo", foo);
console.log("READY");

for (const sig of ["SIGINT", "SIGTERM"]) {
  process.on(sig, async () => {
    await resonate.stop();
    process.exit(0);
  });
}
