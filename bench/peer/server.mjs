// Better Auth as the benchmark's peer: email and password, `pg` on the bench's Postgres, rate
// limiting off, WORKERS processes behind one port (node:cluster), like `gunicorn -w 2`.
//
//   node server.mjs migrate                      create Better Auth's tables in DATABASE_URL
//   node server.mjs serve PORT                   serve /api/auth/* on 127.0.0.1:PORT
//   node server.mjs hashrate SECONDS PARALLEL    Better Auth's own password hash rate, as JSON
import cluster from "node:cluster";
import http from "node:http";

import { betterAuth } from "better-auth";
import { hashPassword } from "better-auth/crypto";
import { getMigrations } from "better-auth/db/migration";
import { toNodeHandler } from "better-auth/node";
import pg from "pg";

function options() {
  return {
    database: new pg.Pool({
      connectionString: process.env.DATABASE_URL,
      max: Number(process.env.POOL_SIZE || 10),
    }),
    secret: process.env.BETTER_AUTH_SECRET,
    baseURL: process.env.BETTER_AUTH_URL,
    emailAndPassword: { enabled: true },
    rateLimit: { enabled: false },
    telemetry: { enabled: false },
  };
}

async function migrate() {
  const { runMigrations } = await getMigrations(options());
  await runMigrations();
  process.exit(0);
}

function serve(port) {
  const workers = Number(process.env.WORKERS || 2);
  if (cluster.isPrimary) {
    let listening = 0;
    cluster.on("listening", () => {
      listening += 1;
      if (listening === workers) console.log(`listening on 127.0.0.1:${port}`);
    });
    cluster.on("exit", (_worker, code, signal) => {
      if (!stopping) console.error(`worker exited (${code ?? signal})`);
    });
    let stopping = false;
    process.on("SIGTERM", () => {
      stopping = true;
      for (const w of Object.values(cluster.workers)) w.kill("SIGTERM");
      setTimeout(() => process.exit(0), 2000).unref();
    });
    for (let i = 0; i < workers; i += 1) cluster.fork();
    return;
  }
  const handler = toNodeHandler(betterAuth(options()));
  http.createServer(handler).listen(port, "127.0.0.1");
}

async function hashrate(seconds, parallel) {
  // The function Better Auth's sign-up and sign-in call, PARALLEL at a time (libuv's pool).
  const deadline = performance.now() + seconds * 1000;
  const started = performance.now();
  const cpuStarted = process.cpuUsage();
  let done = 0;
  async function lane() {
    while (performance.now() < deadline) {
      await hashPassword("tall-river-quiet-lamp-42");
      done += 1;
    }
  }
  await Promise.all(Array.from({ length: parallel }, lane));
  const elapsed = (performance.now() - started) / 1000;
  const cpu = process.cpuUsage(cpuStarted);
  console.log(JSON.stringify({ hashes: done, seconds: elapsed, rate: done / elapsed,
    cpu_ms_per_hash: (cpu.user + cpu.system) / 1000 / Math.max(done, 1),
    algorithm: "scrypt N=16384 r=16 p=1 dkLen=64 (better-auth/crypto hashPassword)" }));
}

const [command, ...args] = process.argv.slice(2);
if (command === "migrate") await migrate();
else if (command === "serve") serve(Number(args[0]));
else if (command === "hashrate") await hashrate(Number(args[0] || 3), Number(args[1] || 2));
else {
  console.error("usage: server.mjs migrate | serve PORT | hashrate SECONDS PARALLEL");
  process.exit(2);
}
