/**
 * Why a model could not be served, for every format and repository: a load that failed, timed out,
 * or was cancelled by an unload. Each says what, in one line, with a stable `code`.
 */

/** A model file that cannot be served: said in one line, naming the file, instead of a stack trace. */
export class ModelLoadError extends Error {
  override name = 'ModelLoadError';
  readonly code: 'ERR_MODEL_LOAD' | 'ERR_LOAD_TIMEOUT' | 'ERR_LOAD_CANCELLED' = 'ERR_MODEL_LOAD';
}

/** A load that did not finish within its `loadTimeout`: its workers were stopped, and the model is UNAVAILABLE. */
export class LoadTimeoutError extends ModelLoadError {
  override name = 'LoadTimeoutError';
  override readonly code = 'ERR_LOAD_TIMEOUT';
}

/** A load given up because the model was unloaded meanwhile. */
export class LoadCancelledError extends ModelLoadError {
  override name = 'LoadCancelledError';
  override readonly code = 'ERR_LOAD_CANCELLED';
}
