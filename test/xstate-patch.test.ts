/**
 * scripts/patch-xstate.mjs (run by npm on install): XState's actors must build their options with one
 * shared hidden class, and those options must mean what XState's own code meant.
 */
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { createActor, createMachine, type AnyActorRef } from 'xstate';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const xstateDist = join(dirname(require.resolve('xstate/package.json')), 'dist');

describe('the XState install patch', () => {
  it('is applied to every build of the Actor class (a new XState without the line fails here, to be looked at)', () => {
    const chunks = readdirSync(xstateDist).filter((f) => /^raise-[0-9a-f]+(\.development)?\.(cjs|esm)\.js$/.test(f));
    expect(chunks.length).toBeGreaterThanOrEqual(2);
    for (const f of chunks) {
      const text = readFileSync(join(xstateDist, f), 'utf8');
      expect(text, f).toContain('const resolvedOptions = Object.assign({}, defaultOptions, options);');
      expect(text, f).not.toMatch(/\.\.\.defaultOptions/);
    }
  });

  it('gives every actor options of one hidden class (checked by V8 itself, in a child process)', () => {
    const script = `
      const { createActor, createMachine } = require('xstate');
      const m = createMachine({ initial: 'a', states: { a: {} } });
      const parent = createActor(createMachine({})).start();
      const actors = Array.from({ length: 200 }, (_, i) => createActor(m, { id: 'r' + i, input: { i }, parent }));
      console.log(actors.every((a) => %HaveSameMap(a.options, actors[0].options)));`;
    const out = execFileSync(process.execPath, ['--allow-natives-syntax', '-e', script], { cwd: process.cwd(), encoding: 'utf8' });
    expect(out.trim()).toBe('true');
  });

  it('keeps the options meaning the same: defaults, then the caller options, later ones winning', () => {
    const clock = { setTimeout: () => 0, clearTimeout: () => undefined };
    const parent = createActor(createMachine({})).start();
    const actor = createActor(createMachine({}), { id: 'r1', input: { n: 1 }, parent, clock }) as unknown as AnyActorRef & { options: Record<string, unknown> };
    expect(actor.options).toMatchObject({ id: 'r1', input: { n: 1 }, parent, clock, devTools: false });
    expect(typeof actor.options.logger).toBe('function');
    expect(actor.id).toBe('r1');
    expect(actor.system).toBe(parent.system);
  });
});
