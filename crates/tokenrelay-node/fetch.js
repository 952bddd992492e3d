// tokenrelay/fetch: the browse-time relay as a Fetch API handler, for any
// JavaScript server (Next.js route handlers, Netlify Functions v2, Astro,
// SvelteKit, Hono) and, through `createNodeRelay`, Node's own `http` and Express.
//
// Every rule is the Rust relay's, inside the addon (crates/tokenrelay-node/src/relay_handler.rs):
// this file only moves requests and answers between JS and Rust. It decides
// two things the Rust side cannot see: where the visitor's address comes from
// (the header's value crosses as received: Rust takes its first address, as the
// platform functions do), and how much of the request body crosses over (one
// byte past the relay's limit, so the relay answers 413 itself).
//
// No request may take the process down: every path ends in an answer or a
// closed connection, and nothing is left to reject unhandled.

import { platforms, relayHandler, TokenrelayError } from "./index.js";

/** Statuses whose answer never has a body (Fetch API `null body status`, and 101/103). */
const BODILESS = new Set([101, 103, 204, 205, 304]);

/** Headers that carry whatever the visitor sent: never a client address. */
const SPOOFABLE = new Set(["x-forwarded-for", "forwarded", "x-client-ip"]);

/**
 * @typedef {import("./index.d.ts").PlatformHeaders} PlatformHeaders
 */

/**
 * Each platform's own request headers, as the core declares them, by name.
 * @type {Map<string, PlatformHeaders>}
 */
const PLATFORMS = new Map(platforms().map((/** @type {PlatformHeaders} */ p) => [p.name, p]));

/**
 * @typedef {import("./fetch.d.ts").RelayOptions} RelayOptions
 * @typedef {import("./fetch.d.ts").ClientIpSource} ClientIpSource
 * @typedef {(request: Request, context?: unknown) => string | undefined} AddressOf
 */

/**
 * The relay as `(request, context?) => Promise<Response>`.
 * @param {RelayOptions} [options]
 * @returns {import("./fetch.d.ts").FetchRelay}
 */
export function createRelay(options = {}) {
  const { clientIp, ...native } = options;
  const addressOf = addressSource(clientIp);
  const relay = relayHandler(native);
  return async (request, context) => {
    // No body (a GET, a HEAD): nothing to wait for.
    const body = request.body ? await readBounded(request.body, relay.maxRequestBytes) : {};
    const answer = await relay.handle({
      method: request.method,
      target: targetOf(request.url),
      headers: headerList(request.headers),
      body: body.bytes,
      bodyUnreadable: body.unreadable,
      clientIp: addressOf(request, context),
      requestId: requestId(request.headers),
    });
    return toResponse(answer, request.method);
  };
}

/**
 * The relay as a Node `http` listener (also an Express handler): the request
 * target reaches the relay byte for byte, as the visitor sent it.
 * @param {import("./fetch.d.ts").NodeRelayOptions} [options]
 * @returns {(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => Promise<void>}
 */
export function createNodeRelay(options = {}) {
  const { clientIp = "socket", ...native } = options;
  /** @type {(req: import("node:http").IncomingMessage) => string | undefined} */
  let addressOf;
  if (clientIp === "socket") addressOf = (req) => req.socket?.remoteAddress;
  else if (typeof clientIp === "function") addressOf = clientIp;
  else {
    const name = trustedHeader(clientIp);
    addressOf = (req) => [req.headers[name]].flat()[0];
  }
  const relay = relayHandler(native);
  return async (req, res) => {
    try {
      // Before the body: a visitor who goes away midway takes req.socket along.
      const clientIp = addressOf(req);
      const body = hasBody(req) ? await readRequest(req, relay.maxRequestBytes) : { complete: true };
      const answer = await relay.handle({
        method: req.method ?? "GET",
        // Express strips its mount path from req.url; originalUrl keeps it.
        target: /** @type {any} */ (req).originalUrl ?? req.url ?? "/",
        headers: req.rawHeaders,
        body: body.bytes?.length ? body.bytes : undefined,
        bodyUnreadable: body.unreadable,
        clientIp,
      });
      // What was left unread is not read after the answer either: the connection ends with it.
      if (!body.complete) res.setHeader("connection", "close");
      await writeAnswer(answer, req, res);
    } catch (err) {
      // A bug, or a clientIp function that threw: a closed connection, not a
      // rejection that ends the process. The line names no value.
      console.error(
        JSON.stringify({
          timestamp: new Date().toISOString(),
          level: "ERROR",
          code: "internal_error",
          error: err instanceof Error ? err.name : typeof err,
          message: "tokenrelay/fetch: the Node listener failed on a request; its connection is closed",
        }),
      );
      res.destroy();
    }
  };
}

