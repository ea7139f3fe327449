/**
 * onnxruntime-node's telemetry writes an empty `mat-debug-<pid>.log` into the
 * temp folder of every process that creates a session (and would try to upload
 * over HTTPS). A server should not litter, so it is off unless the operator set
 * ORT_DISABLE_TELEMETRY themselves. It must be set in the main thread, before
 * the first session anywhere: a worker thread's process.env is its own copy, and
 * the native library reads the process's real environment.
 */
process.env.ORT_DISABLE_TELEMETRY ??= '1';

export {};
