// tokenrelay's relay as a Netlify Function: /api/relay/<upstream>/<path> calls the
// upstream with its credentials attached (added by `npx tokenrelay init --framework netlify-functions`).
import { createRelay } from "tokenrelay/fetch";

const relay = createRelay();

// Netlify passes the visitor's address in the context (context.ip).
export default (request: Request, context: { ip?: string }) => relay(request, context);

export const config = { path: ["/api/relay", "/api/relay/*"] };
