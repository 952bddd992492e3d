// `netlify dev` serves no prebuilt binary function (netlify-cli's Rust and Go
// runtimes register only functions they build from source), so for local
// development the plugin places a JavaScript function instead that runs the
// prebuilt relay once per request, the way netlify-cli's own functions proxy
// runs a Rust function: as a Lambda custom runtime talking to a Runtime API
// on loopback (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html).

import { spawn } from "node:child_process";
import { randomUUID } from "node:crypto";
import http from "node:http";

/** How long one request may take, as netlify dev's synchronous function timeout. */
const TIMEOUT_MS = 30_000;

/**
 * Runs `binary` as a Lambda custom runtime for one `event` and resolves with
 * its answer (API Gateway v1 shape, as netlify dev expects from a function).
 * @param {string} binary
 * @param {object} event
 * @param {{ cwd: string }} options the site's directory: its tokenrelay.toml and .env
 * @returns {Promise<object>}
 */
export function invokeOnce(binary, event, { cwd }) {
  const id = randomUUID();
  return new Promise((resolve, reject) => {
    let output = "";
    /** @type {import("node:child_process").ChildProcess | undefined} */
    let child;
    const server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d) => (body += d));
      req.on("end", () => {
        if (req.method === "GET" && req.url === "/2018-06-01/runtime/invocation/next") {
          res.writeHead(200, {
            "content-type": "application/json",
            "lambda-runtime-aws-request-id": id,
            "lambda-runtime-deadline-ms": String(Date.now() + TIMEOUT_MS),
            "lambda-runtime-invoked-function-arn": "arn:aws:lambda:local:000000000000:function:relay",
          });
          res.end(JSON.stringify(event));
        } else if (req.method === "POST" && req.url === `/2018-06-01/runtime/invocation/${id}/response`) {
          res.writeHead(202).end();
          done(() => resolve(JSON.parse(body)));
        } else if (req.method === "POST") {
          res.writeHead(202).end();
          done(() => reject(new Error(`tokenrelay's relay function failed: ${body}\n${output}`)));
        } else {
          res.writeHead(404).end();
        }
      });
    });
    const timer = setTimeout(
      () => done(() => reject(new Error(`tokenrelay's relay function gave no answer in ${TIMEOUT_MS} ms\n${output}`))),
      TIMEOUT_MS,
    );
    let settled = false;
    /** @param {() => void} settle */
    function done(settle) {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      child?.kill("SIGKILL");
      server.closeAllConnections();
      server.close();
      settle();
    }
    server.listen(0, "127.0.0.1", () => {
      const { port } = /** @type {import("node:net").AddressInfo} */ (server.address());
      // The variables Lambda gives a custom runtime (lambda_runtime needs each).
      child = spawn(binary, [], {
        cwd,
        env: {
          ...process.env,
          AWS_LAMBDA_RUNTIME_API: `127.0.0.1:${port}`,
          AWS_LAMBDA_FUNCTION_NAME: "relay",
          AWS_LAMBDA_FUNCTION_VERSION: "$LATEST",
          AWS_LAMBDA_FUNCTION_MEMORY_SIZE: "1024",
          AWS_LAMBDA_LOG_GROUP_NAME: "/aws/lambda/relay",
          AWS_LAMBDA_LOG_STREAM_NAME: "netlify-dev",
        },
        stdio: ["ignore", "pipe", "pipe"],
      });
      // Its logs reach netlify dev's output, as a function's do.
      for (const stream of [child.stdout, child.stderr]) {
        stream?.on("data", (d) => {
          output += d;
          process.stderr.write(d);
        });
      }
      child.once("error", (err) => done(() => reject(err)));
      child.once("exit", (code) =>
        done(() => reject(new Error(`tokenrelay's relay function exited (${code}) before answering\n${output}`))),
      );
    });
  });
}
