import {
  type BigIntStats,
  closeSync,
  constants,
  fstatSync,
  lstatSync,
  openSync,
  readSync,
  statfsSync,
  statSync,
  writeSync,
} from 'node:fs';
import { join } from 'node:path';
import { SETTING_DEFAULTS } from '../settings/settings.js';
import type { Datatype } from '../model/signature.js';
import { ARRAY_FOR, type BytesData, type Tensor, type TypedArray } from '../model/tensor.js';
import { bytesToBinary } from './bytes-data.js';
import type { InputPayload } from './input-source.js';
import { ProtocolError, statusOfHttp } from './errors.js';

/**
 * Triton's system shared-memory extension: a client registers a region of a POSIX
 * shared-memory object (its `key`, an offset and a size), then names it in an input's or
 * output's `shared_memory_region` parameter instead of sending the tensor's bytes.
 *
 * On Linux, `shm_open("/name")` opens the file `/dev/shm/name`, so a region is read and
 * written here with positioned reads and writes on that file (no mmap, no native code).
 *
 * The key comes from a client, so nothing about it is trusted:
 * - only a POSIX shared-memory name is taken: '/', then a file name (no other '/', no NUL,
 *   not '.' or '..', at most NAME_MAX bytes), always resolved inside /dev/shm;
 * - the file is opened with O_NOFOLLOW (a symbolic link is refused) and O_NONBLOCK (a FIFO
 *   cannot hold the open), after an lstat and then an fstat that both require a regular file;
 * - the bounds are checked against the file at registration, and again at every use: the
 *   file is opened per use, so a region whose object was removed, replaced (another inode
 *   under the same key) or shrunk since is a 400 that says so, never a crash or a read of
 *   something else. (A descriptor kept open would keep reading a removed file's old inode,
 *   and would have to be re-checked each use anyway; an open and an fstat cost microseconds.)
 *
 * Who may use it: anyone who can register a region can, through a model, read or write any
 * file in /dev/shm the server's user can open (another process's buffers included). So the
 * extension is OFF unless the server is started with `--shared-memory system`, as Triton
 * keeps it off unless started with `--allow-client-shm=true`; and its routes belong to the
 * `shared-memory` group of `--http-restricted-api` / `--grpc-restricted-protocol`.
 *
 * The reads and writes are synchronous, on purpose: the object is a regular file on a
 * memory filesystem (tmpfs, checked when the registry is made), so a positioned read is a
 * memory copy that never waits on a device, like copying a request body; the decoder stays
 * one pass with every check before any read; and a region cannot change between the check
 * and the read. Each read is sized by a shape already checked, and the bytes one request
 * may read from regions are bounded by the body limit (the same bound as a body's).
 */

/** Where POSIX shared memory lives on Linux. */
export const SHM_DIRECTORY = '/dev/shm';
/** Linux's NAME_MAX: the longest file name, so the longest key after its '/'. */
export const MAX_KEY_BYTES = 255;
/** The longest region name (a map key and a URL segment, echoed in status answers). */
export const MAX_REGION_NAME = 256;
export const SHARED_MEMORY_MODES = ['off', 'system'] as const;
export type SharedMemoryMode = (typeof SHARED_MEMORY_MODES)[number];

/** statfs magic numbers of Linux's memory filesystems. */
const TMPFS_MAGIC = 0x01021994;
const RAMFS_MAGIC = 0x858458f6;

/** Triton's words (its common.h), with our flag: its clients and tests match the first sentence. */
export const DISABLED_MESSAGE =
  "Client shared memory is disabled. Start the server with '--shared-memory system' to enable.";
export const CUDA_MESSAGE =
  'CUDA shared memory is not supported on this server (it runs on the CPU): use system shared memory';

/** The gRPC code Triton gives a refusal where it is not what its protocol status maps to (grpc/status.ts). */
export type SharedMemoryGrpcCode = 'UNIMPLEMENTED' | 'ALREADY_EXISTS' | 'NOT_FOUND' | 'RESOURCE_EXHAUSTED';

