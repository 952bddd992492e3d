// The check every test makes of what the code under test printed or answered.

import assert from "node:assert/strict";

/**
 * Fails if `text` holds any of `secrets` (empty ones are skipped), naming
 * where it was found but not which value.
 * @param {string} text
 * @param {Iterable<string | undefined>} secrets
 * @param {string} [where]
 */
export function assertNoSecret(text, secrets, where = "the output") {
  for (const secret of secrets) {
    if (secret) assert.ok(!text.includes(secret), `a secret is in ${where}:\n${text}`);
  }
}
