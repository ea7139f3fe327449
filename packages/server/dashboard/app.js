// The batched-fn dashboard: draws each snapshot from /dashboard/feed. No framework, no chart library:
// a handful of SVG shapes per chart. Numbers carry data-metric attributes, so scripts and tests can read them.
const SVG = 'http://www.w3.org/2000/svg';
const REASON_COLORS = {
  full: '#2f6fde',
  delay: '#d9822b',
  adaptive: '#2a8a4a',
  preferred: '#7a4fd0',
  backlog: '#c23b3b',
  close: '#8a8f99',
};
const HISTORY = 60;
const history = new Map(); // model name -> recent req/s

const fmt = (value, digits = 1) =>
  value === null || value === undefined || Number.isNaN(value) ? '–' : Number(value).toFixed(digits);

function el(tag, attributes = {}, text) {
  const node = tag.startsWith('svg:') ? document.createElementNS(SVG, tag.slice(4)) : document.createElement(tag);
  for (const [key, value] of Object.entries(attributes)) node.setAttribute(key, String(value));
  if (text !== undefined) node.textContent = text;
  return node;
}

function number(metric, label, value, digits) {
  const box = el('div', { class: 'number' });
  box.append(el('b', { 'data-metric': metric }, fmt(value, digits)), el('span', {}, label));
  return box;
}

/** A chart frame: width 300, height 120, with a margin for axis labels. */
function frame(title) {
  const box = el('div');
  box.append(el('h3', {}, title));
  const svg = el('svg:svg', { viewBox: '0 0 300 120', role: 'img', 'aria-label': title });
  box.append(svg);
  return { box, svg, x0: 28, x1: 296, y0: 104, y1: 6 };
}

function axisLabels(f, yMax, xLabel) {
  f.svg.append(
    el('svg:text', { x: 2, y: f.y1 + 8 }, fmt(yMax, yMax < 10 ? 1 : 0)),
    el('svg:text', { x: 2, y: f.y0 }, '0'),
    el('svg:text', { x: f.x1 - 60, y: 118 }, xLabel),
  );
  f.svg.append(el('svg:line', { x1: f.x0, y1: f.y0, x2: f.x1, y2: f.y0, stroke: '#e3e6ec' }));
}

function line(values, title, color = '#2f6fde') {
  const f = frame(title);
  const max = Math.max(1, ...values);
  const x = (i) => f.x0 + ((f.x1 - f.x0) * i) / Math.max(1, HISTORY - 1);
  const y = (v) => f.y0 - ((f.y0 - f.y1) * v) / max;
  const offset = HISTORY - values.length;
  f.svg.append(
    el('svg:polyline', {
      fill: 'none',
      stroke: color,
      'stroke-width': 1.5,
      points: values.map((v, i) => `${x(i + offset)},${y(v)}`).join(' '),
    }),
  );
  axisLabels(f, max, `last ${HISTORY} s`);
  return f.box;
}

function histogram(sizes, maxBatchSize, mean) {
  const f = frame('batch size (rows), recent batches');
  const top = Math.max(1, maxBatchSize, ...sizes.map(([s]) => s));
  const most = Math.max(1, ...sizes.map(([, c]) => c));
  const width = Math.max(1.5, (f.x1 - f.x0) / top - 0.5);
  for (const [size, count] of sizes) {
    const h = ((f.y0 - f.y1) * count) / most;
    f.svg.append(
      el('svg:rect', { x: f.x0 + ((f.x1 - f.x0) * (size - 1)) / top, y: f.y0 - h, width, height: h, fill: '#2f6fde' }),
    );
  }
  if (mean !== null) {
    const mx = f.x0 + ((f.x1 - f.x0) * (mean - 0.5)) / top;
    f.svg.append(
      el('svg:line', { x1: mx, x2: mx, y1: f.y1, y2: f.y0, stroke: '#d9822b', 'stroke-dasharray': '3 2' }),
      el('svg:text', { x: Math.min(mx + 2, f.x1 - 40), y: f.y1 + 8 }, `mean ${fmt(mean)}`),
    );
  }
  f.svg.append(el('svg:text', { x: f.x0, y: 118 }, '1'), el('svg:text', { x: f.x1 - 24, y: 118 }, String(top)));
  f.svg.append(el('svg:line', { x1: f.x0, y1: f.y0, x2: f.x1, y2: f.y0, stroke: '#e3e6ec' }));
  return f.box;
}

