import { clip } from '../protocol/status.js';
import type { RouteIndex } from './route-index.js';

/** The answer to a request no route takes: a 405 naming the methods its path takes, or a 404 with a hint. */
export interface NotFoundAnswer {
  status: 404 | 405;
  headers: Record<string, string>;
  error: string;
}

const MODEL_PATH = /^\/v2\/models\/([^/]+)(?:\/versions\/[^/]+)?(\/.*)?$/;

export function notFoundAnswer(method: string, url: string, routes: RouteIndex): NotFoundAnswer {
  const path = url.split('?')[0] ?? url;
  const shown = `${method} ${clip(url)}`;
  const allowed = routes.methodsFor(path);
  const model = MODEL_PATH.exec(path);
  if (allowed.length > 0) {
    // `POST /v2/models/NAME` is the usual slip: the request was meant for its /infer.
    const infer =
      model !== null && model[2] === undefined && method === 'POST' ? `; to infer, POST ${clip(path)}/infer` : '';
    return {
      status: 405,
      headers: { allow: allowed.join(', ') },
      error: `Method ${method} is not allowed on ${clip(path)}: it takes ${allowed.join(', ')}${infer}`,
    };
  }
  if (model !== null && model[1] !== 'stats') {
    const known = [...new Set(routes.routesUnder('/v2/models/:name/').filter((r) => !r.includes('/versions/')))];
    known.sort();
    const base = `/v2/models/${clip(model[1] ?? '')}`;
    const others = known.filter((r) => !r.endsWith('/infer')).map((r) => r.replace('/v2/models/:name/', '…/'));
    return {
      status: 404,
      headers: {},
      error: `No route for ${shown}. Inference is POST ${base}/infer; the model's other routes: ${others.join(', ')}`,
    };
  }
  return { status: 404, headers: {}, error: `No route for ${shown}` };
}
