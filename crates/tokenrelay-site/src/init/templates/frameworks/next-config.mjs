// tokenrelay/fetch is a native addon: Next.js loads it from node_modules instead of bundling
// it. The relay reads tokenrelay.toml at run time, which file tracing cannot see: the relay's
// function carries it only when included here (the key is a glob over routes).
/** @type {import("next").NextConfig} */
const nextConfig = {
  serverExternalPackages: ["tokenrelay"],
  outputFileTracingIncludes: { "/api/relay/**": ["./tokenrelay.toml"] },
};

export default nextConfig;
