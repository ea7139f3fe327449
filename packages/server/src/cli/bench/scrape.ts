/** Reads the running sum and count of the server's batch-size histogram from its /metrics text. */
export async function batchSizeTotals(baseUrl: string, model: string): Promise<{ sum: number; count: number }> {
  const response = await fetch(`${baseUrl}/metrics`);
  if (!response.ok) throw new Error(`GET ${baseUrl}/metrics answered ${response.status}`);
  const text = await response.text();
  const read = (series: string): number => {
    const line = text.split('\n').find((l) => l.startsWith(`${series}{`) && l.includes(`model="${model}"`));
    return line === undefined ? 0 : Number(line.slice(line.lastIndexOf(' ') + 1));
  };
  return { sum: read('batched_fn_batch_size_sum'), count: read('batched_fn_batch_size_count') };
}
