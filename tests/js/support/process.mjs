// Running a command to its end, bounded: what every JS test that runs the CLI,
// node, npm or netlify-cli shares.

import { spawn } from "node:child_process";

/**
 * @typedef {object} Finished
 * @property {number | null} status the exit status (`null` when a signal ended it)
 * @property {string} stdout
 * @property {string} stderr
 * @property {string} output stdout and stderr interleaved as they came
 */

/**
 * Runs `file args` with no stdin and resolves when it exits; rejects, after
 * killing it, if it takes longer than `timeoutMs`, with what it printed so far.
 * @param {string} file
 * @param {string[]} args
 * @param {{ cwd?: string, env?: NodeJS.ProcessEnv, timeoutMs: number }} options
 * @returns {Promise<Finished>}
 */
export function run(file, args, { cwd, env, timeoutMs }) {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env, stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    let output = "";
    child.stdout.on("data", (d) => {
      stdout += d;
      output += d;
    });
    child.stderr.on("data", (d) => {
      stderr += d;
      output += d;
    });
    const timer = setTimeout(() => {
      child.kill("SIGKILL");
      reject(new Error(`${file} ${args.join(" ")} did not finish in ${timeoutMs} ms:\n${output}`));
    }, timeoutMs);
    child.once("error", (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.once("exit", (status) => {
      clearTimeout(timer);
      resolve({ status, stdout, stderr, output });
    });
  });
}
