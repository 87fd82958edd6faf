#!/usr/bin/env node
/**
 * What each XState patch (patches/) is worth, as docs/xstate-patches.md reports it:
 *   npm run build && node scripts/xstate-patch-cost.mjs [variant ...]
 * Variants: `none` (XState as published), `all` (every patch), `no-NNN` (every patch but NNN).
 * Default: all of them. Each variant is a folder under a temp dir with a copy of dist/, this
 * repository's node_modules linked in, and its own copy of XState (`npm pack` of the pinned version,
 * then the variant's patches applied with `git apply`, in sequence order).
 *
 * Two measures per variant, on the Router API (a mock deployment answering at once, 8 in flight):
 * - instructions per request, counted by valgrind's cachegrind (they repeat here within a few percent
 *   for one build where times move by 20-50%): two runs, 2,000 warm-up requests then 1,000 or 5,000 measured,
 *   the difference over 4,000 (start-up and warm-up cancel), node --single-threaded (GC and compiler
 *   on the main thread, so counted). Compare counts of this driver only: the same variants under a
 *   slightly different child differ by up to ~20% (docs/xstate-patches.md);
 * - what survives minor collections, natively with --trace-gc-nvp: KB promoted to the old generation
 *   per request and full (mark-compact) collections, over 20,000 requests that each wait 5 ms for the
 *   mock (32 in flight), the life that makes a leak into old space show.
 * Runs two variants at a time, a few minutes each (valgrind runs node ~50× slower).
 */
import { execFileSync, spawn } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const patchDir = join(root, 'patches');
const patches = readdirSync(patchDir).filter((f) => f.startsWith('xstate+')).sort();
const numberOf = (f) => f.split('+')[2];
const pinned = JSON.parse(readFileSync(join(root, 'package.json'), 'utf8')).dependencies.xstate;

const CHILD = `
import { createRouter } from './dist/src/router.js';
import { benchConfig } from './dist/bench/bench-config.js';
const [warm, measured, delay, inFlight] = process.argv.slice(2).map(Number);
const r = createRouter(benchConfig({ groups: { m: [{ mockResponse: 'ok', mockDelayMs: delay }] }, masterKey: 'sk-x', metrics: true, maxQueueSize: 100000 }));
const keepAlive = setInterval(() => {}, 1000);
const messages = [{ role: 'user', content: 'Say ok.' }];
async function run(total) {
  let next = 0;
  const worker = async () => { while (next++ < total) await r.scheduleCompletion({ model: 'm', messages, priority: 0 }); };
  await Promise.all(Array.from({ length: inFlight }, worker));
}
await run(warm);
console.log('MEASURE-START');
await run(measured);
console.log('MEASURE-END');
clearInterval(keepAlive);
await r.close(500);
process.exit(0);
`;

function run(cmd, args, cwd) {
  return new Promise((done, fail) => {
    const child = spawn(cmd, args, { cwd, stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    child.on('error', fail);
    child.on('close', (code) => (code === 0 ? done(out) : fail(new Error(`${cmd} ${args.join(' ')} exited ${code}\n${out.slice(-2000)}`))));
  });
}

function buildVariant(base, pristine, name, applied) {
  const dir = join(base, name);
  mkdirSync(join(dir, 'node_modules'), { recursive: true });
  cpSync(join(root, 'dist'), join(dir, 'dist'), { recursive: true });
  for (const e of readdirSync(join(root, 'node_modules'))) if (e !== 'xstate' && e !== '.bin') symlinkSync(join(root, 'node_modules', e), join(dir, 'node_modules', e));
  cpSync(pristine, join(dir, 'node_modules', 'xstate'), { recursive: true });
  for (const f of applied) execFileSync('git', ['apply', join(patchDir, f)], { cwd: dir });
  writeFileSync(join(dir, 'child.mjs'), CHILD);
  return dir;
}

async function instructions(dir) {
  const count = async (measured) => {
    const log = join(dir, `cachegrind-${measured}.log`);
    await run('valgrind', ['--tool=cachegrind', '--cache-sim=no', '--cachegrind-out-file=/dev/null', '--smc-check=all-non-file', `--log-file=${log}`, process.execPath, '--single-threaded', 'child.mjs', '2000', String(measured), '0', '8'], dir);
    const m = /I\s+refs:\s+([\d,]+)/.exec(readFileSync(log, 'utf8'));
    if (m === null) throw new Error(`${log}: no instruction count`);
    return Number(m[1].replaceAll(',', ''));
  };
  const [shorter, longer] = [await count(1000), await count(5000)];
  return Math.round((longer - shorter) / 4000);
}

async function survivors(dir) {
  const requests = 20_000;
  const out = await run(process.execPath, ['--trace-gc-nvp', 'child.mjs', '2000', String(requests), '5', '32'], dir);
  const lines = out.slice(out.indexOf('MEASURE-START'), out.indexOf('MEASURE-END')).split('\n');
  let promoted = 0;
  let fulls = 0;
  for (const line of lines) {
    if (/\bgc=s\b/.test(line)) promoted += Number(/\bpromoted=(\d+)/.exec(line)?.[1] ?? 0);
    if (/\bgc=mc\b/.test(line)) fulls += 1;
  }
  return { promotedKBPerRequest: Math.round((promoted / 1024 / requests) * 100) / 100, fullCollections: fulls };
}

const all = ['none', 'all', ...patches.map((f) => `no-${numberOf(f)}`)];
const wanted = process.argv.length > 2 ? process.argv.slice(2) : all;
const base = mkdtempSync(join(tmpdir(), 'triage-xstate-cost-'));
try {
  execFileSync('npm', ['pack', `xstate@${pinned}`, '--silent', '--pack-destination', base], { stdio: 'ignore' });
  execFileSync('tar', ['xzf', join(base, `xstate-${pinned}.tgz`), '-C', base]);
  const pristine = join(base, 'package');
  const variants = wanted.map((name) => {
    if (!all.includes(name)) throw new Error(`unknown variant ${name}: one of ${all.join(', ')}`);
    const applied = name === 'none' ? [] : patches.filter((f) => name !== `no-${numberOf(f)}`);
    return { name, dir: buildVariant(base, pristine, name, applied) };
  });
  console.log('variant\tinstructions/request\tKB promoted/request\tfull GCs');
  const queue = [...variants];
  const worker = async () => {
    for (let v = queue.shift(); v !== undefined; v = queue.shift()) {
      const n = await instructions(v.dir);
      const s = await survivors(v.dir);
      console.log(`${v.name}\t${n}\t${s.promotedKBPerRequest}\t${s.fullCollections}`);
    }
  };
  await Promise.all([worker(), worker()]);
} finally {
  rmSync(base, { recursive: true, force: true });
}
