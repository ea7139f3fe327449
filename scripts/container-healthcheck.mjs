// The image's HEALTHCHECK: exit 0 when the server answers GET /v2/health/ready with 200 (ready: started, not
// draining), else 1. `docker run` may pass --host or --port, so they are read from the server's own command line
// (PID 1, the entrypoint's), with the parser's rule: the last occurrence wins, as `--flag value` or `--flag=value`.
import { readFileSync } from 'node:fs';

const argv = readFileSync('/proc/1/cmdline', 'utf8').split('\0');

/** The value of `--name` on the server's command line, or undefined. */
function flag(name) {
  let value;
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === `--${name}`) value = argv[i + 1];
    else if (argv[i]?.startsWith(`--${name}=`)) value = argv[i]?.slice(name.length + 3);
  }
  return value;
}

const port = Number(flag('port') ?? process.env.BATCHED_FN_PORT ?? 8000);
// `--port 0` picks a port this check cannot know: report unhealthy, saying why, rather than probing a wrong one.
if (!Number.isInteger(port) || port < 1 || port > 65_535) {
  console.error(`healthcheck: no fixed --port on the server's command line (${JSON.stringify(flag('port'))})`);
  process.exit(1);
}
let host = flag('host') ?? process.env.BATCHED_FN_HOST ?? '127.0.0.1';
// A wildcard address is reached on loopback; an IPv6 literal needs brackets in a URL.
if (host === '0.0.0.0') host = '127.0.0.1';
else if (host === '::') host = '[::1]';
else if (host.includes(':')) host = `[${host}]`;

try {
  const response = await fetch(`http://${host}:${port}/v2/health/ready`, { signal: AbortSignal.timeout(4_000) });
  process.exit(response.status === 200 ? 0 : 1);
} catch (error) {
  console.error(`healthcheck: ${error instanceof Error ? error.message : String(error)}`);
  process.exit(1);
}
