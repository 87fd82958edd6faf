#!/usr/bin/env node
/**
 * postinstall: applies patches/ (small speed changes to the exact XState version package.json pins,
 * each described in docs/xstate-patches.md) with patch-package, and fails the install when one no
 * longer applies (`--error-on-fail`), so a new XState is looked at rather than silently slower.
 *
 * Harmless elsewhere, on purpose:
 * - when Triage is a dependency of another project (this folder is inside a node_modules), it does
 *   nothing: that project's XState is its own, and patch-package (a devDependency) is not there;
 * - when this repository is installed without its devDependencies (`npm ci --omit=dev`), it says so
 *   and leaves XState as published. Triage behaves the same on unpatched XState, only slower (CI runs
 *   the whole suite both ways: scripts/test-all).
 */
import { spawnSync } from 'node:child_process';
import { createRequire } from 'node:module';
import { dirname, join, resolve, sep } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

if (root.split(sep).includes('node_modules')) process.exit(0);

let bin;
try {
  const manifest = createRequire(join(root, 'package.json')).resolve('patch-package/package.json');
  bin = join(dirname(manifest), 'index.js');
} catch {
  console.log('postinstall: patch-package is not installed (no devDependencies): XState stays unpatched, which only makes Triage slower');
  process.exit(0);
}
const run = spawnSync(process.execPath, [bin, '--error-on-fail'], { cwd: root, stdio: 'inherit' });
process.exit(run.status ?? 1);
