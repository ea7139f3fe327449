/**
 * Triton's restricted protocol groups, for both faces: `--grpc-restricted-protocol` and
 * `--http-restricted-api` take `<group>,<group>,...:<key>=<value>` (repeatable), and a request
 * to a restricted group is served only when it carries header `<prefix><key>` with `<value>`.
 * The groups, the flag format, its errors and the refusal text are Triton's (its
 * src/restricted_features.h, command_line_parser.cc, grpc/grpc_server.cc, http_server.cc), so
 * that its clients and qa tests read what they expect. Which request belongs to which group is
 * each face's own table (grpc/restricted.ts; the REST routes).
 */

/** Every group, in Triton's order. */
export const RESTRICTED_GROUPS = [
  'health',
  'metadata',
  'inference',
  'shared-memory',
  'model-config',
  'model-repository',
  'statistics',
  'trace',
  'logging',
] as const;
export type RestrictedGroup = (typeof RESTRICTED_GROUPS)[number];

/** The header (lower case, as HTTP/2 and gRPC metadata carry names) and the value a group requires. */
export interface Restriction {
  readonly header: string;
  readonly value: string;
}

export type Restrictions = ReadonlyMap<RestrictedGroup, Restriction>;

/** How each face spells its flag and header. */
export interface RestrictedFace {
  /** The flag, without dashes: `grpc-restricted-protocol`, `http-restricted-api`. */
  readonly option: string;
  /** Triton's word for a group in its messages: `protocol` (gRPC), `api` (HTTP). */
  readonly noun: 'protocol' | 'api';
  /** Put before `<key>` to make the header: Triton's `triton-grpc-protocol-` for gRPC, nothing for HTTP. */
  readonly headerPrefix: string;
}

export const GRPC_RESTRICTED: RestrictedFace = {
  option: 'grpc-restricted-protocol',
  noun: 'protocol',
  headerPrefix: 'triton-grpc-protocol-',
};
export const HTTP_RESTRICTED: RestrictedFace = { option: 'http-restricted-api', noun: 'api', headerPrefix: '' };

const isGroup = (name: string): name is RestrictedGroup => (RESTRICTED_GROUPS as readonly string[]).includes(name);

/**
 * The flag's values (one per `--<option>`) → the restriction of each group named. Throws a
 * RangeError in Triton's words: a value not of the form `<groups>:<key>=<value>` (every part
 * non-empty; the value may itself hold `:` or `=`), an unknown group, or a group in two values.
 */
export function parseRestrictions(values: string | readonly string[] | undefined, face: RestrictedFace): Restrictions {
  const restrictions = new Map<RestrictedGroup, Restriction>();
  for (const arg of values === undefined ? [] : typeof values === 'string' ? [values] : values) {
    if (typeof arg !== 'string')
      throw new TypeError(`Expected \`${face.option}\` values to be strings, got ${typeof arg}`);
    const colon = arg.indexOf(':');
    const equals = colon < 0 ? -1 : arg.indexOf('=', colon + 1);
    const groups = arg.slice(0, Math.max(colon, 0));
    const key = arg.slice(colon + 1, Math.max(equals, 0));
    const value = arg.slice(equals + 1);
    if (colon < 0 || equals < 0 || groups === '' || key === '' || value === '') {
      throw new RangeError(`--${face.option} option format is '<${face.noun}s>:<key>=<value>'. Got ${arg}`);
    }
    const restriction = { header: `${face.headerPrefix}${key}`.toLowerCase(), value };
    for (const group of groups.split(',')) {
      if (!isGroup(group))
        throw new RangeError(
          `unknown restricted ${face.noun} '${group}' (--${face.option}: the ${face.noun}s are ${RESTRICTED_GROUPS.join(', ')})`,
        );
      if (restrictions.has(group))
        throw new RangeError(
          `restricted ${face.noun} '${group}' can not be specified in multiple config groups (--${face.option})`,
        );
      restrictions.set(group, restriction);
    }
  }
  return restrictions;
}

/**
 * The restriction a request of `group` fails, or undefined when it may be served: an
 * unrestricted group, or the header present with the exact value (`header` reads a request's
 * header by its lower-case name, the first value when repeated).
 */
export function refusedBy(
  restrictions: Restrictions,
  group: RestrictedGroup,
  header: (name: string) => string | undefined,
): Restriction | undefined {
  const restriction = restrictions.get(group);
  if (restriction === undefined) return undefined;
  return header(restriction.header) === restriction.value ? undefined : restriction;
}

/** Triton's refusal: gRPC answers it UNAVAILABLE (its grpc_server.cc), HTTP 403 (its http_server.cc). */
export function restrictedMessage(face: RestrictedFace, restriction: Restriction): string {
  return `This ${face.noun === 'api' ? 'API' : 'protocol'} is restricted, expecting header '${restriction.header}'`;
}
