import type { FastifyInstance } from 'fastify';
import type { TraceSwitch } from '../otel/trace-switch.js';
import type { InferenceFront } from './infer-front.js';
import { registerLoggingRoutes } from './log-settings.js';
import { registerModelConfigRoutes } from './model-config.js';
import { registerTraceRoutes } from './trace-settings.js';

/**
 * The REST routes of Triton's model configuration, logging and trace extensions (their gRPC
 * twins are grpc/extensions.ts). Each adds its name to the server's extensions as it registers.
 */
export function registerExtensionRoutes(app: FastifyInstance, front: InferenceFront, options: { traceSwitch?: TraceSwitch | undefined } = {}): void {
  registerModelConfigRoutes(app, front);
  registerLoggingRoutes(app, front);
  registerTraceRoutes(app, front, options.traceSwitch);
}
