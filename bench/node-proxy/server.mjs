// Node's own proxy hop, the JS handler's physical limit as nginx is the
// relay's: node:http in, `http.request` out over keep-alive connections, the
// credentials as a fixed header, the answer piped back as it comes. No token,
// no rule, no log: what the JS handler adds beyond this row is its own cost.
//
// Environment (set by the benchmark):
//   PORT               port to listen on (127.0.0.1)
//   PROXY_ROUTES       JSON list of { prefix, origin, basePath, authorization }:
//                      `<prefix>/<rest>` goes to `<origin><basePath>/<rest>`
import http from "node:http";

const routes = JSON.parse(process.env.PROXY_ROUTES ?? "[]").map((r) => ({
  ...r,
  prefix: `${r.prefix}/`,
  url: new URL(r.origin),
  basePath: r.basePath.replace(/\/$/, ""),
}));
const agent = new http.Agent({ keepAlive: true, maxSockets: Infinity });

const server = http.createServer((req, res) => {
  const url = req.url ?? "/";
  const route = routes.find((r) => url.startsWith(r.prefix));
  if (!route) {
    res.writeHead(404).end();
    return;
  }
  const headers = { ...req.headers, host: route.url.host, authorization: route.authorization };
  const upstream = http.request(
    {
      agent,
      method: req.method,
      hostname: route.url.hostname,
      port: route.url.port,
      path: `${route.basePath}/${url.slice(route.prefix.length)}`,
      headers,
    },
    (answer) => {
      res.writeHead(answer.statusCode ?? 502, answer.headers);
      answer.pipe(res);
    },
  );
  upstream.on("error", () => {
    if (res.headersSent) res.destroy();
    else res.writeHead(502).end();
  });
  req.pipe(upstream);
});
server.keepAliveTimeout = 60_000;
server.listen(Number(process.env.PORT), "127.0.0.1", () => console.log("node-proxy listening"));
