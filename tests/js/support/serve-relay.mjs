// A Node server over tokenrelay/fetch, for the relay-e2e checklist
// (crates/tokenrelay-node/tests/fetch_relay.rs) and the bench's JS handler row:
// `node serve-relay.mjs fetch` (the default) serves createRelay as frameworks do (each
// request becomes a Fetch API Request, its Response is written back), `node
// serve-relay.mjs node` serves createNodeRelay. It listens on 127.0.0.1:$PORT, says
// `listening` on stdout, and answers /_ready. The visitor's address is the x-real-ip
// header the test's front sets, as Vercel does (none without it); `node serve-relay.mjs
// node socket` leaves createNodeRelay's default, the connection's peer, as the README's
// `http.createServer(createNodeRelay())` does. It exits on SIGTERM, so that a profiler
// started with it (`NODE_OPTIONS=--cpu-prof`) writes its output.

import http from "node:http";
import { Readable } from "node:stream";
import { createNodeRelay, createRelay } from "tokenrelay/fetch";

/**
 * As Next.js, Astro or SvelteKit on Node do: the request as a Fetch API Request, the Response written back.
 * @param {import("tokenrelay/fetch").FetchRelay} relay
 * @returns {http.RequestListener}
 */
function fetchListener(relay) {
  return async (req, res) => {
    /** @type {Request} */
    let request;
    try {
      const headers = new Headers();
      for (let i = 0; i < req.rawHeaders.length; i += 2) headers.append(req.rawHeaders[i], req.rawHeaders[i + 1]);
      const hasBody = req.method !== "GET" && req.method !== "HEAD";
      request = new Request(`http://${req.headers.host ?? "localhost"}${req.url}`, {
        method: req.method,
        headers,
        body: hasBody ? /** @type {ReadableStream} */ (Readable.toWeb(req)) : undefined,
        // @ts-ignore: Node's fetch needs it for a streamed body; not in the DOM types.
        duplex: "half",
      });
    } catch {
      // What no Fetch API Request can hold (a TRACE, a host with a space): the framework's 400.
      res.writeHead(400).end();
      return;
    }
    // Not caught: the handler must answer every request itself.
    const response = await relay(request);
    /** @type {string[]} */
    const flat = [];
    response.headers.forEach((value, name) => {
      if (name !== "set-cookie") flat.push(name, value);
    });
    for (const cookie of response.headers.getSetCookie()) flat.push("set-cookie", cookie);
    res.writeHead(response.status, flat);
    try {
      if (response.body) for await (const chunk of response.body) res.write(chunk);
      res.end();
    } catch {
      res.destroy();
    }
  };
}

const adapter = process.argv[2] ?? "fetch";
const clientIp = process.argv[3] ?? "x-real-ip";
const listener =
  adapter === "node"
    ? createNodeRelay(clientIp === "socket" ? {} : { clientIp })
    : fetchListener(createRelay({ clientIp }));

http
  .createServer((req, res) => {
    if (req.url === "/_ready") res.end("ready");
    else listener(req, res);
  })
  .listen(Number(process.env.PORT), "127.0.0.1", () => console.log(`serve-relay ${adapter} listening`));

process.on("SIGTERM", () => process.exit(0));
