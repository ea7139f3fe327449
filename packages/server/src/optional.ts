/** An optional package a feature needs is not installed: said in one line, with the command that fixes it. */
export class MissingPackageError extends Error {
  override name = 'MissingPackageError';
}

/**
 * Loads a module of a feature that rests on optional packages (`--redis` on
 * @batched-fn/redis and ioredis), so a plain `serve` never needs them, and a
 * missing one is a clear message instead of a resolution stack trace.
 */
export async function loadOptional<T>(
  feature: string,
  packages: readonly string[],
  load: () => Promise<T>,
): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const missing = packages.filter(
      (name) =>
        (error as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND' &&
        String((error as Error).message).includes(`'${name}'`),
    );
    if (missing.length === 0) throw error;
    throw new MissingPackageError(
      `${feature} needs ${packages.join(' and ')}, which are optional: npm install ${packages.join(' ')}`,
    );
  }
}

export const REDIS_PACKAGES = ['@batched-fn/redis', 'ioredis'] as const;
export const OTEL_PACKAGES = [
  '@opentelemetry/api',
  '@opentelemetry/core',
  '@opentelemetry/sdk-trace',
  '@opentelemetry/resources',
  '@opentelemetry/exporter-trace-otlp-proto',
  '@opentelemetry/exporter-trace-otlp-http',
] as const;
