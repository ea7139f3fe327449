/**
 * One step of an ensemble, in Triton's terms and field names (model_config.proto's
 * `ModelEnsembling.Step`): the model it calls and how ensemble tensors flow in and out of it. The
 * repository reads and checks it (repository/ensemble-config.ts), the ensemble runs it
 * (formats/ensemble.ts), and the model configuration extension shows it as it was written.
 */
export interface EnsembleStep {
  /** The model this step calls. */
  model_name: string;
  /** -1: the version the model serves requests that name none (its highest); else that version. */
  model_version: number;
  /** The step model's input name → the ensemble tensor it reads. */
  input_map: Readonly<Record<string, string>>;
  /** The step model's output name → the ensemble tensor it writes. */
  output_map: Readonly<Record<string, string>>;
}

/** Triton's `ensemble_scheduling`: the steps, in the order the config lists them. */
export interface EnsembleScheduling {
  step: readonly EnsembleStep[];
}