function reasons(series) {
  const f = frame('dispatch reasons per second');
  const names = [...new Set(series.flatMap((point) => Object.keys(point)))];
  const max = Math.max(1, ...series.map((point) => Object.values(point).reduce((a, b) => a + b, 0)));
  const x = (i) => f.x0 + ((f.x1 - f.x0) * (i + HISTORY - series.length)) / Math.max(1, HISTORY - 1);
  const y = (v) => f.y0 - ((f.y0 - f.y1) * v) / max;
  const legend = el('div', { class: 'legend' });
  for (const name of names) {
    if (!series.some((point) => point[name] > 0)) continue;
    const color = REASON_COLORS[name] ?? '#444';
    f.svg.append(
      el('svg:polyline', {
        fill: 'none',
        stroke: color,
        'stroke-width': 1.3,
        points: series.map((point, i) => `${x(i)},${y(point[name] ?? 0)}`).join(' '),
      }),
    );
    const item = el('span');
    const swatch = el('i');
    // Through the CSSOM: the page's content security policy refuses inline style attributes.
    swatch.style.background = color;
    item.append(swatch, document.createTextNode(name));
    legend.append(item);
  }
  axisLabels(f, max, `last ${HISTORY} s`);
  f.box.append(legend);
  return f.box;
}

function costCurve(points, cost, maxBatchSize, slots) {
  // With more than one worker, what 'auto' learned a second batch slot gains (1: a device each, 0: one shared).
  const sideBySide = slots > 1 && cost !== null ? `; 2 batches at once: ${fmt(1 + cost.slotEfficiency, 2)}x one` : '';
  const f = frame(
    cost === null
      ? 'batch cost (ms) by rows: curve not learned yet'
      : `cost c(N) = ${fmt(cost.fixedMs, 2)} + ${fmt(cost.perRowMs, 3)}·N ms${sideBySide}`,
  );
  const xMax = Math.max(1, maxBatchSize, ...points.map(([n]) => n));
  // The scale follows most batches (95th percentile), not one stalled batch; slower ones sit on the top edge.
  const sorted = points.map(([, ms]) => ms).sort((a, b) => a - b);
  const typical = sorted.length === 0 ? 0 : sorted[Math.floor(0.95 * (sorted.length - 1))] * 1.2;
  const yMax = Math.max(0.1, typical, cost === null ? 0 : cost.fixedMs + cost.perRowMs * xMax);
  const x = (n) => f.x0 + ((f.x1 - f.x0) * n) / xMax;
  const y = (ms) => f.y0 - ((f.y0 - f.y1) * ms) / yMax;
  for (const [n, ms] of points)
    f.svg.append(el('svg:circle', { cx: x(n), cy: y(Math.min(ms, yMax)), r: 1.8, fill: 'rgba(47,111,222,0.45)' }));
  if (cost !== null)
    f.svg.append(
      el('svg:line', {
        x1: x(0),
        y1: y(cost.fixedMs),
        x2: x(xMax),
        y2: y(cost.fixedMs + cost.perRowMs * xMax),
        stroke: '#d9822b',
        'stroke-width': 1.5,
      }),
    );
  axisLabels(f, yMax, `rows (max ${xMax})`);
  return f.box;
}

