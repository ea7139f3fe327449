import { createServer, type Server } from 'node:http';
import protobuf from 'protobufjs';

/**
 * A real OTLP/HTTP trace receiver for tests: it accepts what an exporter POSTs to /v1/traces, as
 * JSON or protobuf, and decodes it into plain spans (ids as hex).
 */
export interface ReceivedSpan {
  traceId: string;
  spanId: string;
  parentSpanId: string;
  name: string;
  kind: number;
  attributes: Record<string, unknown>;
  links: { traceId: string; spanId: string }[];
  status: { code: number; message?: string };
  events: string[];
  serviceName: unknown;
}

// The fields of opentelemetry-proto's trace service request the tests read, with their numbers.
const PROTO = `
syntax = "proto3";
message ExportTraceServiceRequest { repeated ResourceSpans resource_spans = 1; }
message ResourceSpans { Resource resource = 1; repeated ScopeSpans scope_spans = 2; }
message Resource { repeated KeyValue attributes = 1; }
message ScopeSpans { repeated Span spans = 2; }
message Span { bytes trace_id = 1; bytes span_id = 2; bytes parent_span_id = 4; string name = 5; int32 kind = 6; repeated KeyValue attributes = 9; repeated Event events = 11; repeated Link links = 13; Status status = 15; }
message Event { string name = 2; }
message Link { bytes trace_id = 1; bytes span_id = 2; }
message Status { string message = 2; int32 code = 3; }
message KeyValue { string key = 1; AnyValue value = 2; }
message AnyValue { oneof value { string string_value = 1; bool bool_value = 2; int64 int_value = 3; double double_value = 4; } }
`;
const Request = protobuf.parse(PROTO, { keepCase: true }).root.lookupType('ExportTraceServiceRequest');

const hex = (value: unknown): string =>
  typeof value === 'string' ? value.toLowerCase() : Buffer.from(value as Uint8Array).toString('hex');
const attributeValue = (v: Record<string, unknown> | undefined): unknown => {
  if (v === undefined) return undefined;
  for (const key of ['stringValue', 'string_value', 'boolValue', 'bool_value', 'doubleValue', 'double_value'])
    if (key in v) return v[key];
  for (const key of ['intValue', 'int_value']) if (key in v) return Number(v[key]);
  return undefined;
};
const attributes = (list: { key: string; value?: Record<string, unknown> }[] | undefined): Record<string, unknown> =>
  Object.fromEntries((list ?? []).map((kv) => [kv.key, attributeValue(kv.value)]));

function normalise(body: any): ReceivedSpan[] {
  const out: ReceivedSpan[] = [];
  for (const rs of body.resourceSpans ?? body.resource_spans ?? []) {
    const serviceName = attributes(rs.resource?.attributes)['service.name'];
    for (const ss of rs.scopeSpans ?? rs.scope_spans ?? []) {
      for (const s of ss.spans ?? []) {
        out.push({
          traceId: hex(s.traceId ?? s.trace_id),
          spanId: hex(s.spanId ?? s.span_id),
          parentSpanId: (s.parentSpanId ?? s.parent_span_id) ? hex(s.parentSpanId ?? s.parent_span_id) : '',
          name: s.name,
          kind: Number(s.kind ?? 0),
          attributes: attributes(s.attributes),
          links: (s.links ?? []).map((l: any) => ({
            traceId: hex(l.traceId ?? l.trace_id),
            spanId: hex(l.spanId ?? l.span_id),
          })),
          status: { code: Number(s.status?.code ?? 0), ...(s.status?.message ? { message: s.status.message } : {}) },
          events: (s.events ?? []).map((e: any) => e.name),
          serviceName,
        });
      }
    }
  }
  return out;
}

export async function startOtlpReceiver(): Promise<{
  url: string;
  spans: ReceivedSpan[];
  contentTypes: Set<string>;
  close(): Promise<void>;
}> {
  const spans: ReceivedSpan[] = [];
  const contentTypes = new Set<string>();
  const server: Server = createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const body = Buffer.concat(chunks);
      const type = String(request.headers['content-type'] ?? '');
      contentTypes.add(type);
      if (request.url === '/v1/traces') {
        const decoded = type.includes('json')
          ? JSON.parse(body.toString('utf8'))
          : Request.toObject(Request.decode(body), { longs: String, bytes: Buffer, oneofs: false });
        spans.push(...normalise(decoded));
      }
      response.writeHead(200, {
        'content-type': type.includes('json') ? 'application/json' : 'application/x-protobuf',
      });
      response.end(type.includes('json') ? '{}' : '');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    spans,
    contentTypes,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
