// tokenrelay's relay: /api/relay/<upstream>/<path> calls the upstream with its
// credentials attached on the server (added by `npx tokenrelay init --framework next`).
// next.config needs `serverExternalPackages: ["tokenrelay"]`: the relay is a native addon.
import { createRelay } from "tokenrelay/fetch";

const relay = createRelay();
const handle = (request: Request) => relay(request);

// Never prerendered, and on Node.js (a native addon does not run on the Edge runtime).
export const dynamic = "force-dynamic";
export const runtime = "nodejs";
export const GET = handle;
export const HEAD = handle;
export const POST = handle;
export const OPTIONS = handle;
