// The benchmark's realistic upstream: an OAuth2 issuer and an API in one
// process, where the API does what real ones do per request: verify the
// caller's RS256 JWT (RFC 7519, RFC 7515) against the issuer's JWKS
// (RFC 7517), check its claims, and answer with JSON. No dependencies:
// node:crypto verifies.
//
// Environment (set by the benchmark):
//   PORT                          port to listen on (127.0.0.1)
//   JWT_API_CLIENT_ID/_SECRET     the only client the token endpoint accepts
//   JWT_API_TOKEN_LIFETIME_SECS   lifetime of issued tokens (default 1800)
//
// Routes: POST /token (client credentials, HTTP Basic), GET /.well-known/jwks.json,
// and GET anything else: the API, 401 without a valid token.
import crypto from "node:crypto";
import http from "node:http";

const env = process.env;
const lifetime = Number(env.JWT_API_TOKEN_LIFETIME_SECS ?? 1800);
const basic = `Basic ${Buffer.from(`${env.JWT_API_CLIENT_ID}:${env.JWT_API_CLIENT_SECRET}`).toString("base64")}`;
const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: 2048 });
const kid = crypto.randomBytes(8).toString("hex");
const jwks = { keys: [{ ...publicKey.export({ format: "jwk" }), kid, alg: "RS256", use: "sig" }] };
let issuer = "";
const AUDIENCE = "bench-api";

/** @type {Map<string, crypto.KeyObject>} kid → key, loaded from the JWKS over HTTP as an API would. */
const keys = new Map();
/** Resolved once `keys` is loaded: the port accepts connections before, and a call must not get a 401 for it. */
let keysLoaded = () => {};
const loaded = new Promise((resolve) => {
  keysLoaded = () => resolve(undefined);
});

const b64url = (/** @type {Buffer|string} */ data) => Buffer.from(data).toString("base64url");

function issue() {
  const now = Math.floor(Date.now() / 1000);
  const header = b64url(JSON.stringify({ alg: "RS256", typ: "JWT", kid }));
  const claims = b64url(
    JSON.stringify({ iss: issuer, aud: AUDIENCE, sub: env.JWT_API_CLIENT_ID, iat: now, exp: now + lifetime }),
  );
  const signature = crypto.sign("RSA-SHA256", Buffer.from(`${header}.${claims}`), privateKey);
  return `${header}.${claims}.${b64url(signature)}`;
}

/** The verified claims of `authorization`, or null. */
function verify(/** @type {string|undefined} */ authorization) {
  const token = authorization?.startsWith("Bearer ") ? authorization.slice(7) : "";
  const [header, claims, signature] = token.split(".");
  if (!signature) return null;
  let h, c;
  try {
    h = JSON.parse(Buffer.from(header, "base64url").toString());
    c = JSON.parse(Buffer.from(claims, "base64url").toString());
  } catch {
    return null;
  }
  const key = h.alg === "RS256" ? keys.get(h.kid) : undefined;
  if (
    !key ||
    !crypto.verify("RSA-SHA256", Buffer.from(`${header}.${claims}`), key, Buffer.from(signature, "base64url"))
  ) {
    return null;
  }
  const now = Date.now() / 1000;
  return c.iss === issuer && c.aud === AUDIENCE && typeof c.exp === "number" && c.exp > now ? c : null;
}

// With Content-Length, as Express's res.json() sends it.
const json = (/** @type {http.ServerResponse} */ res, /** @type {number} */ status, /** @type {unknown} */ body) => {
  const text = JSON.stringify(body);
  res.writeHead(status, { "content-type": "application/json", "content-length": Buffer.byteLength(text) }).end(text);
};

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url ?? "/", issuer);
  if (req.method === "POST" && url.pathname === "/token") {
    req.resume();
    req.on("end", () => {
      if (req.headers.authorization !== basic) return json(res, 401, { error: "invalid_client" });
      json(res, 200, { access_token: issue(), token_type: "Bearer", expires_in: lifetime });
    });
    return;
  }
  if (url.pathname === "/.well-known/jwks.json") return json(res, 200, jwks);
  await loaded;
  const claims = verify(req.headers.authorization);
  if (!claims) return json(res, 401, { error: "invalid_token" });
  json(res, 200, {
    result_count: 2,
    phrase: url.searchParams.get("phrase"),
    client: claims.sub,
    images: [
      { id: "1", title: "A cat", uri: "https://images.example/1.jpg" },
      { id: "2", title: "Another cat", uri: "https://images.example/2.jpg" },
    ],
  });
});

server.keepAliveTimeout = 60_000;
server.listen(Number(env.PORT), "127.0.0.1", async () => {
  issuer = `http://127.0.0.1:${env.PORT}`;
  const fetched = await (await fetch(`${issuer}/.well-known/jwks.json`)).json();
  for (const jwk of fetched.keys) keys.set(jwk.kid, crypto.createPublicKey({ key: jwk, format: "jwk" }));
  keysLoaded();
  console.log(`jwt-api listening on ${issuer}`);
});
