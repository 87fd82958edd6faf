#!/usr/bin/env node
/**
 * postinstall: changes one line of XState 5 for speed on Node 20, keeping its meaning.
 *
 * XState's Actor constructor builds its options as `{ ...defaultOptions, ...options }`. On V8 11.3
 * (Node 20), a spread that adds properties to a cloned object gives every result a hidden class of its
 * own, allocated in old space: ~4 µs and ~300 bytes of old-space garbage per actor, and Triage creates
 * one actor per request. Those maps only go in full collections. `Object.assign({}, defaultOptions,
 * options)` builds the same object (the own enumerable properties of both, later ones winning) with
 * one shared hidden class. Measured side by side: the gateway's CPU per request ~148 → ~132 µs, ~12%
 * more requests per second, and shorter minor GC pauses (docs/performance.md).
 *
 * Applied only when this repository itself is installed (`npm install` / `npm ci` here), never when
 * Triage is a dependency of another project: that project's XState is its own. Idempotent. If the
 * installed XState no longer has that line, it says so and changes nothing; test/xstate-patch.test.ts
 * then fails, so a new XState version is looked at rather than silently slower. Without the patch
 * (`--ignore-scripts`) Triage behaves the same, only slower. Drop this once XState builds its options
 * without the spread.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const SPREAD = /const resolvedOptions = \{\s*\.\.\.defaultOptions,\s*\.\.\.options\s*\};/;
const ASSIGN = 'const resolvedOptions = Object.assign({}, defaultOptions, options);';

const initCwd = process.env.INIT_CWD;
if (initCwd !== undefined && resolve(initCwd) !== root) process.exit(0);

let xstateDir;
try {
  xstateDir = dirname(createRequire(join(root, 'package.json')).resolve('xstate/package.json'));
} catch {
  console.log('patch-xstate: xstate is not installed; nothing to do');
  process.exit(0);
}
const dist = join(xstateDir, 'dist');
// The Actor class is in the `raise-*` chunks: one per build (cjs, esm) and mode (production, development).
const files = readdirSync(dist).filter((f) => /^raise-[0-9a-f]+(\.development)?\.(cjs|esm)\.js$/.test(f));
let patched = 0;
let already = 0;
for (const file of files) {
  const path = join(dist, file);
  const text = readFileSync(path, 'utf8');
  if (text.includes(ASSIGN)) {
    already += 1;
    continue;
  }
  if (!SPREAD.test(text)) continue;
  writeFileSync(path, text.replace(SPREAD, ASSIGN));
  patched += 1;
}
const { version } = JSON.parse(readFileSync(join(xstateDir, 'package.json'), 'utf8'));
if (patched + already === 0) console.log(`patch-xstate: xstate ${version} no longer builds actor options with a spread; nothing changed`);
else console.log(`patch-xstate: xstate ${version}: actor options built with Object.assign in ${patched + already} of ${files.length} files (${patched} patched now)`);
