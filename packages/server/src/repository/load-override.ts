import { mkdtempSync, readdirSync, rmSync, symlinkSync } from 'node:fs';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BatchedFn } from 'batched-fn';
import { serverLog } from '../log.js';
import { ModelLoadError } from '../model/errors.js';
import { type ServedModel, servedWith } from '../model/served-model.js';
import type { InferItem, InferResult } from '../model/tensor.js';
import type { TritonModelConfig } from './triton-config.js';
import { loadTritonModel, type TritonLoadOptions } from './triton-repository.js';

/**
 * Triton's load overrides (its model repository extension): `load` with a `config` parameter loads
 * with that config instead of the folder's, and `file:<version>/<name>` parameters are the model's
 * files. As in Triton, the files make a model folder of their own (with them, `config` is required,
 * and the repository's folder, if any, is not used), written into a fresh temporary folder the
 * server owns, never the user's. The folder lives as long as the instance loaded from it: it is
 * removed once every version's batcher has stopped (an unload, a reload that replaced it, shutdown),
 * at once when the load fails, and at the latest when the process exits.
 */

/** One `file:` parameter: where in the model folder (`<version>/<name>`, or `<name>` at its top), and its bytes. */
export interface OverrideFile {
  path: string;
  bytes: Uint8Array;
}

/** What a load was given beyond the model's name. */
export interface LoadOverride {
  /** The config to load with, in the form planFromConfig reads (config-json.ts). */
  config: TritonModelConfig;
  /** The model folder's contents; without them, the repository's folder is loaded with `config`. */
  files?: readonly OverrideFile[];
}

/** A version folder (a positive decimal, as Triton serves them) and a plain file name. */
const VERSION = /^[1-9][0-9]{0,15}$/;
const FILE_NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,254}$/;
/** What only the `config` parameter may say: a config file among the files would be a second config. */
const CONFIG_FILES = new Set(['config.pbtxt', 'config.json']);

/**
 * The place in the model folder a `file:` parameter names, or why it cannot be one. Only
 * `<version>/<name>` (a decimal version, a plain name) and `<name>` at the top (a labels file) are
 * taken: no `..`, no absolute path, no other separator, so a file can never land outside the folder
 * (Triton normalizes the path and checks it stays inside; this refuses anything to normalize).
 */
export function overridePath(parameter: string): string {
  const path = parameter.slice('file:'.length);
  const bad = (why: string): never => {
    throw new ModelLoadError(`Invalid file parameter '${parameter.slice(0, 300)}': ${why}`);
  };
  const parts = path.split('/');
  if (parts.length > 2)
    bad('a file is `file:<version>/<name>` (or `file:<name>` at the top of the model folder), with no other `/`');
  const name = parts.at(-1) as string;
  if (parts.length === 2 && !VERSION.test(parts[0] as string))
    bad(
      `the version must be a positive decimal number (as a version folder is), got ${JSON.stringify((parts[0] as string).slice(0, 40))}`,
    );
  if (!FILE_NAME.test(name) || name === '.' || name === '..')
    bad(
      `the file name must be a plain name (letters, digits, '_', '.', '-', not starting with '.' or '-'), got ${JSON.stringify(name.slice(0, 80))}`,
    );
  if (parts.length === 1 && CONFIG_FILES.has(name)) bad(`the model's config is the \`config\` parameter, not a file`);
  return path;
}

/** Folders owned by instances still alive, removed at exit if they were not already. */
const live = new Set<string>();
let exitHook = false;

function own(folder: string): string {
  live.add(folder);
  if (!exitHook) {
    exitHook = true;
    process.once('exit', () => {
      for (const path of live) rmSync(path, { recursive: true, force: true });
    });
  }
  return folder;
}

async function remove(folder: string): Promise<void> {
  live.delete(folder);
  try {
    await rm(folder, { recursive: true, force: true });
  } catch (error) {
    serverLog.warning('registry', `could not remove the load override folder ${folder}: ${(error as Error).message}`);
  }
}

/** Files written at once: enough to keep the disk busy, few enough not to hold thousands of handles. */
const WRITES_AT_ONCE = 32;

/**
 * Writes `files` into a fresh folder (created here, mode 0700 as mkdtemp makes it); removed again if
 * any write fails. Asynchronously: written on the main thread, the 60,000 one-byte files a 64 MiB body
 * can carry (within --max-objects) stalled every other request for 3.4 s.
 */
