import { expect, test } from 'vitest';
import { startTelemetry } from '../src/otel/setup.js';

// The environment --otel reads is checked before it becomes a timer or a choice of exporter.
test.each([
  [{ OTEL_BSP_SCHEDULE_DELAY: '5s' }, 'OTEL_BSP_SCHEDULE_DELAY must be milliseconds from 0 to 2147483647, got "5s"'],
  [
    { OTEL_BSP_SCHEDULE_DELAY: '99999999999' },
    'OTEL_BSP_SCHEDULE_DELAY must be milliseconds from 0 to 2147483647, got "99999999999"',
  ],
  [
    { OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc' },
    '--otel exports over http/protobuf or http/json, got OTEL_EXPORTER_OTLP_TRACES_PROTOCOL="grpc"',
  ],
])('%o is refused', async (env, message) => {
  await expect(startTelemetry(env)).rejects.toThrow(message);
});

test('the traces protocol variable wins over the general one; a collector that is down never fails shutdown', async () => {
  // Nothing listens on the exporter's default endpoint here: the last export fails, and shutdown still resolves.
  // (The exporter reads its endpoint and timeout from the standard variables; a short timeout keeps this quick.)
  process.env.OTEL_EXPORTER_OTLP_TRACES_TIMEOUT = '300';
  const telemetry = await startTelemetry({
    OTEL_EXPORTER_OTLP_PROTOCOL: 'grpc',
    OTEL_EXPORTER_OTLP_TRACES_PROTOCOL: 'http/json',
    OTEL_BSP_SCHEDULE_DELAY: '0',
  });
  telemetry.tracer.startSpan('x').end();
  await expect(telemetry.shutdown()).resolves.toBeUndefined();
});
