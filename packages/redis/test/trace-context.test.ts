import { expect, test } from 'vitest';
import { parseTraceparent, traceparentOf } from '../src/trace-context.js';

// The traceparent a frontend writes into a stream entry, and the strict reading a worker gives it.
const span = (traceId: string, spanId: string, traceFlags = 1) => ({
  spanContext: () => ({ traceId, spanId, traceFlags }),
});
const T = '4bf92f3577b34da6a3ce929d0e0e4736';
const S = '00f067aa0ba902b7';

test('a span becomes a W3C traceparent and back', () => {
  expect(traceparentOf(span(T, S))).toBe(`00-${T}-${S}-01`);
  expect(parseTraceparent(`00-${T}-${S}-01`)).toEqual({ traceId: T, spanId: S, traceFlags: 1, isRemote: true });
  expect(traceparentOf(undefined)).toBe('');
  expect(traceparentOf({})).toBe('');
});

test.each([
  ['uppercase hex', `00-${T.toUpperCase()}-${S}-01`],
  ['another version', `01-${T}-${S}-01`],
  ['an all-zero trace id', `00-${'0'.repeat(32)}-${S}-01`],
  ['an all-zero span id', `00-${T}-${'0'.repeat(16)}-01`],
  ['a short span id', `00-${T}-${S.slice(1)}-01`],
  ['trailing data', `00-${T}-${S}-01-extra`],
  ['a megabyte of text', 'x'.repeat(1_000_000)],
  ['nothing', undefined],
])('a traceparent with %s is ignored', (_label, text) => {
  expect(parseTraceparent(text)).toBeUndefined();
});

test('a span whose context is malformed sends no traceparent', () => {
  expect(traceparentOf(span('not-hex', S))).toBe('');
  expect(traceparentOf(span(T, S, 300))).toBe(`00-${T}-${S}-00`);
});