function workers(list) {
  const f = frame('worker threads: share of the last second busy');
  const slot = (f.x1 - f.x0) / Math.max(1, list.length);
  list.forEach((w, i) => {
    const h = (f.y0 - f.y1) * w.utilisation;
    f.svg.append(
      el('svg:rect', {
        x: f.x0 + i * slot + 2,
        y: f.y0 - h,
        width: Math.max(2, slot - 4),
        height: h,
        fill: w.restarts > 0 ? '#d9822b' : '#2a8a4a',
        'data-metric': `worker-${w.id}`,
      }),
    );
    f.svg.append(
      el(
        'svg:text',
        { x: f.x0 + i * slot + 2, y: 118 },
        `worker ${w.id}: ${Math.round(w.utilisation * 100)}%${w.restarts > 0 ? `, restarted ${w.restarts}x` : ''}`,
      ),
    );
  });
  if (list.length === 0)
    f.svg.append(el('svg:text', { x: f.x0, y: 60 }, 'inline handler or remote workers: no local threads'));
  axisLabels(f, 100, '');
  return f.box;
}

function modelCard(m) {
  const card = el('section', { class: 'card', 'data-model': m.name });
  const title = el('h2');
  title.append(
    document.createTextNode(m.name),
    el('span', { class: 'state', 'data-state': m.state }, m.state),
    el('small', {}, `max batch ${m.maxBatchSize}, max delay ${m.maxDelay === 'auto' ? 'auto' : `${m.maxDelay} ms`}`),
  );
  const numbers = el('div', { class: 'numbers' });
  numbers.append(
    number('throughput', 'req/s', m.reqPerSecond, 0),
    number('rows-per-second', 'rows/s', m.rowsPerSecond, 0),
    number('p50', 'p50 ms', m.latencyMs.p50, 1),
    number('p99', 'p99 ms', m.latencyMs.p99, 1),
    number('wait-p50', 'wait p50 ms', m.waitMs.p50, 2),
    number('wait-p99', 'wait p99 ms', m.waitMs.p99, 2),
    number('exec-p50', 'exec p50 ms', m.execMs.p50, 2),
    number('exec-p99', 'exec p99 ms', m.execMs.p99, 2),
    number('batch-mean', `mean batch / ${m.maxBatchSize}`, m.meanBatch, 1),
    number('queue-depth', `queued / cap ${m.queueCap ?? '∞'}`, m.queueDepth, 0),
    number('errors', 'errors/s', m.errorsPerSecond, 0),
  );
  const rates = [...(history.get(m.name) ?? []), m.reqPerSecond].slice(-HISTORY);
  history.set(m.name, rates);
  const charts = el('div', { class: 'charts' });
  charts.append(
    line(rates, 'requests per second'),
    histogram(m.batchSizes, m.maxBatchSize, m.meanBatch),
    reasons(m.reasons),
    costCurve(m.points, m.cost, m.maxBatchSize, m.workers.length),
    workers(m.workers),
  );
  card.append(title, numbers, charts);
  return card;
}

function generatorCard(g) {
  const card = el('section', { class: 'card', 'data-model': g.name });
  card.append(el('h2', {}, `${g.name} (generation)`));
  const numbers = el('div', { class: 'numbers' });
  numbers.append(
    number('active-sequences', 'active sequences', g.active, 0),
    number('waiting-sequences', 'waiting', g.waiting, 0),
    number('tokens-per-second', 'tokens/s', g.tokensPerSecond, 0),
    number('ttft-p50', 'first token p50 ms', g.ttftMs.p50, 1),
    number('ttft-p99', 'first token p99 ms', g.ttftMs.p99, 1),
  );
  const charts = el('div', { class: 'charts' });
  charts.append(line(g.history, 'tokens per second', '#7a4fd0'));
  card.append(numbers, charts);
  return card;
}

function render(snapshot) {
  document.getElementById('models').replaceChildren(...snapshot.models.map(modelCard));
  document.getElementById('generators').replaceChildren(...snapshot.generators.map(generatorCard));
}

const status = document.getElementById('status');
const feed = new EventSource('/dashboard/feed');
feed.onmessage = (event) => {
  render(JSON.parse(event.data));
  status.dataset.state = 'live';
  status.textContent = `live, ${new Date().toLocaleTimeString()}`;
};
feed.onerror = () => {
  status.dataset.state = 'lost';
  status.textContent = 'connection lost, retrying…';
};
