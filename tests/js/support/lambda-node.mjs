// AWS Lambda's Node.js runtime, as much of it as a Netlify Functions v2 bundle
// uses, to run that bundle as Netlify runs it: `___netlify-entry-point.mjs`
// exports `handler = awslambda.streamifyResponse(fn)`, and `fn(event, stream,
// context)` writes its answer through `awslambda.HttpResponseStream.from(stream,
// { statusCode, multiValueHeaders })`
// (https://docs.aws.amazon.com/lambda/latest/dg/response-streaming-tutorial.html).
//
// `startBundle(entry, options)` runs the bundle in a child process of its own
// (the bootstrap replaces the global fetch) and invokes it one event at a time;
// between invocations the process is frozen (SIGSTOP), as Lambda freezes an
// environment once its answer is sent.

import { fork } from "node:child_process";
import { randomUUID } from "node:crypto";
import { Writable } from "node:stream";
import { fileURLToPath, pathToFileURL } from "node:url";

/**
 * @typedef {{ statusCode: number, headers: Record<string, string[]>, body: string }} BundleAnswer
 */

/**
 * Starts the bundle whose entry point is `entry`, with `env` as its environment and `cwd` as its task root.
 * @param {string} entry
 * @param {{ cwd: string, env: Record<string, string> }} options
 * @returns {Promise<{ invoke(event: object, timeoutMs?: number): Promise<BundleAnswer>, output(): string, stop(): void }>}
 */
export async function startBundle(entry, { cwd, env }) {
  const child = fork(fileURLToPath(import.meta.url), [entry], { cwd, env, stdio: ["ignore", "pipe", "pipe", "ipc"] });
  let output = "";
  child.stdout?.on("data", (d) => (output += d));
  child.stderr?.on("data", (d) => (output += d));
  /** @type {Map<string, (message: any) => void>} */
  const pending = new Map();
  const ready = new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`the bundle exited (${code}) before it was ready: ${output}`)));
    child.on("message", (/** @type {any} */ message) => {
      if (message.ready) resolve(undefined);
      else pending.get(message.id)?.(message);
    });
  });
  await ready;
  child.kill("SIGSTOP");
  return {
    async invoke(event, timeoutMs = 30_000) {
      const id = randomUUID();
      const answered = new Promise((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms: ${output}`)), timeoutMs);
        pending.set(id, (message) => {
          clearTimeout(timer);
          pending.delete(id);
          if (message.error) reject(new Error(`the handler failed: ${message.error}`));
          else resolve(message);
        });
      });
      child.kill("SIGCONT");
      child.send({ id, event });
      try {
        const { prelude, body } = /** @type {any} */ (await answered);
        return {
          statusCode: prelude.statusCode,
          headers: prelude.multiValueHeaders ?? {},
          body: Buffer.from(body, "base64").toString(),
        };
      } finally {
        child.kill("SIGSTOP");
      }
    },
    output: () => output,
    stop() {
      child.kill("SIGKILL");
    },
  };
}

// In the child: the runtime's globals, the bundle, and one invocation per message.
if (process.send && process.argv[1] === fileURLToPath(import.meta.url)) {
  const send = process.send.bind(process);
  /** @type {any} */ (globalThis).awslambda = {
    streamifyResponse: (/** @type {Function} */ handler) => handler,
    HttpResponseStream: {
      from(/** @type {any} */ stream, /** @type {object} */ prelude) {
        stream.prelude = prelude;
        return stream;
      },
    },
  };
  const { handler } = await import(pathToFileURL(process.argv[2]).href);
  process.on("message", async (/** @type {any} */ { id, event }) => {
    /** @type {Buffer[]} */
    const chunks = [];
    const stream = /** @type {Writable & { prelude?: object }} */ (
      new Writable({
        write(chunk, _encoding, done) {
          chunks.push(Buffer.from(chunk));
          done();
        },
      })
    );
    const finished = new Promise((resolve) => stream.on("finish", resolve));
    const context = { awsRequestId: id, getRemainingTimeInMillis: () => 60_000, callbackWaitsForEmptyEventLoop: true };
    try {
      await handler(event, stream, context);
      await finished;
      send({ id, prelude: stream.prelude, body: Buffer.concat(chunks).toString("base64") });
    } catch (err) {
      send({ id, error: err instanceof Error ? err.stack : String(err) });
    }
  });
  send({ ready: true });
}
