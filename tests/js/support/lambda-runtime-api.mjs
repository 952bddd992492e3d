// A stand-in for AWS Lambda's Runtime API, enough to run a custom-runtime
// `bootstrap` (the relay as Netlify deploys it) outside Lambda: the function
// long-polls `GET /2018-06-01/runtime/invocation/next` for an event and posts
// its answer to `.../invocation/{id}/response` (or `/error`).
// https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import http from "node:http";

const PREFIX = "/2018-06-01/runtime";

/**
 * Runs `bootstrap` as Lambda would, with `env` as the function's environment
 * and `cwd` as its task root, and hands it events one at a time.
 * @param {string} bootstrap
 * @param {{ cwd: string, env: Record<string, string> }} options
 * @returns {Promise<{ invoke(event: object, timeoutMs: number): Promise<any>, output(): string, stop(): Promise<void> }>}
 */
export async function startLambda(bootstrap, { cwd, env }) {
  /** Events not yet taken, and `next` requests waiting for one. */
  const events = /** @type {Array<{ id: string, body: string }>} */ ([]);
  const waiting = /** @type {Array<(e: { id: string, body: string }) => void>} */ ([]);
  /** Answers awaited, by request id. */
  const pending = new Map();
  let initError = "";

  const server = http.createServer((req, res) => {
    let body = "";
    req.on("data", (d) => (body += d));
    req.on("end", () => {
      const url = req.url ?? "";
      if (req.method === "GET" && url === `${PREFIX}/invocation/next`) {
        const send = (/** @type {{ id: string, body: string }} */ e) =>
          res
            .writeHead(200, {
              "content-type": "application/json",
              "lambda-runtime-aws-request-id": e.id,
              "lambda-runtime-deadline-ms": String(Date.now() + 30_000),
              "lambda-runtime-invoked-function-arn": "arn:aws:lambda:us-east-1:000000000000:function:relay",
              "lambda-runtime-trace-id": "Root=1-00000000-000000000000000000000000",
            })
            .end(e.body);
        const next = events.shift();
        if (next) send(next);
        else waiting.push(send);
        return;
      }
      const answer = /^\/2018-06-01\/runtime\/invocation\/([^/]+)\/(response|error)$/.exec(url);
      if (req.method === "POST" && answer && pending.has(answer[1])) {
        const { resolve, reject } = pending.get(answer[1]);
        pending.delete(answer[1]);
        if (answer[2] === "response") resolve(JSON.parse(body));
        else reject(new Error(`the function reported an error: ${body}`));
        res.writeHead(202).end();
        return;
      }
      if (req.method === "POST" && url === `${PREFIX}/init/error`) initError = body;
      res.writeHead(req.method === "POST" ? 202 : 404).end();
    });
  });
  await new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(undefined)));
  const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());

  // The variables Lambda sets for a custom runtime (lambda_runtime's Config
  // reads them; it panics without AWS_LAMBDA_FUNCTION_NAME).
  const child = spawn(bootstrap, [], {
    cwd,
    env: {
      ...env,
      AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`,
      AWS_LAMBDA_FUNCTION_NAME: "relay",
      AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
      AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "1024",
      AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/relay",
      AWS_LAMBDA_LOG_STREAM_NAME: "stand-in",
      LAMBDA_TASK_ROOT: cwd,
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  let output = "";
  child.stdout.on("data", (d) => (output += d));
  child.stderr.on("data", (d) => (output += d));
  const exited = new Promise((resolve) => child.once("exit", resolve));

  return {
    invoke(event, timeoutMs) {
      const id = randomUUID();
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () =>
            reject(
              new Error(`no answer in ${timeoutMs} ms${initError ? `; init error: ${initError}` : ""}:\n${output}`),
            ),
          timeoutMs,
        );
        exited.then((code) => reject(new Error(`bootstrap exited (${code}):\n${output}`)));
        pending.set(id, {
          resolve: (/** @type {any} */ v) => (clearTimeout(timer), resolve(v)),
          reject: (/** @type {Error} */ e) => (clearTimeout(timer), reject(e)),
        });
        const e = { id, body: JSON.stringify(event) };
        const taker = waiting.shift();
        if (taker) taker(e);
        else events.push(e);
      });
    },
    output: () => output,
    async stop() {
      if (child.exitCode === null && child.signalCode === null) {
        child.kill("SIGKILL");
        await exited;
      }
      server.closeAllConnections();
      await new Promise((resolve) => server.close(() => resolve(undefined)));
    },
  };
}
