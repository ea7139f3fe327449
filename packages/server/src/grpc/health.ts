import type { Server, ServerUnaryCall, ServerWritableStream, UntypedServiceImplementation } from '@grpc/grpc-js';
import { HealthImplementation, type ServingStatus } from 'grpc-health-check';
import type { InferenceFront } from '../protocol/infer-front.js';

/**
 * The standard gRPC health service (`grpc.health.v1.Health`: Check, Watch, List), as Kubernetes
 * `grpc:` probes and `grpc_health_probe` call it. The service itself is grpc-health-check's; this
 * keeps its statuses true:
 *
 * - `""` (the server) is SERVING while the server is ready: not before it has started, nor once
 *   it drains;
 * - each model, under its own name, is SERVING while it is READY and the server is, so it follows
 *   unload, load and failed loads (the registry tells of every state change) and drain.
 *
 * Triton's own Check answers the server's readiness whatever service is named; here a model's
 * name answers for the model, and a name the server does not have is NOT_FOUND (Watch: the
 * standard SERVICE_UNKNOWN, the call kept open).
 */
export class GrpcHealth {
  readonly #service = new HealthImplementation();
  readonly #front: InferenceFront;
  /** What each service was last set to: grpc-health-check writes to every watcher on each setStatus, changed or not. */
  readonly #statuses = new Map<string, ServingStatus>();
  readonly #watches = new Set<ServerWritableStream<unknown, unknown>>();
  #draining = false;
  #closed = false;
  readonly #unsubscribe: () => void;

  constructor(front: InferenceFront) {
    this.#front = front;
    this.#unsubscribe = front.registry.onChange(() => this.sync());
    this.sync();
  }

  /** Re-reads the server's and the models' readiness; watchers hear of what changed. */
  sync(): void {
    if (this.#closed) return;
    const server = !this.#draining && this.#front.isReady();
    this.#set('', server ? 'SERVING' : 'NOT_SERVING');
    for (const entry of this.#front.registry.entries())
      this.#set(entry.name, server && entry.state === 'READY' ? 'SERVING' : 'NOT_SERVING');
  }

  /**
   * The server drains: every service is NOT_SERVING from now on, watchers are told so, then
   * their calls end (OK), so that they do not hold the server's graceful shutdown open.
   */
  drain(): void {
    this.#draining = true;
    this.sync();
    // No status changes after this: the watchers of ended calls must never be written to.
    this.#closed = true;
    this.#unsubscribe();
    for (const call of this.#watches) call.end();
    this.#watches.clear();
  }

  /** Adds the health service to `server` (the server's interceptors, `--grpc-restricted-protocol`'s among them, apply to it). */
  addTo(server: Server): void {
    // grpc-health-check adds its own implementation: it is handed a server whose addService lets
    // us see the Watch calls (to end them at drain, and to drop what the package keeps of them).
    this.#service.addToServer({
      addService: (definition, implementation) => {
        const check = implementation.check as (call: ServerUnaryCall<unknown, unknown>, callback: unknown) => void;
        const watch = implementation.watch as (call: ServerWritableStream<{ service: string }, unknown>) => void;
        const wrapped: UntypedServiceImplementation = {
          ...implementation,
          check: (call: ServerUnaryCall<unknown, unknown>, callback: unknown) => {
            // Cheap, and true even if a change reached no listener (the server's own readiness is a flag).
            this.sync();
            check(call, callback);
          },
          watch: (call: ServerWritableStream<{ service: string }, unknown>) => {
            this.sync();
            if (this.#closed) {
              call.write({ status: 'NOT_SERVING' });
              call.end();
              return;
            }
            const name = call.request.service;
            this.#watches.add(call as ServerWritableStream<unknown, unknown>);
            // After the package's own 'cancelled' listener (added in watch) removed its watcher.
            watch(call);
            call.once('cancelled', () => {
              this.#watches.delete(call as ServerWritableStream<unknown, unknown>);
              this.#forget(name);
            });
          },
        };
        server.addService(definition as never, wrapped);
      },
    });
  }

  #set(name: string, status: ServingStatus): void {
    if (this.#statuses.get(name) === status) return;
    this.#statuses.set(name, status);
    this.#service.setStatus(name, status);
  }

  /**
   * grpc-health-check keeps a set of watchers per service name and never deletes an emptied
   * one: a client watching made-up names (any string) would grow that map for good. The map is
   * the package's private field; if a later version renames it, this does nothing (and
   * triton-grpc.test.ts's leak test fails, the signal to look again).
   */
  #forget(name: string): void {
    const watchers = (this.#service as unknown as { watchers?: unknown }).watchers;
    if (watchers instanceof Map && (watchers.get(name) as Set<unknown> | undefined)?.size === 0) watchers.delete(name);
  }
}
