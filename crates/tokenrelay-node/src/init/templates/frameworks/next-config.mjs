// tokenrelay/fetch is a native addon: Next.js must load it from node_modules, not bundle it.
/** @type {import("next").NextConfig} */
const nextConfig = {
  serverExternalPackages: ["tokenrelay"],
};

export default nextConfig;
