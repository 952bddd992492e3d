// tokenrelay's relay: /api/relay/<upstream>/<path> calls the upstream with its
// credentials attached on the server (added by `npx tokenrelay init --framework astro`).
import type { APIRoute } from "astro";
import { createRelay } from "tokenrelay/fetch";

const relay = createRelay();

// Server-rendered on every request; the adapter gives the visitor's address.
export const prerender = false;
export const ALL: APIRoute = ({ request, clientAddress }) => relay(request, { ip: clientAddress });