/**
 * Writes the relay's answer to a Node response, chunk by chunk as the
 * visitor takes them; stops reading once the visitor has gone.
 * @param {import("./index.d.ts").RelayAnswer} answer
 * @param {import("node:http").IncomingMessage} req
 * @param {import("node:http").ServerResponse} res
 */
async function writeAnswer(answer, req, res) {
  res.statusCode = answer.status;
  const headers = answer.headers;
  /** @type {Record<string, string[]>} */
  const grouped = {};
  for (let i = 0; i < headers.length; i += 2) (grouped[headers[i]] ??= []).push(headers[i + 1]);
  for (const [name, values] of Object.entries(grouped)) res.setHeader(name, values);
  // A complete body came with the answer: head and body in one write, with its length.
  const whole = answer.whole;
  if (whole) {
    res.end(req.method === "HEAD" ? undefined : whole);
    return;
  }
  const body = /** @type {import("./index.d.ts").RelayBody} */ (answer.body);
  res.on("close", () => body.cancel());
  try {
    for (let chunk = await body.read(); chunk && !res.destroyed; chunk = await body.read()) {
      if (req.method !== "HEAD" && !res.write(chunk)) await drainedOrClosed(res);
    }
    res.end();
  } catch {
    // The upstream failed or went over a limit midway: abort, so the visitor
    // sees a broken answer rather than a short one taken for whole.
    res.destroy();
  }
  // The visitor went away first: the upstream call ends with the body.
  if (res.destroyed) body.cancel();
}

/**
 * Resolves when `res` can take more, or will never again.
 * @param {import("node:http").ServerResponse} res
 * @returns {Promise<void>}
 */
function drainedOrClosed(res) {
  return new Promise((resolve) => {
    const done = () => {
      res.off("drain", done).off("close", done);
      resolve();
    };
    res.on("drain", done).on("close", done);
  });
}

/**
 * @param {ClientIpSource | undefined} source
 * @returns {AddressOf}
 */
function addressSource(source = "auto") {
  if (typeof source === "function") return source;
  if (source === "none") return () => undefined;
  if (source === "auto") {
    const platform = [...PLATFORMS.values()].find((p) => process.env[p.envVar]);
    const fallback = platform ? headerAddress(platform.clientIpHeader) : () => undefined;
    // Netlify Functions v2 hand the address over in their context.
    return (request, context) => contextAddress(context) ?? fallback(request);
  }
  const header = headerAddress(trustedHeader(source));
  // Netlify Functions v2 hand the address over in their context.
  return source === "netlify" ? (request, context) => contextAddress(context) ?? header(request) : header;
}

/**
 * The header named by `source` (a platform or a header's name), unless a visitor can set it.
 * @param {string} source
 * @returns {string}
 */
function trustedHeader(source) {
  const header = PLATFORMS.get(source)?.clientIpHeader ?? source.toLowerCase();
  if (SPOOFABLE.has(header)) {
    throw new TokenrelayError(
      "invalid_options",
      `option clientIp: ${source} holds whatever the visitor sends, and a rate limit keyed on it limits no one: ` +
        "name a header your platform sets itself, or pass a function",
    );
  }
  return header;
}

/**
 * @param {string} name
 * @returns {AddressOf}
 */
function headerAddress(name) {
  return (request) => request.headers.get(name) ?? undefined;
}

/**
 * @param {unknown} context
 * @returns {string | undefined}
 */
function contextAddress(context) {
  const ip = /** @type {{ ip?: unknown } | undefined} */ (context)?.ip;
  return typeof ip === "string" ? ip : undefined;
}

/**
 * The platform's id of the request, from the first platform header present.
 * @param {Headers} headers
 * @returns {string | undefined}
 */
function requestId(headers) {
  for (const platform of PLATFORMS.values()) {
    const id = headers.get(platform.requestIdHeader);
    if (id !== null) return id;
  }
  return undefined;
}

/**
 * The path and query of a Fetch API Request's URL, as the relay takes its
 * target. `Request.url` is already serialized (`scheme://host/path?query`,
 * the path never empty), so a slice does what parsing it again would.
 * @param {string} url
 * @returns {string}
 */
function targetOf(url) {
  const authority = url.indexOf("//");
  const path = authority < 0 ? -1 : url.indexOf("/", authority + 2);
  if (path < 0) {
    const parsed = new URL(url);
    return parsed.pathname + parsed.search;
  }
  const fragment = url.indexOf("#", path);
  return fragment < 0 ? url.slice(path) : url.slice(path, fragment);
}

/**
 * @param {Headers} headers
 * @returns {string[]}
 */
function headerList(headers) {
  /** @type {string[]} */
  const list = [];
  headers.forEach((value, name) => list.push(name, value));
  return list;
}

