/**
 * "Did you mean": the known names closest to a mistyped one. A name that a known one starts with
 * (`--max-batch` for `--max-batch-size`) is the likeliest slip; otherwise an edit distance of at
 * most a third of the word (at least 2), so `--port` never suggests `--prefix`.
 */
export function closest(given: string, known: readonly string[]): string[] {
  if (given.length >= 3) {
    const extended = known.filter((name) => name.startsWith(given));
    if (extended.length > 0) return extended.slice(0, 3);
  }
  const bound = Math.max(2, Math.floor(given.length / 3));
  return known
    .map((name) => ({ name, distance: editDistance(given, name) }))
    .filter((c) => c.distance <= bound)
    .sort((a, b) => a.distance - b.distance)
    .slice(0, 3)
    .map((c) => c.name);
}

/** ` Did you mean --max-batch-size?`, or nothing when no known name is close. */
export function didYouMean(given: string, known: readonly string[]): string {
  const names = closest(given, known);
  return names.length === 0 ? '' : ` Did you mean ${names.join(' or ')}?`;
}

/** Levenshtein distance, one row at a time. */
export function editDistance(a: string, b: string): number {
  let previous = Array.from({ length: b.length + 1 }, (_, i) => i);
  for (let i = 1; i <= a.length; i++) {
    const row = [i];
    for (let j = 1; j <= b.length; j++) {
      const substitution = (previous[j - 1] as number) + (a[i - 1] === b[j - 1] ? 0 : 1);
      row.push(Math.min((previous[j] as number) + 1, (row[j - 1] as number) + 1, substitution));
    }
    previous = row;
  }
  return previous[b.length] as number;
}
