// tokenrelay/fetch: the browse-time relay as a Fetch API handler, for any
// JavaScript server (Next.js route handlers, Netlify Functions v2, Astro,
// SvelteKit, Hono) and, through `createNodeRelay`, Node's own `http` and Express.
//
// Every rule is the Rust relay's, inside the addon (crates/tokenrelay-node/src/relay_handler.rs):
// this file only moves requests and answers between JS and Rust. It decides
// two things the Rust side cannot see: where the visitor's address comes from,
// and how much of the request body crosses over (one byte past the relay's limit,
// so the relay answers 413 itself).

import { relayHandler, TokenrelayError } from "./index.js";

/** Statuses whose answer never has a body (Fetch API `null body status`, and 101/103). */
const BODILESS = new Set([101, 103, 204, 205, 304]);

/** Headers that carry whatever the visitor sent: never a client address. */
const SPOOFABLE = new Set(["x-forwarded-for", "forwarded", "x-client-ip"]);

/**
 * Where each platform puts the visitor's address, replacing what the visitor sent.
 * @type {Record<string, string>}
 */
const PLATFORM_IP_HEADERS = { vercel: "x-real-ip", netlify: "x-nf-client-connection-ip" };

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
    const url = new URL(request.url);
    const answer = await relay.handle({
      method: request.method,
      target: url.pathname + url.search,
      headers: headerList(request.headers),
      body: await readBounded(request.body, relay.maxRequestBytes),
      clientIp: addressOf(request, context),
      requestId: request.headers.get("x-vercel-id") ?? request.headers.get("x-nf-request-id") ?? undefined,
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
  if (clientIp === "socket") addressOf = (req) => req.socket.remoteAddress;
  else if (typeof clientIp === "function") addressOf = clientIp;
  else {
    const name = trustedHeader(clientIp);
    addressOf = (req) => [req.headers[name]].flat()[0];
  }
  const relay = relayHandler(native);
  return async (req, res) => {
    const body = await readBounded(req, relay.maxRequestBytes);
    const answer = await relay.handle({
      method: req.method ?? "GET",
      // Express strips its mount path from req.url; originalUrl keeps it.
      target: /** @type {any} */ (req).originalUrl ?? req.url ?? "/",
      headers: req.rawHeaders,
      body: body?.length ? body : undefined,
      clientIp: addressOf(req),
    });
    res.statusCode = answer.status;
    const headers = answer.headers;
    /** @type {Record<string, string[]>} */
    const grouped = {};
    for (let i = 0; i < headers.length; i += 2) (grouped[headers[i]] ??= []).push(headers[i + 1]);
    for (const [name, values] of Object.entries(grouped)) res.setHeader(name, values);
    res.on("close", () => answer.cancel());
    try {
      for (let chunk = await answer.read(); chunk; chunk = await answer.read()) {
        if (req.method !== "HEAD" && !res.write(chunk)) await new Promise((resolve) => res.once("drain", resolve));
      }
      res.end();
    } catch {
      // The upstream failed or went over a limit midway: abort, so the visitor
      // sees a broken answer rather than a short one taken for whole.
      res.destroy();
    }
  };
}

/**
 * @param {ClientIpSource | undefined} source
 * @returns {AddressOf}
 */
function addressSource(source = "auto") {
  if (typeof source === "function") return source;
  if (source === "none") return () => undefined;
  if (source === "auto") {
    const platform = process.env.VERCEL ? "vercel" : process.env.NETLIFY ? "netlify" : undefined;
    const fallback = platform ? headerAddress(PLATFORM_IP_HEADERS[platform]) : () => undefined;
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
  const header = PLATFORM_IP_HEADERS[source] ?? source.toLowerCase();
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
 * At most `limit + 1` bytes of a body: past its limit the relay answers 413
 * without the rest ever being read.
 * @param {AsyncIterable<Uint8Array> | null} body
 * @param {number} limit
 * @returns {Promise<Buffer | undefined>}
 */
async function readBounded(body, limit) {
  if (!body) return undefined;
  /** @type {Uint8Array[]} */
  const chunks = [];
  let size = 0;
  for await (const chunk of body) {
    chunks.push(chunk);
    size += chunk.byteLength;
    if (size > limit) break;
  }
  return Buffer.concat(chunks, Math.min(size, limit + 1));
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
  if (method === "HEAD" || BODILESS.has(answer.status)) {
    // Read to the end all the same: the request's chores finish with the body.
    while (await answer.read());
    return new Response(null, { status: answer.status, headers });
  }
  const body = new ReadableStream(
    {
      async pull(controller) {
        const chunk = await answer.read();
        if (chunk) controller.enqueue(new Uint8Array(chunk.buffer, chunk.byteOffset, chunk.byteLength));
        else controller.close();
      },
      cancel() {
        answer.cancel();
      },
    },
    { highWaterMark: 0 },
  );
  return new Response(body, { status: answer.status, headers });
}
