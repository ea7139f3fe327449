// A grouped bar chart as plain SVG, for the benchmark READMEs. Groups along x, one bar per series.
export function barChart({ title, groups, series, values, unit }) {
  const width = 760;
  const height = 340;
  const left = 60;
  const top = 50;
  const plotW = width - left - 20;
  const plotH = height - top - 70;
  const colors = ['#1f77b4', '#ff7f0e', '#2ca02c', '#d62728', '#9467bd'];
  const max = Math.max(...values.flat()) * 1.1;
  const groupW = plotW / groups.length;
  const barW = (groupW * 0.8) / series.length;
  const y = (v) => top + plotH - (v / max) * plotH;
  const out = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="white"/>`,
    `<text x="${width / 2}" y="24" text-anchor="middle" font-size="15">${title}</text>`,
    `<line x1="${left}" y1="${top + plotH}" x2="${left + plotW}" y2="${top + plotH}" stroke="#333"/>`,
  ];
  for (let i = 0; i <= 4; i++) {
    const v = (max / 4) * i;
    out.push(`<line x1="${left}" y1="${y(v)}" x2="${left + plotW}" y2="${y(v)}" stroke="#eee"/>`);
    out.push(`<text x="${left - 6}" y="${y(v) + 4}" text-anchor="end">${v.toFixed(v < 10 ? 1 : 0)}</text>`);
  }
  out.push(
    `<text x="14" y="${top + plotH / 2}" transform="rotate(-90 14 ${top + plotH / 2})" text-anchor="middle">${unit}</text>`,
  );
  groups.forEach((group, g) => {
    const x0 = left + g * groupW + groupW * 0.1;
    series.forEach((_, s) => {
      const v = values[g][s];
      out.push(
        `<rect x="${x0 + s * barW}" y="${y(v)}" width="${barW - 2}" height="${top + plotH - y(v)}" fill="${colors[s % colors.length]}"/>`,
      );
    });
    out.push(
      `<text x="${left + g * groupW + groupW / 2}" y="${top + plotH + 18}" text-anchor="middle">${group}</text>`,
    );
  });
  series.forEach((name, s) => {
    out.push(
      `<rect x="${left + s * 150}" y="${height - 24}" width="12" height="12" fill="${colors[s % colors.length]}"/>`,
    );
    out.push(`<text x="${left + s * 150 + 18}" y="${height - 14}">${name}</text>`);
  });
  out.push('</svg>');
  return out.join('\n');
}
