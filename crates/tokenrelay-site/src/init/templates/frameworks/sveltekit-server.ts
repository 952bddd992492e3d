// tokenrelay's relay: /api/relay/<upstream>/<path> calls the upstream with its
// credentials attached on the server (added by `npx tokenrelay init --framework sveltekit`).
import type { RequestHandler } from "@sveltejs/kit";
import { createRelay } from "tokenrelay/fetch";

const relay = createRelay();

// Every method; the adapter gives the visitor's address.
export const fallback: RequestHandler = ({ request, getClientAddress }) =>
  relay(request, { ip: getClientAddress() });
