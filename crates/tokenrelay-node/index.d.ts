// Types of the package's entry point (index.js): the addon's functions and
// objects as generated in binding.d.ts, plus the error they reject with.

export type {
  BudgetStatus,
  CacheAnswers,
  CheckOptions,
  CheckSummary,
  Credential,
  ErrorCodes,
  FileChange,
  InitOptions,
  InitReport,
  Latency,
  LatencyBucket,
  Leak,
  OutsideLink,
  PlatformHeaders,
  PrefetchedToken,
  PrefetchOptions,
  PrefetchReport,
  PurgeOptions,
  PurgeStatus,
  RelayAnswer,
  RelayBody,
  RelayHandler,
  RelayOptions,
  RelayRequest,
  RouteUsage,
  ScanOptions,
  ScanReport,
  Setting,
  SharedBuckets,
  TokenOptions,
  TokenStatus,
  UpstreamCheck,
  UpstreamStatus,
  Usage,
} from "./binding.js";
export {
  appendConfig,
  check,
  claimsMount,
  errorCodes,
  getToken,
  init,
  platforms,
  prefetch,
  purgeCache,
  relayMount,
  report,
  scanForLeaks,
  sendTestAlert,
  status,
} from "./binding.js";

/** Every `code` a {@link TokenrelayError} can carry. */
export type ErrorCode =
  /** The config file could not be read. */
  | "config_unreadable"
  /** The config file is invalid; every problem is listed. */
  | "config_invalid"
  /** Environment variables the config or store needs are not set; all are listed. */
  | "missing_env"
  /** An environment variable is set but unusable. */
  | "invalid_env"
  /** No upstream of that name is configured; the configured ones are listed. */
  | "unknown_upstream"
  /** The token endpoint refused the credentials or the request. */
  | "token_rejected"
  /** The token endpoint answered, but not with a usable token. */
  | "token_response_invalid"
  /** No token could be obtained (endpoint down or timing out), or none lasts the build margin. */
  | "token_unavailable"
  /** A cache purge could not be recorded (no cached route, store unreachable). */
  | "cache_purge_failed"
  /** The shared store could not be read (`status`). */
  | "store_unreadable"
  /** An alert was not sent: no `[alerts]` webhook, or it refused the event (`sendTestAlert`). */
  | "alert_failed"
  /** An option is unusable; the message names it. */
  | "invalid_options"
  /** The leak scan could not read the directory or a file in it. */
  | "scan_failed"
  /** The leak scan would read more than its `maxBytes` (decompressed content counted); names the file reached. */
  | "scan_too_large"
  /** `init`: a file of the site already says something else about what tokenrelay needs; the message names file and conflict. */
  | "init_conflict"
  /** `init`: no platform given and none recognisable from the site. */
  | "init_platform_unknown"
  /** `init`: a file of the site could not be read, parsed or written. */
  | "init_failed"
  /** The Netlify plugin could not write the prebuilt relay function; the message names the file and cause. */
  | "function_not_placed"
  /** No native binary loads on this platform (thrown when the package is imported). */
  | "unsupported_platform";

/** Every {@link ErrorCode}: the addon's, as `errorCodes()` gives them from Rust, and `unsupported_platform`. */
export declare const ERROR_CODES: ReadonlyArray<ErrorCode>;

/** What every function rejects with: a message that says what to fix, never a secret. */
export declare class TokenrelayError extends Error {
  constructor(code: ErrorCode, message: string);
  readonly name: "TokenrelayError";
  /** Stable and machine-readable. */
  readonly code: ErrorCode;
}

/** The native relay behind `tokenrelay/fetch` (use that); throws `invalid_options` for an unusable option. */
export declare function relayHandler(
  options?: import("./binding.js").RelayOptions,
): import("./binding.js").RelayHandler;

/**
 * One line for a prefetched token, as the CLI and the Netlify plugin print it
 * (`getty: valid until 2026-12-05T10:00:00Z (fetched), as GETTY_TOKEN`); never the token.
 */
export declare function describeToken(token: PrefetchedToken): string;
