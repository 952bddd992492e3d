// The baseline: a relay function written the way sites usually write one
// today. The token lives in Upstash Redis with a TTL; on a miss, whichever
// request sees it fetches a new one (no single flight), then the request is
// proxied with `fetch`. Served by node:http so that the benchmark can start it
// like any other function instance.
//
// Environment (set by the benchmark):
//   PORT                              port to listen on (127.0.0.1)
//   UPSTASH_REDIS_REST_URL/_TOKEN     the store
//   BASELINE_UPSTREAM                 upstream name in /api/relay/<name>/<path>
//   BASELINE_BASE_URL                 the upstream's base URL
//   BASELINE_TOKEN_URL                OAuth2 token endpoint (client credentials)
//   BASELINE_CLIENT_ID/_SECRET        credentials
//   BASELINE_TOKEN_MARGIN_SECS        cache the token this much shorter than
//                                     its lifetime (default 60)
import http from "node:http";
import { Redis } from "@upstash/redis";

const env = process.env;
const redis = new Redis({ url: env.UPSTASH_REDIS_REST_URL, token: env.UPSTASH_REDIS_REST_TOKEN });
const upstreams = { [env.BASELINE_UPSTREAM]: env.BASELINE_BASE_URL };
const margin = Number(env.BASELINE_TOKEN_MARGIN_SECS ?? 60);
const basic = Buffer.from(`${env.BASELINE_CLIENT_ID}:${env.BASELINE_CLIENT_SECRET}`).toString("base64");
const TOKEN_KEY = `baseline:token:${env.BASELINE_UPSTREAM}`;

/** @returns {Promise<string>} */
async function getToken() {
  const cached = await redis.get(TOKEN_KEY);
  if (cached) return /** @type {string} */ (cached);
  const res = await fetch(env.BASELINE_TOKEN_URL, {
    method: "POST",
    headers: { authorization: `Basic ${basic}`, "content-type": "application/x-www-form-urlencoded" },
    body: "grant_type=client_credentials",
  });
  if (!res.ok) throw new Error(`token endpoint answered ${res.status}`);
  const { access_token: token, expires_in: expiresIn } = await res.json();
  await redis.set(TOKEN_KEY, token, { ex: Math.max(1, Number(expiresIn) - margin) });
  return token;
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", "http://localhost");
  const match = url.pathname.match(/^\/api\/relay\/([^/]+)(\/.*)$/);
  const base = match && upstreams[match[1]];
  if (!base) {
    res.writeHead(404, { "content-type": "application/json" }).end('{"error":"not_found"}');
    return;
  }
  try {
    const token = await getToken();
    const upstream = await fetch(`${base}${match[2]}${url.search}`, { headers: { authorization: `Bearer ${token}` } });
    const body = Buffer.from(await upstream.arrayBuffer());
    res.writeHead(upstream.status, {
      "content-type": upstream.headers.get("content-type") ?? "application/octet-stream",
    });
    res.end(body);
  } catch (err) {
    console.error(err);
    res.writeHead(502, { "content-type": "application/json" }).end('{"error":"bad_gateway"}');
  }
});

server.listen(Number(env.PORT), "127.0.0.1", () => {
  console.log(`node-baseline listening port=${server.address().port}`);
});