/**
 * A shared-memory request refused: Triton's HTTP status for it (`status`, as this public class has
 * always had; its protocol status follows from it), and the gRPC code the shared-memory RPCs answer
 * it with, where Triton's differs from what the status maps to.
 */
export class SharedMemoryError extends ProtocolError {
  readonly status: number;
  readonly grpcCode: SharedMemoryGrpcCode | undefined;

  constructor(status: number, message: string, grpcCode?: SharedMemoryGrpcCode) {
    super(statusOfHttp(status), message);
    this.status = status;
    this.name = 'SharedMemoryError';
    this.grpcCode = grpcCode;
  }
}

const bad = (message: string): SharedMemoryError => new SharedMemoryError(400, message);
export const disabledError = (): SharedMemoryError => new SharedMemoryError(400, DISABLED_MESSAGE, 'UNIMPLEMENTED');
export const cudaError = (): SharedMemoryError => new SharedMemoryError(400, CUDA_MESSAGE, 'UNIMPLEMENTED');

/** Client text echoed in a message: cut, and with control characters shown escaped. */
const quote = (text: string): string => {
  const cut = text.length > 100 ? `${text.slice(0, 100)}...` : text;
  return JSON.stringify(cut).slice(1, -1);
};

/** One registered region: what the client gave, and the object's identity when it registered. */
export interface RegionRecord {
  readonly name: string;
  readonly key: string;
  readonly offset: number;
  readonly byteSize: number;
  readonly dev: bigint;
  readonly ino: bigint;
}

/** A tensor's place in a region, checked against the region's registration. */
export interface RegionRef {
  readonly record: RegionRecord;
  /** From the region's start. */
  readonly offset: number;
  readonly byteSize: number;
}

/** A region as the status answers show it (Triton's `$system_shared_memory_status_response` entry). */
export interface RegionStatus {
  name: string;
  key: string;
  offset: number;
  byte_size: number;
}

export interface SharedMemoryOptions {
  /** `system` serves the system shared-memory extension; `off` refuses registrations (status answers an empty list). @default 'off' */
  sharedMemory?: SharedMemoryMode;
  /** Most regions registered at once (`--shared-memory-regions`). @default 64 */
  sharedMemoryRegions?: number;
  /** Most bytes one request may read from regions, all inputs together (the server passes its body limit). @default the default body limit */
  maxReadBytes?: number;
}

/** The key's problem, or undefined when it is a POSIX shared-memory name this server opens. */
function keyProblem(key: string): string | undefined {
  if (!key.startsWith('/')) return "it must start with '/'";
  const base = key.slice(1);
  if (base === '') return 'it names no object';
  if (base.includes('/')) return "it may hold no '/' after the first";
  if (base.includes('\0')) return 'it may hold no NUL character';
  if (base === '.' || base === '..') return "'.' and '..' are directories";
  if (Buffer.byteLength(base) > MAX_KEY_BYTES) return `its name is longer than ${MAX_KEY_BYTES} bytes`;
  return undefined;
}

/** A non-negative byte count or offset: an integer, exactly representable (to 2^53 - 1). */
function byteCount(value: unknown, what: string): number {
  if (typeof value === 'number' && Number.isSafeInteger(value) && value >= 0) return value;
  if (
    (typeof value === 'number' && Number.isInteger(value) && value > 0) ||
    (typeof value === 'bigint' && value > 0n)
  ) {
    throw bad(
      `${what} is ${String(value)}, past the largest offset this server addresses (${Number.MAX_SAFE_INTEGER})`,
    );
  }
  throw bad(
    `${what} must be a non-negative integer, got ${quote(JSON.stringify(typeof value === 'bigint' ? String(value) : value) ?? String(value))}`,
  );
}

