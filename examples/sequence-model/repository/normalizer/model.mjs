// A stateful model (Triton's sequence batcher): a running normalizer over feature frames, as a
// streaming speech front end runs one. Each request is a chunk of frames of one sequence (an
// utterance); every frame is normalized by the mean and variance of all frames of its sequence so
// far (Welford's update), so each answer depends on the chunks before it. The state lives in the
// worker thread between a sequence's requests (`sequence.state`: {} at sequence_start, freed after
// sequence_end or the idle timeout). Requests of different sequences share a batch: the statistics
// show it (execution_count below inference_count).
export const FEATURES = 8;
const EPSILON = 1e-5;

export const inputs = [{ name: 'frames', datatype: 'FP32', shape: [-1, FEATURES] }];
export const outputs = [
  { name: 'normalized', datatype: 'FP32', shape: [-1, FEATURES] },
  { name: 'mean', datatype: 'FP32', shape: [-1, FEATURES] },
];

export function handler(requests) {
  return requests.map(({ inputs: given, sequence }) => {
    const state = sequence.state;
    state.count ??= 0;
    state.mean ??= new Float64Array(FEATURES);
    state.m2 ??= new Float64Array(FEATURES);
    const x = given.frames.data;
    const rows = x.length / FEATURES;
    const normalized = new Float32Array(x.length);
    const mean = new Float32Array(x.length);
    for (let r = 0; r < rows; r++) {
      state.count++;
      for (let f = 0; f < FEATURES; f++) {
        const i = r * FEATURES + f;
        const delta = x[i] - state.mean[f];
        state.mean[f] += delta / state.count;
        state.m2[f] += delta * (x[i] - state.mean[f]);
        const variance = state.m2[f] / state.count;
        normalized[i] = (x[i] - state.mean[f]) / Math.sqrt(variance + EPSILON);
        mean[i] = state.mean[f];
      }
    }
    return { normalized: { data: normalized }, mean: { data: mean } };
  });
}
