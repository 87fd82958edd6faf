/**
 * The store's Lua as ONE Redis Function library (Redis 7 FUNCTION LOAD, called by FCALL): lib.lua with
 * its includes (redis/includes/*.lua, resolved by lua-includes.ts), whose top level defines the shared
 * helpers once when the library is loaded, then each script file registered as one function that runs
 * begin() (includes/state.lua) and the script's body. An EVAL script would define every helper again on
 * each call (see docs/performance.md for what that cost).
 *
 * The library's and the functions' names carry a hash of the assembled source, so two Triage versions
 * sharing one Redis never replace each other's functions. The library is loaded on demand: a call that
 * finds its function missing (a fresh or restarted Redis, a cluster node that took slots over) loads it
 * on every master, then runs again (a missing function ran nothing).
 */
import { createHash } from 'node:crypto';
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { assembleLua } from './lua-includes.js';
import { isCluster, type RedisClient } from './redis-client.js';

export const SCRIPT_NAMES = ['enqueue', 'remove', 'pump', 'release', 'claim', 'sync', 'leave', 'snapshot', 'position', 'retry_after'] as const;
export type ScriptName = (typeof SCRIPT_NAMES)[number];

export function scriptDirectory(): string {
  const here = dirname(fileURLToPath(import.meta.url));
  // Running from source (tests) the scripts sit next to this file; from dist/, in the source tree.
  const candidates = [join(here, 'redis'), resolve(here, '../../../src/adapters/redis')];
  for (const c of candidates) if (existsSync(join(c, 'lib.lua'))) return c;
  throw new Error(`Triage Lua scripts not found (looked in ${candidates.join(', ')})`);
}

export interface ScriptLibrary {
  /** The library's name: `triage_` and the source's hash. */
  readonly name: string;
  /** What FUNCTION LOAD gets. */
  readonly source: string;
  /** Each script's function name (its FCALL name). */
  readonly functions: Record<ScriptName, string>;
  /** The includes of lib.lua, in the order they went in (each once). */
  readonly includes: readonly string[];
  /** The function running several operations in one call (includes/batch.lua). */
  readonly batch: string;
}

let cached: ScriptLibrary | undefined;

/** lib.lua with its includes (src/adapters/redis/includes/<name>.lua), as one Lua source. */
function assembledLib(dir: string = scriptDirectory()): { source: string; includes: readonly string[] } {
  const includeFile = (name: string) => join(dir, 'includes', `${name}.lua`);
  return assembleLua('lib.lua', readFileSync(join(dir, 'lib.lua'), 'utf8'), (name) =>
    existsSync(includeFile(name)) ? readFileSync(includeFile(name), 'utf8') : undefined,
  );
}

/** The library built from src/adapters/redis: lib.lua with its includes, then one registered function per script. */
export function scriptLibrary(): ScriptLibrary {
  if (cached !== undefined) return cached;
  const dir = scriptDirectory();
  const { source: lib, includes } = assembledLib(dir);
  const bodies = SCRIPT_NAMES.map((name) => readFileSync(join(dir, `${name}.lua`), 'utf8'));
  const hash = createHash('sha1').update(lib).update(bodies.join('\0')).digest('hex').slice(0, 16);
  const name = `triage_${hash}`;
  const functions = {} as Record<ScriptName, string>;
  const parts = [`#!lua name=${name}\n`, lib];
  SCRIPT_NAMES.forEach((script, i) => {
    functions[script] = `triage_${script}_${hash}`;
    // The body keeps its own lines; KEYS and ARGV are the operation's parameters.
    parts.push(
      `\nOPS['${script}'] = function(KEYS, ARGV)\n${bodies[i]}\nend\n`,
      `redis.register_function('${functions[script]}', function(KEYS, ARGV) begin(KEYS, ARGV) return OPS['${script}'](KEYS, ARGV) end)\n`,
    );
  });
  const batch = `triage_batch_${hash}`;
  parts.push(`redis.register_function('${batch}', function(KEYS, ARGV) begin(KEYS, ARGV) return batch(KEYS, ARGV) end)\n`);
  cached = { name, source: parts.join(''), functions, includes, batch };
  return cached;
}

const isFunctionMissing = (e: unknown) => /Function not found/i.test((e as Error | null)?.message ?? '');
/** A server before Redis 7 knows no FCALL: said plainly, in the store's errors and logs. */
const isFcallUnknown = (e: unknown) => /unknown command/i.test((e as Error | null)?.message ?? '');
const isAlreadyLoaded = (e: unknown) => /already exists/i.test((e as Error | null)?.message ?? '');

/** Loads in progress, per client: concurrent calls that find the function missing share one load. */
const loading = new WeakMap<RedisClient, Promise<void>>();

/** Loads the library on the node, or on every master of a cluster (one already there is kept). */
export function loadLibrary(client: RedisClient): Promise<void> {
  const running = loading.get(client);
  if (running !== undefined) return running;
  const source = scriptLibrary().source;
  const nodes = isCluster(client) ? client.nodes('master') : [client];
  const done = Promise.all(
    nodes.map((node) =>
      node.call('FUNCTION', 'LOAD', source).then(
        () => undefined,
        (e: unknown) => {
          if (!isAlreadyLoaded(e)) throw e;
        },
      ),
    ),
  ).then(
    () => {
      loading.delete(client);
    },
    (e: unknown) => {
      loading.delete(client);
      throw e;
    },
  );
  loading.set(client, done);
  return done;
}

/**
 * Runs a script's function, or `batch` (includes/batch.lua: several operations in one call): `args` = the
 * number of keys, the keys, then ARGV. Loads the library first when the function is missing.
 */
export function callScript(client: RedisClient, script: ScriptName | 'batch', args: (string | number)[]): Promise<unknown> {
  const library = scriptLibrary();
  const fn = script === 'batch' ? library.batch : library.functions[script];
  return client.fcall(fn, ...(args as [string | number, ...(string | number)[]])).catch((e: unknown) => {
    if (isFcallUnknown(e)) throw new Error(`this Redis server does not run Redis Functions (FCALL), which Triage's Redis store needs: Redis 7.0 or later (${(e as Error).message})`);
    if (!isFunctionMissing(e)) throw e;
    return loadLibrary(client).then(() => client.fcall(fn, ...(args as [string | number, ...(string | number)[]])));
  });
}

/** An operation waiting to go out in a batch (includes/batch.lua), with its caller's promise. */
export interface BatchedOperation {
  name: ScriptName;
  /** Its own arguments (after the common prefix). */
  extra: (string | number)[];
  resolve(reply: unknown): void;
  reject(error: unknown): void;
}

/** batch()'s arguments (includes/batch.lua): the head (number of keys, keys, common ARGV), then per operation its name, count, arguments. */
export function batchArguments(head: readonly (string | number)[], ops: readonly Pick<BatchedOperation, 'name' | 'extra'>[]): (string | number)[] {
  const args = head.slice();
  for (const op of ops) {
    args.push(op.name, op.extra.length);
    for (const a of op.extra) args.push(a);
  }
  return args;
}

/** A batch's reply: one entry per operation, an Error where that operation was refused. */
export function batchReplies(reply: unknown, count: number): unknown[] {
  if (!Array.isArray(reply) || reply.length !== count) {
    throw new Error(`a batch of ${count} Redis operations got a reply of the wrong layout`);
  }
  return reply;
}