const isObject = (value: unknown): value is Record<string, unknown> =>
  typeof value === 'object' && value !== null && !Array.isArray(value);

/** Whether a tensor's parameters say anything of shared memory (`ref` then has something to check or refuse). */
const namesRegion = (parameters: unknown): boolean =>
  isObject(parameters) &&
  (parameters.shared_memory_region !== undefined ||
    parameters.shared_memory_offset !== undefined ||
    parameters.shared_memory_byte_size !== undefined);

function errnoReason(error: unknown, registered: boolean): string {
  switch ((error as NodeJS.ErrnoException | undefined)?.code) {
    case 'ENOENT':
      return registered ? 'its object no longer exists (it was removed after registration)' : 'no such object';
    case 'ELOOP':
      return 'it is a symbolic link';
    case 'EACCES':
    case 'EPERM':
      return "the server's user is not allowed to open it";
    case 'EISDIR':
      return 'it is a directory';
    case 'ENXIO':
    case 'ENODEV':
      return 'it is not a regular file';
    default:
      return `it cannot be opened (${(error as NodeJS.ErrnoException | undefined)?.code ?? String(error)})`;
  }
}

/**
 * Opens a key's object under /dev/shm: an lstat first (a device, FIFO, socket or link is
 * refused before any open, which could have effects), then open with O_NOFOLLOW and
 * O_NONBLOCK, then an fstat of what was opened. `fail` turns a reason into the error.
 */