/**
 * A request body as it crosses to the relay: at most `limit + 1` bytes (past
 * its limit the relay answers 413), or `unreadable` when the body failed
 * midway (the relay answers 400 `body_unreadable`). `complete`: read to its end.
 * @typedef {{ bytes?: Buffer, unreadable?: boolean, complete?: boolean }} BoundedBody
 */

/**
 * At most `limit + 1` bytes of a Fetch API body; the rest is never read.
 * @param {AsyncIterable<Uint8Array> | null} body
 * @param {number} limit
 * @returns {Promise<BoundedBody>}
 */
async function readBounded(body, limit) {
  if (!body) return {};
  /** @type {Uint8Array[]} */
  const chunks = [];
  let size = 0;
  try {
    for await (const chunk of body) {
      chunks.push(chunk);
      size += chunk.byteLength;
      if (size > limit) break;
    }
  } catch {
    // The visitor went away midway (or the framework failed to decode the
    // body); past the limit, only the cancelling of the rest failed.
    if (size <= limit) return { unreadable: true };
  }
  return { bytes: Buffer.concat(chunks, Math.min(size, limit + 1)) };
}

/**
 * Whether a Node request has a body to read: HTTP/1.1 frames a request's
 * body by `Content-Length` or `Transfer-Encoding`, and without either it has
 * none (RFC 9112, section 6.3); HTTP/2 sends one unless the stream ended
 * with the headers, which Node does not say up front.
 * @param {import("node:http").IncomingMessage} req
 * @returns {boolean}
 */
function hasBody(req) {
  if (req.httpVersionMajor !== 1) return true;
  const headers = req.headers;
  return headers["transfer-encoding"] !== undefined || (headers["content-length"] ?? "0") !== "0";
}

/**
 * At most `limit + 1` bytes of a Node request's body, without destroying the
 * request (its connection still carries the answer): past the limit, or
 * declared past it in `Content-Length`, reading stops; a visitor who goes
 * away midway makes the body `unreadable`.
 * @param {import("node:http").IncomingMessage} req
 * @param {number} limit
 * @returns {Promise<BoundedBody>}
 */
function readRequest(req, limit) {
  // The relay answers 413 from the declared length alone.
  if (Number(req.headers["content-length"]) > limit) return Promise.resolve({ complete: false });
  if (req.complete && req.readableEnded) return Promise.resolve({ complete: true });
  return new Promise((resolve) => {
    /** @type {Buffer[]} */
    const chunks = [];
    let size = 0;
    /** @param {BoundedBody} body */
    const done = (body) => {
      req.off("data", onData).off("end", onEnd).off("error", onError).off("close", onClose);
      resolve(body);
    };
    /** @param {Buffer} chunk */
    const onData = (chunk) => {
      chunks.push(chunk);
      size += chunk.length;
      if (size > limit) {
        req.pause();
        done({ bytes: Buffer.concat(chunks, limit + 1), complete: false });
      }
    };
    const onEnd = () => done({ bytes: Buffer.concat(chunks, size), complete: true });
    const onError = () => done({ unreadable: true, complete: false });
    // After `end` on a whole body; before it, the connection went away.
    const onClose = () => (req.complete ? onEnd() : onError());
    req.on("data", onData).on("end", onEnd).on("error", onError).on("close", onClose);
  });
}

/**
 * @param {import("./index.d.ts").RelayAnswer} answer
 * @param {string} method
 * @returns {Promise<Response>}
 */
async function toResponse(answer, method) {
  const headers = new Headers();
  const list = answer.headers;
  for (let i = 0; i < list.length; i += 2) headers.append(list[i], list[i + 1]);
  // A complete body came with the answer: no stream, no more crossings.
  const whole = answer.whole;
  if (whole) {
    // A Buffer is a Uint8Array, which Response takes; TypeScript's DOM types
    // want one over an ArrayBuffer, which a Buffer's type does not promise.
    const bytes = /** @type {Uint8Array<ArrayBuffer>} */ (whole);
    const body = method === "HEAD" || BODILESS.has(answer.status) ? null : bytes;
    return new Response(body, { status: answer.status, headers });
  }
  const stream = /** @type {import("./index.d.ts").RelayBody} */ (answer.body);
  if (method === "HEAD" || BODILESS.has(answer.status)) {
    // Read to the end all the same: the request's chores finish with the body.
    while (await stream.read());
    return new Response(null, { status: answer.status, headers });
  }
  const body = new ReadableStream(
    {
      async pull(controller) {
        const chunk = await stream.read();
        if (chunk) controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        else controller.close();
      },
      cancel() {
        stream.cancel();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: answer.status, headers });
}
