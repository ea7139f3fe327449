// @ts-check
// Character error rate: the edit distance between two texts (insertions, deletions, substitutions of Unicode code
// points) over the reference's length.

/**
 * Levenshtein distance over code points, in O(|a| x |b|) time and O(|b|) memory.
 * @param {string} a @param {string} b
 * @returns {number}
 */
export function editDistance(a, b) {
  const x = [...a];
  const y = [...b];
  let previous = Array.from({ length: y.length + 1 }, (_, j) => j);
  for (let i = 1; i <= x.length; i++) {
    const current = [i];
    for (let j = 1; j <= y.length; j++) {
      const substitute = (previous[j - 1] ?? 0) + (x[i - 1] === y[j - 1] ? 0 : 1);
      current[j] = Math.min((previous[j] ?? 0) + 1, (current[j - 1] ?? 0) + 1, substitute);
    }
    previous = current;
  }
  return previous[y.length] ?? 0;
}

/**
 * The errors and reference length of a hypothesis's lines against a reference's, the lines of each joined by a
 * newline (a missing, extra or merged line counts as the characters it changes).
 * @param {readonly string[]} hypothesis @param {readonly string[]} reference
 * @returns {{ errors: number, length: number, cer: number }}
 */
export function characterErrors(hypothesis, reference) {
  const ref = reference.join('\n');
  const errors = editDistance(hypothesis.join('\n'), ref);
  const length = [...ref].length;
  return { errors, length, cer: length === 0 ? (errors === 0 ? 0 : 1) : errors / length };
}