function openObject(
  key: string,
  flags: number,
  registered: boolean,
  fail: (why: string) => ProtocolError,
): { fd: number; stats: BigIntStats } {
  const path = join(SHM_DIRECTORY, key.slice(1));
  let fd: number;
  try {
    const seen = lstatSync(path);
    if (seen.isSymbolicLink()) throw Object.assign(new Error('symbolic link'), { code: 'ELOOP' });
    if (seen.isDirectory()) throw Object.assign(new Error('directory'), { code: 'EISDIR' });
    if (!seen.isFile()) throw Object.assign(new Error('not a file'), { code: 'ENXIO' });
    fd = openSync(path, flags | constants.O_NOFOLLOW | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (error) {
    throw fail(errnoReason(error, registered));
  }
  try {
    const stats = fstatSync(fd, { bigint: true });
    if (!stats.isFile()) throw fail('it is not a regular file');
    return { fd, stats };
  } catch (error) {
    closeSync(fd);
    throw error;
  }
}

/**
 * Checks that /dev/shm exists and is a memory filesystem. The synchronous reads and writes
 * are sound only there (see the top of this file): elsewhere the extension cannot be on.
 */
function checkShmDirectory(): void {
  const problem = (() => {
    if (process.platform !== 'linux') return `this system is ${process.platform}, not Linux`;
    try {
      if (!statSync(SHM_DIRECTORY).isDirectory()) return `${SHM_DIRECTORY} is not a directory`;
      const { type } = statfsSync(SHM_DIRECTORY);
      if (type !== TMPFS_MAGIC && type !== RAMFS_MAGIC) return `${SHM_DIRECTORY} is not a memory filesystem (tmpfs)`;
    } catch (error) {
      return `${SHM_DIRECTORY} cannot be read (${(error as NodeJS.ErrnoException).code ?? String(error)})`;
    }
    return undefined;
  })();
  if (problem !== undefined)
    throw new Error(`--shared-memory system needs Linux's POSIX shared memory in ${SHM_DIRECTORY}: ${problem}`);
}

/**
 * The registered system shared-memory regions of one server, shared by REST and gRPC (one
 * namespace, as Triton's), with Triton's semantics and error texts (its shared_memory_manager.cc).
 */
export class SharedMemoryRegistry {
  readonly mode: SharedMemoryMode;
  readonly maxRegions: number;
  readonly maxReadBytes: number;
  readonly #regions = new Map<string, RegionRecord>();

  constructor(options: SharedMemoryOptions = {}) {
    const mode = options.sharedMemory ?? SETTING_DEFAULTS.sharedMemory;
    if (typeof mode !== 'string')
      throw new TypeError(`Expected \`sharedMemory\` to be a string, got \`${String(mode)}\` (${typeof mode})`);
    if (!(SHARED_MEMORY_MODES as readonly string[]).includes(mode))
      throw new RangeError(`Expected \`sharedMemory\` to be 'off' or 'system', got \`${mode}\``);
    const count = (name: 'sharedMemoryRegions' | 'maxReadBytes', value: number): number => {
      if (typeof value !== 'number')
        throw new TypeError(`Expected \`${name}\` to be a number, got \`${String(value)}\` (${typeof value})`);
      if (!Number.isSafeInteger(value) || value < 1)
        throw new RangeError(`Expected \`${name}\` to be an integer from 1 and up, got \`${value}\``);
      return value;
    };
    this.maxRegions = count('sharedMemoryRegions', options.sharedMemoryRegions ?? SETTING_DEFAULTS.sharedMemoryRegions);
    this.maxReadBytes = count('maxReadBytes', options.maxReadBytes ?? SETTING_DEFAULTS.bodyLimit);
    if (mode === 'system') checkShmDirectory();
    this.mode = mode;
  }

  get enabled(): boolean {
    return this.mode === 'system';
  }

  get size(): number {
    return this.#regions.size;
  }

  /** Every region, or the one named (404 when it is not registered, as Triton answers). Allowed when off: an empty list. */
  status(name?: string): RegionStatus[] {
    const show = (r: RegionRecord): RegionStatus => ({
      name: r.name,
      key: r.key,
      offset: r.offset,
      byte_size: r.byteSize,
    });
    if (name === undefined || name === '') return [...this.#regions.values()].map(show);
    const record = this.#regions.get(name);
    if (record === undefined)
      throw new SharedMemoryError(404, `Unable to find system shared memory region: '${quote(name)}'`, 'NOT_FOUND');
    return [show(record)];
  }

  /**
   * Registers `name` as `byteSize` bytes of the object `key` from `offset`, once the key
   * is checked and the object opened and found large enough. Numbers come as JSON's
   * (REST) or as int64Value made them (gRPC's decimal strings): past 2^53 - 1 they are refused.
   */
  register(name: unknown, key: unknown, offset: unknown, byteSize: unknown): void {
    if (!this.enabled) throw disabledError();
    if (typeof name !== 'string' || name === '')
      throw bad("'region name' is necessary to register system shared memory region");
    if (name.length > MAX_REGION_NAME)
      throw bad(`A shared memory region's name has at most ${MAX_REGION_NAME} characters, got ${name.length}`);
    if (key === undefined || key === '') throw bad("Shared memory register request has no 'key' field");
    if (typeof key !== 'string')
      throw bad(`Shared memory register request's 'key' must be a string, got ${typeof key}`);
    const problem = keyProblem(key);
    if (problem !== undefined) {
      throw bad(
        `cannot register shared memory region '${quote(name)}' - invalid shm key '${quote(key)}': ${problem} (a POSIX shared-memory name: '/' and a file name in ${SHM_DIRECTORY})`,
      );
    }
    const start = byteCount(offset ?? 0, "Shared memory register request's 'offset'");
    if (byteSize === undefined) throw bad("Shared memory register request has no 'byte_size' field");
    const size = byteCount(byteSize, "Shared memory register request's 'byte_size'");
    if (start + size > Number.MAX_SAFE_INTEGER)
      throw bad(
        `failed to register shared memory region '${quote(name)}': invalid args (offset + byte_size is past ${Number.MAX_SAFE_INTEGER})`,
      );
    if (this.#regions.has(name))
      throw new SharedMemoryError(400, `shared memory region '${quote(name)}' already in manager`, 'ALREADY_EXISTS');
    if (this.#regions.size >= this.maxRegions) {
      throw new SharedMemoryError(
        400,
        `This server holds at most ${this.maxRegions} shared memory regions (--shared-memory-regions): unregister one before registering '${quote(name)}'`,
        'RESOURCE_EXHAUSTED',
      );
    }
    // Read and write, as the region may hold outputs (Triton opens it so too).
    const { fd, stats } = openObject(key, constants.O_RDWR, false, (why) =>
      bad(`Unable to open shared memory region: '${quote(key)}' for region '${quote(name)}': ${why}`),
    );
    closeSync(fd);
    if (stats.size < BigInt(start + size)) {
      throw bad(
        `failed to register shared memory region '${quote(name)}': invalid args (offset ${start} + byte_size ${size} is past the end of '${quote(key)}', which has ${stats.size} bytes)`,
      );
    }
    this.#regions.set(name, { name, key, offset: start, byteSize: size, dev: stats.dev, ino: stats.ino });
  }

  /** Unregisters one region, or every one (no name); a name not registered is no error, as in Triton. */
  unregister(name?: string): void {
    if (!this.enabled) throw disabledError();
    if (name === undefined || name === '') this.#regions.clear();
    else this.#regions.delete(name);
  }

  lookup(name: string): RegionRecord {
    const record = this.#regions.get(name);
    if (record === undefined) throw bad(`Unable to find shared memory region: '${quote(name)}'`);
    return record;
  }
}

/**
 * A tensor's region object, opened for one use and checked against its registration: the
 * same object (device and inode), still long enough for the bytes this use needs.
 */
function openForUse(ref: RegionRef, write: boolean, tensor: string): number {
  const { record } = ref;
  const what = `shared memory region '${quote(record.name)}' (key '${quote(record.key)}')`;
  const fail = (why: string): ProtocolError =>
    bad(`Cannot ${write ? 'write' : 'read'} ${tensor} ${write ? 'into' : 'from'} ${what}: ${why}`);
  const { fd, stats } = openObject(record.key, write ? constants.O_RDWR : constants.O_RDONLY, true, fail);
  const end = record.offset + ref.offset + ref.byteSize;
  let problem: string | undefined;
  if (stats.dev !== record.dev || stats.ino !== record.ino)
    problem =
      'its key now names another object than the one registered (removed and created again): register the region again';
  else if (stats.size < BigInt(end))
    problem = `its object shrank to ${stats.size} bytes, and ${tensor} needs bytes ${record.offset + ref.offset} to ${end}`;
  if (problem !== undefined) {
    closeSync(fd);
    throw fail(problem);
  }
  return fd;
}

/** Reads a tensor's bytes from its region (a fresh buffer, exactly `ref.byteSize` long). */
export function readRegion(ref: RegionRef, tensor: string): Uint8Array {
  const fd = openForUse(ref, false, tensor);
  try {
    const out = Buffer.allocUnsafeSlow(ref.byteSize);
    const position = ref.record.offset + ref.offset;
    let done = 0;
    while (done < out.length) {
      let read: number;
      try {
        read = readSync(fd, out, done, out.length - done, position + done);
      } catch (error) {
        throw bad(
          `Cannot read ${tensor} from shared memory region '${quote(ref.record.name)}': ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
        );
      }
      // The object was truncated between the fstat and the read.
      if (read === 0)
        throw bad(
          `Cannot read ${tensor} from shared memory region '${quote(ref.record.name)}': its object shrank while being read`,
        );
      done += read;
    }
    return out;
  } finally {
    closeSync(fd);
  }
}

/** A tensor's bytes as a region holds them: raw little-endian, BYTES length-prefixed (as the binary extension). */
function tensorBytes(tensor: Tensor): Uint8Array {
  const data = tensor.data;
  if (Array.isArray(data)) return bytesToBinary(data as BytesData);
  const typed = data as TypedArray;
  return new Uint8Array(typed.buffer, typed.byteOffset, typed.byteLength);
}

/** Writes an output's bytes into its region, once they are known to fit the space the request gave it. */
function writeRegion(ref: RegionRef, bytes: Uint8Array, name: string): void {
  const what = `output '${quote(name)}'`;
  const fd = openForUse({ ...ref, byteSize: bytes.length }, true, what);
  try {
    const position = ref.record.offset + ref.offset;
    let done = 0;
    while (done < bytes.length) {
      try {
        done += writeSync(fd, bytes, done, bytes.length - done, position + done);
      } catch (error) {
        throw bad(
          `Cannot write ${what} into shared memory region '${quote(ref.record.name)}': ${(error as NodeJS.ErrnoException).code ?? String(error)}`,
        );
      }
    }
  } finally {
    closeSync(fd);
  }
}

const NO_REGIONS: ReadonlyMap<string, Record<string, string | number>> = new Map();

/**
 * Writes every output the request asked into a region, for either protocol's encoder, and
 * returns the parameters each answers with instead of its data: the region, and the bytes
 * written (a BYTES output's length is known only now). Every output is checked to fit first
 * (an output larger than its space is a 400 in Triton's words), so that none is written
 * when one does not fit. A region unregistered while its request ran is still written: the
 * request named it when it was registered (Triton, too, unmaps only after in-flight requests).
 */
export function writeRegionOutputs(
  outputs: readonly { name: string; region?: RegionRef | undefined }[],
  result: Readonly<Record<string, Tensor>>,
): ReadonlyMap<string, Record<string, string | number>> {
  // Every answer comes through here; most ask for no region, and allocate nothing.
  if (!outputs.some((output) => output.region !== undefined)) return NO_REGIONS;
  const written = new Map<string, Record<string, string | number>>();
  const pending: { name: string; ref: RegionRef; bytes: Uint8Array }[] = [];
  for (const { name, region } of outputs) {
    if (region === undefined) continue;
    const bytes = tensorBytes(result[name] as Tensor);
    if (bytes.length > region.byteSize) {
      throw bad(
        `shared memory size specified with the request for output '${quote(name)}' (${region.byteSize} bytes) should be at least ${bytes.length} bytes to hold the results`,
      );
    }
    pending.push({ name, ref: region, bytes });
  }
  for (const { name, ref, bytes } of pending) {
    writeRegion(ref, bytes, name);
    written.set(name, {
      shared_memory_region: ref.record.name,
      shared_memory_byte_size: bytes.length,
      ...(ref.offset === 0 ? {} : { shared_memory_offset: ref.offset }),
    });
  }
  return written;
}

/**
 * One request's access to the regions, for either protocol: parses a tensor's
 * `shared_memory_*` parameters (REST's JSON, or gRPC's as plainParameters makes them),
 * checks them against the registration, reads inputs, and counts the bytes read against
 * the request's budget. Without a registry (or with the extension off), naming a region
 * is a 400 that says how to enable it.
 */
export class RegionAccess {
  readonly #registry: SharedMemoryRegistry | undefined;
  #budget: number;

  constructor(registry: SharedMemoryRegistry | undefined) {
    this.#registry = registry;
    this.#budget = registry?.maxReadBytes ?? 0;
  }

  /** The region a tensor's parameters name, checked against its registration; undefined when they name none. */
  ref(parameters: unknown, tensor: string): RegionRef | undefined {
    if (!isObject(parameters)) return undefined;
    const region = parameters.shared_memory_region;
    const size = parameters.shared_memory_byte_size;
    const offset = parameters.shared_memory_offset;
    if (region === undefined) {
      const stray =
        offset !== undefined ? 'shared_memory_offset' : size !== undefined ? 'shared_memory_byte_size' : undefined;
      if (stray !== undefined)
        throw bad(`'${stray}' can not be specified without 'shared_memory_region' parameter for ${tensor}`);
      return undefined;
    }
    if (this.#registry === undefined || !this.#registry.enabled) throw disabledError();
    if (typeof region !== 'string')
      throw bad(`invalid value type for 'shared_memory_region' parameter for ${tensor}, expected a string`);
    if (size === undefined)
      throw bad(`'shared_memory_byte_size' must be given with 'shared_memory_region' for ${tensor}`);
    const big = (value: unknown): boolean =>
      (typeof value === 'number' && Number.isInteger(value) && value > Number.MAX_SAFE_INTEGER) ||
      (typeof value === 'bigint' && value > BigInt(Number.MAX_SAFE_INTEGER));
    if (big(size) || big(offset)) {
      throw bad(
        `Integer overflow detected: byte_size (${String(size)}) + offset (${String(offset ?? 0)}) exceeds the largest offset this server addresses (${Number.MAX_SAFE_INTEGER}) for region '${quote(region)}'`,
      );
    }
    const byteSize = byteCount(size, `'shared_memory_byte_size' of ${tensor}`);
    const start = byteCount(offset ?? 0, `'shared_memory_offset' of ${tensor}`);
    const record = this.#registry.lookup(region);
    if (start >= record.byteSize)
      throw bad(
        `Invalid offset for shared memory region: '${quote(region)}' (${tensor} starts at ${start}; the region has ${record.byteSize} bytes)`,
      );
    if (start + byteSize > record.byteSize) {
      throw bad(
        `Invalid offset + byte size for shared memory region: '${quote(region)}' (${tensor} needs bytes ${start} to ${start + byteSize}; the region has ${record.byteSize})`,
      );
    }
    return { record, offset: start, byteSize };
  }

  /**
   * An input's bytes, read from the region its parameters name; undefined when they name
   * none. `other` names the input's other data (`data`, `contents`...), which may not come
   * with a region. A fixed-size datatype's byte size must be what the shape needs, checked
   * before reading; BYTES are checked as the binary extension's (bytesFromBinary).
   */
  input(
    parameters: unknown,
    other: string | undefined,
    count: number,
    name: string,
    datatype: Datatype,
  ): InputPayload | undefined {
    // Almost no request reads shared memory: its text for errors is built only for one that does.
    if (!namesRegion(parameters)) return undefined;
    const tensor = `input '${quote(name)}'`;
    const ref = this.ref(parameters, tensor);
    if (ref === undefined) return undefined;
    if (other !== undefined)
      throw bad(
        `Input \`${name}\` reads shared memory region '${quote(ref.record.name)}' and also has ${other}: give one or the other`,
      );
    if (datatype !== 'BYTES') {
      const needed = count * ARRAY_FOR[datatype].BYTES_PER_ELEMENT;
      if (ref.byteSize !== needed)
        throw bad(
          `input byte size mismatch for input '${quote(name)}': its shape's ${count} ${datatype} elements need ${needed} bytes, shared_memory_byte_size is ${ref.byteSize}`,
        );
    }
    if (ref.byteSize > this.#budget) {
      throw new SharedMemoryError(
        413,
        `Inputs read from shared memory total more than the server's limit of ${this.#registry?.maxReadBytes} bytes a request (--body-limit)`,
      );
    }
    this.#budget -= ref.byteSize;
    return { bytes: readRegion(ref, tensor) };
  }

  /** The region a requested output is to be written into; undefined when its parameters name none. */
  output(parameters: unknown, name: string): RegionRef | undefined {
    if (!namesRegion(parameters)) return undefined;
    const ref = this.ref(parameters, `output '${quote(name)}'`);
    if (
      ref !== undefined &&
      isObject(parameters) &&
      (parameters.classification !== undefined || parameters.class_count !== undefined)
    ) {
      throw bad("Output can't set both 'shared_memory_region' and 'classification'");
    }
    return ref;
  }
}
