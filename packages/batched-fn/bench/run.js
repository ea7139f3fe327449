// `npm run bench`: each benchmark in its own process so one cannot warm or fragment the heap of another.
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const here = (name) => fileURLToPath(new URL(name, import.meta.url));
for (const [file, flags] of [
  ['queue-overhead.js', []],
  ['simulated-model.js', []],
  ['memory.js', ['--expose-gc']],
  ['workers.js', []],
  ['adaptive.js', []],
  ['stream.js', []],
]) {
  const result = spawnSync(process.execPath, [...flags, here(file)], { stdio: 'inherit' });
  if (result.status !== 0) process.exit(result.status ?? 1);
}
