import { readFileSync } from 'node:fs';

/**
 * The load generator's own ceiling. autocannon and the gRPC client each run on this process's main
 * thread, so they cannot send more than one core's worth of requests: at C µs of main-thread CPU per
 * request, about 1e6 / C per second, whatever the server could take. A run that kept the thread near
 * fully busy measured the generator, not the server. The ceiling is read from the CPU the thread
 * spent during the runs themselves, with no extra calibration run competing for the cores.
 */

/** Linux's USER_HZ, the unit of /proc's CPU times: 100 on every architecture Node supports. */
const TICKS_PER_SECOND = 100;

/**
 * Microseconds of CPU spent so far by this (the main) thread: `process.threadCpuUsage` where Node has
 * it (23.9 and later), else /proc/thread-self/stat on Linux (10 ms ticks), else the whole process's,
 * which also counts GC and libuv threads and so understates the ceiling.
 */
function threadCpuMicros(): number {
  const threadCpu = (process as { threadCpuUsage?: () => NodeJS.CpuUsage }).threadCpuUsage;
  if (typeof threadCpu === 'function') {
    const usage = threadCpu.call(process);
    return usage.user + usage.system;
  }
  try {
    // Fields after the command's closing parenthesis: state is the 3rd field, utime the 14th, stime the 15th.
    const stat = readFileSync('/proc/thread-self/stat', 'utf8');
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const ticks = Number(fields[11]) + Number(fields[12]);
    if (Number.isFinite(ticks)) return (ticks * 1e6) / TICKS_PER_SECOND;
  } catch {
    // Not Linux: the process's CPU below.
  }
  const usage = process.cpuUsage();
  return usage.user + usage.system;
}

/** Starts measuring; the function returned gives the share of one core the thread used since (0.93 = 93 %). */
export function startCpuMeter(): () => number {
  const cpu = threadCpuMicros();
  const wall = performance.now();
  return () => {
    const seconds = (performance.now() - wall) / 1000;
    return seconds > 0 ? (threadCpuMicros() - cpu) / 1e6 / seconds : 0;
  };
}

/** A share of one core above which a run is the generator's figure more than the server's. */
export const GENERATOR_BOUND = 0.8;

/**
 * Requests per second the generator could send with its thread fully busy: each run's rate divided by
 * its busy share, and the highest of those (the run whose requests cost the thread least; work is
 * shared across requests under load). Never below a rate a run reached, as each estimate is at least
 * its run's rate. Undefined when no run used measurable CPU.
 */
export function generatorCeiling(
  results: readonly { requestsPerSecond: number; generatorCpu: number }[],
): number | undefined {
  let ceiling: number | undefined;
  for (const r of results) {
    if (!(r.generatorCpu > 0 && r.requestsPerSecond > 0)) continue;
    const estimate = r.requestsPerSecond / Math.min(1, r.generatorCpu);
    if (ceiling === undefined || estimate > ceiling) ceiling = estimate;
  }
  return ceiling;
}
