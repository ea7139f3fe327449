// Takes docs/dashboard.png for the README: the default server (MLP + charlm) under 40 s of load
// that changes (8, then 64, then 24 clients; a few generation streams), shot in headless Chromium.
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const BIN = fileURLToPath(new URL('../bin/batched-fn.js', import.meta.url));
const OUT = fileURLToPath(new URL('../../../docs/dashboard.png', import.meta.url));
const child = spawn(process.execPath, [BIN, 'serve', '--port', '0', '--grpc-port', '0', '--threads', '1'], {
  stdio: ['ignore', 'pipe', 'inherit'],
});
let out = '';
child.stdout.on('data', (chunk) => (out += chunk));
while (!/ on (http:\/\/127\.0\.0\.1:\d+)/.test(out)) await new Promise((resolve) => setTimeout(resolve, 50));
const url = / on (http:\/\/127\.0\.0\.1:\d+)/.exec(out)[1];
const body = JSON.stringify({
  inputs: [
    { name: 'input', shape: [1, 256], datatype: 'FP32', data: Array.from({ length: 256 }, (_, i) => (i % 7) / 7) },
  ],
});
let clients = 8;
let running = true;
const loop = async (i) => {
  while (running) {
    if (i >= clients) await new Promise((resolve) => setTimeout(resolve, 50));
    else
      await fetch(`${url}/v2/models/mlp/infer`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
      });
  }
};
const loops = Array.from({ length: 64 }, (_, i) => loop(i));
const generate = async () => {
  while (running)
    await fetch(`${url}/v2/models/charlm/generate`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ text_input: 'The ', parameters: { max_tokens: 64 } }),
    });
};
const generators = Array.from({ length: 4 }, generate);
const browser = await chromium.launch({
  executablePath: '/usr/bin/chromium',
  args: [
    '--no-sandbox',
    '--disable-gpu',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    '--no-first-run',
  ],
});
const page = await browser.newPage({ viewport: { width: 1280, height: 1100 } });
await page.goto(`${url}/dashboard`);
for (const [seconds, count] of [
  [12, 8],
  [16, 64],
  [12, 24],
]) {
  clients = count;
  await new Promise((resolve) => setTimeout(resolve, seconds * 1000));
}
await page.screenshot({ path: OUT, fullPage: true });
running = false;
await Promise.all([...loops, ...generators]);
await browser.close();
child.kill('SIGTERM');
process.stdout.write(`Wrote ${OUT}\n`);
