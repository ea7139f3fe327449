/**
 * The protocol extensions a server serves, as `/v2` (and gRPC ServerMetadata) lists them. Nobody
 * keeps the list by hand: each feature adds its name where it is wired (a route registered, an
 * RPC served, a path of the infer front), so the list is exactly what works on this server.
 * REST and gRPC share one set (server.ts hands the same one to both fronts), so both answer the same.
 *
 * Triton's names: `binary_tensor_data`, `classification`, `schedule_policy`, `model_configuration`,
 * `model_repository`, `statistics`, `logging`, `trace`, `system_shared_memory`, `generate`, ...
 */
export class ServerExtensions {
  readonly #names = new Set<string>();

  /** Says that `name` works on this server; adding it twice is a no-op. */
  add(name: string): this {
    this.#names.add(name);
    return this;
  }

  has(name: string): boolean {
    return this.#names.has(name);
  }

  /** The names, in the order features registered. */
  list(): string[] {
    return [...this.#names];
  }
}
