// Types of `tokenrelay/fetch` (fetch.js): the browse-time relay for JavaScript servers.

import type { IncomingMessage, ServerResponse } from "node:http";

/**
 * Where the visitor's address comes from (rate limits count per address):
 * - `"auto"` (default): Netlify Functions v2's `context.ip`; else `x-real-ip` when
 *   `VERCEL` is set, `x-nf-client-connection-ip` when `NETLIFY` is set; else none;
 * - `"vercel"`, `"netlify"`: that platform's own header (and Netlify's `context.ip`);
 * - `"none"`: no address; every visitor shares one rate limit;
 * - a header's name that the host sets itself, replacing the visitor's
 *   (`x-forwarded-for` and `forwarded` are refused: a visitor writes them);
 * - a function of the request (and the framework's context).
 *
 * The relay counts the first address of what the source gives: a header sent
 * twice arrives joined (`"a, b"`), and the visitor is `a`, as on the platforms' functions.
 */
export type ClientIpSource =
  | "auto"
  | "vercel"
  | "netlify"
  | "none"
  | (string & {})
  | ((request: Request, context?: unknown) => string | undefined);

/** What both handlers take: the site's options, as the package's other functions take them, and the mount. */
export interface SiteRelayOptions {
  /** The config file, relative to `cwd`. Default: `$TOKENRELAY_CONFIG`, else `tokenrelay.toml`. */
  configPath?: string;
  /** The site's directory, where the config and `.env` are looked up. Default: the current directory. */
  cwd?: string;
  /** Variables that override the process environment; `""` unsets one. */
  env?: Record<string, string>;
  /** Where the relay answers in the site's URL space. Default: `/api/relay`. */
  mount?: string;
}

/** Options of {@link createRelay}. */
export interface RelayOptions extends SiteRelayOptions {
  clientIp?: ClientIpSource;
}

/** Options of {@link createNodeRelay}. */
export interface NodeRelayOptions extends SiteRelayOptions {
  /**
   * `"socket"` (default): the connection's peer, for a server facing visitors
   * directly; a header the proxy in front sets itself; or a function of the request.
   */
  clientIp?: "socket" | (string & {}) | ((req: IncomingMessage) => string | undefined);
}

/**
 * The relay: answers every request, failures included, with the relay's own error
 * bodies (a body the visitor abandons: 400 `body_unreadable`; a panic of the relay:
 * 500 `internal_error`). Rejects only if a `clientIp` function throws.
 */
export type FetchRelay = (request: Request, context?: unknown) => Promise<Response>;

/**
 * The relay as a Fetch API handler. The config is read at the first request.
 * Throws a `TokenrelayError` (`invalid_options`) for an unusable option.
 */
export declare function createRelay(options?: RelayOptions): FetchRelay;

/**
 * The relay as a Node `http` listener or Express handler. Never rejects: every
 * request ends in an answer or a closed connection (a body over the limit is
 * answered 413 and its connection closed, without reading the rest).
 */
export declare function createNodeRelay(
  options?: NodeRelayOptions,
): (req: IncomingMessage, res: ServerResponse) => Promise<void>;