export async function writeOverrideFolder(files: readonly OverrideFile[]): Promise<string> {
  const folder = own(await mkdtemp(join(tmpdir(), 'batched-fn-load-')));
  try {
    const versions = new Set(
      files.flatMap((file) => (file.path.includes('/') ? [file.path.split('/')[0] as string] : [])),
    );
    for (const version of versions) await mkdir(join(folder, version));
    for (let start = 0; start < files.length; start += WRITES_AT_ONCE) {
      // `wx`: the folder is new and the paths were checked, so nothing can be there already.
      await Promise.all(
        files
          .slice(start, start + WRITES_AT_ONCE)
          .map((file) => writeFile(join(folder, file.path), file.bytes, { flag: 'wx', mode: 0o600 })),
      );
    }
  } catch (error) {
    await remove(folder);
    throw new ModelLoadError(`could not write the model's files: ${(error as Error).message}`);
  }
  return folder;
}

/**
 * A folder of this server's own layout (`model.onnx` or a JS model at its top) seen as Triton's, for a
 * config override: a fresh folder whose version 1 is a link to it, beside links to its top-level files
 * (a labels file the config names). Nothing is written into the user's folder.
 */
export function tritonView(folder: string): string {
  const view = own(mkdtempSync(join(tmpdir(), 'batched-fn-load-')));
  try {
    symlinkSync(folder, join(view, '1'), 'dir');
    for (const entry of readdirSync(folder, { withFileTypes: true })) {
      if (entry.isFile() && !CONFIG_FILES.has(entry.name) && FILE_NAME.test(entry.name))
        symlinkSync(join(folder, entry.name), join(view, entry.name));
    }
  } catch (error) {
    void remove(view);
    throw new ModelLoadError(`could not prepare ${folder} for the config override: ${(error as Error).message}`);
  }
  return view;
}

/**
 * Makes `folder` live exactly as long as `model`: each version's batcher is wrapped so that closing or
 * destroying it counts down, and the folder is removed once the last has stopped.
 */
function ownedBy(model: ServedModel, folder: string): ServedModel {
  const instances = model.versions ?? [model];
  let running = instances.length;
  const stopped = (): Promise<void> => (--running === 0 ? remove(folder) : Promise.resolve());
  const wrap = (batcher: BatchedFn<InferItem, InferResult>): BatchedFn<InferItem, InferResult> => {
    let done = false;
    const once = (): Promise<void> => {
      if (done) return Promise.resolve();
      done = true;
      return stopped();
    };
    // A function like the batcher, with its members (getters and methods, which hold the batcher
    // itself, not `this`), but `close` and `destroy` that also count down. Not a Proxy: the
    // batcher's members are read-only and non-configurable, which a Proxy must answer as they are.
    const wrapper = ((input: InferItem, options?: Parameters<typeof batcher>[1]) =>
      batcher(input, options)) as BatchedFn<InferItem, InferResult>;
    const { length: _length, name: _name, ...members } = Object.getOwnPropertyDescriptors(batcher);
    Object.defineProperties(wrapper, {
      ...members,
      // Settles once the folder is gone too (an unload, a shutdown answers after it).
      close: {
        value: (options?: Parameters<typeof batcher.close>[0]) => batcher.close(options).finally(once),
        enumerable: true,
      },
      destroy: {
        value: (reason?: unknown) => {
          batcher.destroy(reason);
          void once();
        },
        enumerable: true,
      },
    });
    return wrapper;
  };
  const wrapped = instances.map((instance) => servedWith(instance, { batcher: wrap(instance.batcher) }));
  if (model.versions === undefined) return wrapped[0] as ServedModel;
  const highest = wrapped.at(-1) as ServedModel;
  return servedWith(highest, { versions: wrapped });
}

/**
 * Loads `name` with an override: from a fresh folder of the `file:` contents, else from the
 * repository's `folder` (seen as Triton's when it is of our layout) with `override.config`.
 */
export async function loadWithOverride(
  override: LoadOverride,
  options: Omit<TritonLoadOptions, 'folder' | 'config'> & { folder: string | undefined; tritonLayout: boolean },
): Promise<ServedModel> {
  let folder: string;
  let owned: string | undefined;
  if (override.files !== undefined) folder = owned = await writeOverrideFolder(override.files);
  else if (options.folder === undefined)
    throw new ModelLoadError(
      `No folder for \`${options.name}\` in the repository, and no \`file:\` contents to load it from`,
    );
  else if (options.tritonLayout) folder = options.folder;
  else folder = owned = tritonView(options.folder);
  const { tritonLayout: _, ...rest } = options;
  let model: ServedModel;
  try {
    model = await loadTritonModel({ ...rest, folder, config: override.config });
  } catch (error) {
    if (owned !== undefined) await remove(owned);
    throw error;
  }
  return owned === undefined ? model : ownedBy(model, owned);
}
