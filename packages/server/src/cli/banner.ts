import type { ModelEntry } from '../repository/registry.js';
import type { ServedModel } from '../model/served-model.js';

/**
 * What `serve` prints once it listens: the models with their own batch settings (a repository's
 * config.json may set each), a "Try it" line a user can paste, and the other addresses.
 */

/** A "Try it" command is at most this long, so that it is one line on a terminal. */
export const TRY_IT_WIDTH = 120;

export interface BannerFacts {
  url: string;
  grpcUrl: string | undefined;
  entries: readonly ModelEntry[];
  ready: readonly ServedModel[];
  /** Batches run by remote workers through Redis: the settings are theirs. */
  remote: boolean;
  dashboard: boolean;
}

const formatDelay = (delay: number | 'auto'): string => (delay === 'auto' ? 'auto' : `${delay} ms`);

/** A model's own live batch settings: `max batch 64, max delay auto, 1 worker(s) x 2 thread(s)`. */
export function batchSettings(model: ServedModel): string {
  const { maxBatchSize, maxDelay, concurrency } = model.batcher.settings;
  const threads = model.config?.threads;
  const generator = model.generator;
  if (generator !== undefined)
    return `generator, max active ${generator.maxActive}, ${generator.batching} batching, ${concurrency} worker(s)`;
  // An ensemble has no workers: its batcher runs requests' flows, each step batched by its own model.
  const steps = model.config?.ensembleScheduling?.step;
  if (steps !== undefined) {
    const names = [...new Set(steps.map((step) => step.model_name))].join(', ');
    return `ensemble of ${steps.length} step(s) (${names}), max batch ${model.maxBatchSize}, ${concurrency} at once`;
  }
  if (model.maxBatchSize === 0) return `no batch dimension (one request per run), ${concurrency} worker(s)`;
  return (
    `max batch ${maxBatchSize}, max delay ${formatDelay(maxDelay)}, ` +
    `${concurrency} worker(s)${threads === undefined ? '' : ` x ${threads} thread(s)`}`
  );
}

export function banner(facts: BannerFacts): string {
  const { url, entries, ready } = facts;
  const settingsOf = (name: string): string => {
    if (facts.remote) return 'batches run by remote workers through Redis';
    const model = ready.find((m) => m.name === name);
    return model === undefined ? '' : batchSettings(model);
  };
  let text: string;
  if (entries.length === 0)
    text = `batched-fn serving no model yet (load them with POST /v2/repository/models/NAME/load) on ${url}\n`;
  else if (entries.length === 1 && entries[0]?.state === 'READY')
    text = `batched-fn serving model "${entries[0].name}" on ${url} (${settingsOf(entries[0].name)})\n`;
  else
    text =
      `batched-fn serving ${entries.length === 1 ? 'model' : `${entries.length} models`} on ${url}\n` +
      entries
        .map((entry) =>
          entry.state === 'READY'
            ? `  model "${entry.name}": ${settingsOf(entry.name)}\n`
            : `  model "${entry.name}" is ${entry.state}: ${entry.reason}\n`,
        )
        .join('');
  // A generator answers no /infer: the first model that does is the one to try.
  const first = ready.find((m) => m.generator === undefined);
  if (first !== undefined) {
    const command = tryIt(url, first);
    const what = command.includes('/infer ')
      ? ''
      : ' (the inputs an /infer request needs; one is too long to type here)';
    text += `Try it${what}:\n  ${command}\n`;
  }
  if (facts.grpcUrl !== undefined) text += `gRPC: ${facts.grpcUrl} (inference.GRPCInferenceService)\n`;
  text += `Metrics: ${url}/metrics${facts.dashboard ? `   Dashboard: ${url}/dashboard` : ''}\n`;
  return `${text}Stop: Ctrl-C (in-flight requests are answered first)\n`;
}

/**
 * A command that works for this model and fits one line: an inference request when its body is
 * small enough to type, else the model's metadata (its inputs, their types and shapes), which says
 * what the body holds. A body cannot be cut short: JSON with `…` in it is no request at all.
 */
export function tryIt(url: string, model: ServedModel, width = TRY_IT_WIDTH): string {
  const body = exampleBody(model);
  const path = `${url}/v2/models/${encodeURIComponent(model.name)}`;
  const infer = `curl -s ${path}/infer -H content-type:application/json -d '${body}'`;
  // The body goes in single quotes: a name with a quote in it could not be pasted as it is.
  if (infer.length <= width && !body.includes("'")) return infer;
  return `curl -s ${path}`;
}

/** One value of each datatype that any model of it accepts. */
function exampleValue(datatype: string): unknown {
  if (datatype === 'BYTES') return 'a';
  if (datatype === 'BOOL') return false;
  return 0;
}

/** A request every input of the model accepts: one row (the declared shape without a batch dimension). */
export function exampleBody(model: ServedModel): string {
  const inputs = model.signature.inputs.map((input) => {
    // One row of a model that batches; the whole declared shape of one that does not (maxBatchSize 0).
    const declared = model.maxBatchSize === 0 ? input.shape : [1, ...input.shape.slice(1)];
    const shape = declared.map((d) => (d > 0 ? d : 1));
    const count = shape.reduce((a, b) => a * b, 1);
    return { name: input.name, shape, datatype: input.datatype, data: Array(count).fill(exampleValue(input.datatype)) };
  });
  return JSON.stringify({ inputs });
}
