import type { MessagePort } from 'node:worker_threads';
import { afterEach, expect, test } from 'vitest';
import { type BatchedFn, batchedFn } from 'batched-fn';

const callsHome = new URL('./fixtures/calls-home.worker.mjs', import.meta.url);
const exits = new URL('./fixtures/faulty.worker.mjs', import.meta.url);
let predict: BatchedFn<number, number> | BatchedFn<string, string> | undefined;
afterEach(async () => {
  await predict?.close();
  predict = undefined;
});

/** Answers every question on `port` with its value times ten, and counts the questions. */
function answerer(ports: { worker: number; port: MessagePort }[], asked: number[]) {
  return (port: MessagePort, worker: number) => {
    ports.push({ worker, port });
    port.on('message', ({ id, value }: { id: number; value: number }) => {
      asked.push(value);
      port.postMessage({ id, answer: value * 10 });
    });
    port.unref();
  };
}

test("connectWorker: each worker's module gets its own port to this thread, and calls back through it", async () => {
  const ports: { worker: number; port: MessagePort }[] = [];
  const asked: number[] = [];
  const tens = batchedFn<number, number>({
    worker: callsHome,
    workers: 2,
    maxBatchSize: 4,
    maxDelay: 0,
    connectWorker: answerer(ports, asked),
  });
  predict = tens;
  await tens.ready();
  expect(ports.map((p) => p.worker).sort()).toEqual([0, 1]);
  const answers = await Promise.all(Array.from({ length: 12 }, (_, i) => tens(i)));
  expect(answers).toEqual(Array.from({ length: 12 }, (_, i) => i * 10));
  expect(asked.sort((a, b) => a - b)).toEqual(Array.from({ length: 12 }, (_, i) => i));
});

test('connectWorker: a restarted worker gets a fresh channel, and the old port closes with its thread', async () => {
  const ports: { worker: number; port: MessagePort }[] = [];
  const closed: number[] = [];
  const exiting = batchedFn<string, string>({
    worker: exits,
    workers: 1,
    maxBatchSize: 1,
    maxDelay: 0,
    connectWorker: (port, worker) => {
      ports.push({ worker, port });
      port.on('close', () => closed.push(worker));
      port.unref();
    },
  });
  predict = exiting;
  await exiting.ready();
  expect(ports).toHaveLength(1);
  // 'exit' ends the fixture's thread mid-batch (faulty.worker.mjs).
  await expect(exiting('exit')).rejects.toMatchObject({ code: 'ERR_WORKER_EXITED' });
  await expect.poll(() => closed).toEqual([0]);
  await expect(exiting('fine')).resolves.toBe('fine');
  expect(ports.map((p) => p.worker)).toEqual([0, 0]);
  expect(ports[0]?.port).not.toBe(ports[1]?.port);
});

test('connectWorker must be a function', () => {
  expect(() =>
    batchedFn({ worker: callsHome, connectWorker: 'yes' as unknown as (port: MessagePort) => void }),
  ).toThrow(/connectWorker/);
});
