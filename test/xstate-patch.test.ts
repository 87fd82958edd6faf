/**
 * XState's patches: patches/xstate+<version>+NNN+<name>.patch, applied by patch-package on install
 * (scripts/postinstall.mjs), each described in docs/xstate-patches.md. Two kinds of test here:
 * - what XState means where the patches change its code: these run on patched XState and again, in
 *   scripts/test-all's second run, on XState as published, so the patched code is held to XState's own
 *   behaviour;
 * - that the patches are there, and the speed-ups they exist for. They expect patched XState, unless
 *   TRIAGE_XSTATE_PATCHES=absent (test-all's second run): then the first checks that no patch is
 *   applied, and the speed-up checks are skipped (vitest counts and names them; test-all lists them).
 */
import { execFileSync } from 'node:child_process';
import { cpSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { assign, createActor, createMachine, emit, fromCallback, sendTo, type AnyActorRef, type InspectionEvent } from 'xstate';
import { describe, expect, it } from 'vitest';

const require = createRequire(import.meta.url);
const xstateDir = dirname(require.resolve('xstate/package.json'));
const xstateDist = join(xstateDir, 'dist');
const patchDir = join(import.meta.dirname, '..', 'patches');
const patched = process.env.TRIAGE_XSTATE_PATCHES !== 'absent';
const pinned: string = JSON.parse(readFileSync(join(import.meta.dirname, '..', 'package.json'), 'utf8')).dependencies.xstate;
const installed: string = JSON.parse(readFileSync(join(xstateDir, 'package.json'), 'utf8')).version;
/** patch-package's sequence for this version, in order (file names sort by their 001, 002, ... number). */
const patchFiles = readdirSync(patchDir)
  .filter((f) => f.startsWith('xstate+'))
  .sort();

/**
 * Whether every patch is applied to the installed XState (`applied`) or none is (`absent`): a copy of
 * it is taken back through the sequence (newest first, `git apply --reverse`) or forward through it,
 * and each step must apply cleanly. Returns the patches that did not.
 */
function patchesNotMatching(state: 'applied' | 'absent'): string[] {
  const root = mkdtempSync(join(tmpdir(), 'triage-xstate-'));
  try {
    cpSync(xstateDir, join(root, 'node_modules', 'xstate'), { recursive: true });
    const order = state === 'applied' ? [...patchFiles].reverse() : patchFiles;
    const failed: string[] = [];
    for (const f of order) {
      try {
        execFileSync('git', ['apply', ...(state === 'applied' ? ['--reverse'] : []), join(patchDir, f)], { cwd: root, stdio: 'pipe' });
      } catch {
        failed.push(f);
      }
    }
    return failed;
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

describe('the XState patches are', () => {
  it('for the exact XState version package.json pins and npm installed', () => {
    expect(pinned).toMatch(/^\d+\.\d+\.\d+$/);
    expect(installed).toBe(pinned);
    expect(patchFiles.length).toBeGreaterThan(0);
    for (const f of patchFiles) expect(f).toMatch(new RegExp(`^xstate\\+${installed.replaceAll('.', '\\.')}\\+\\d{3}\\+[a-z0-9-]+\\.patch$`));
  });

  it(patched ? 'each applied to the installed XState' : 'none applied (TRIAGE_XSTATE_PATCHES=absent: the unpatched run)', () => {
    const hint = patched ? 'not applied: run `npx patch-package` (npm install --ignore-scripts skips it)' : 'still applied: run `npx patch-package --reverse`';
    expect(patchesNotMatching(patched ? 'applied' : 'absent'), hint).toEqual([]);
  });
});

describe.skipIf(!patched)('the speed-ups the XState patches exist for (patched XState only)', () => {
  it('001: every actor gets options of one hidden class (checked by V8 itself, in a child process)', () => {
    const script = `
      const { createActor, createMachine } = require('xstate');
      const m = createMachine({ initial: 'a', states: { a: {} } });
      const parent = createActor(createMachine({})).start();
      const actors = Array.from({ length: 200 }, (_, i) => createActor(m, { id: 'r' + i, input: { i }, parent }));
      console.log(actors.every((a) => %HaveSameMap(a.options, actors[0].options)));`;
    const out = execFileSync(process.execPath, ['--allow-natives-syntax', '-e', script], { cwd: process.cwd(), encoding: 'utf8' });
    expect(out.trim()).toBe('true');
  });

  it('002: a snapshot copied by assign carries its state value and tags (the same objects), not recomputed ones', () => {
    const machine = createMachine({
      types: {} as { context: { n: number }; events: { type: 'bump' } },
      context: { n: 0 },
      initial: 'outer',
      states: { outer: { tags: ['busy'], initial: 'a', states: { a: { on: { bump: { actions: assign({ n: ({ context }) => context.n + 1 }) } } } } } },
    });
    const actor = createActor(machine).start();
    const first = actor.getSnapshot();
    actor.send({ type: 'bump' });
    expect(actor.getSnapshot().context.n).toBe(1);
    expect(actor.getSnapshot().value).toBe(first.value);
    expect(actor.getSnapshot().tags).toBe(first.tags);
  });
});

describe('XState where the patches change its code means what it means unpatched', () => {
  it('keeps the options meaning the same: defaults, then the caller options, later ones winning', () => {
    const clock = { setTimeout: () => 0, clearTimeout: () => undefined };
    const parent = createActor(createMachine({})).start();
    const actor = createActor(createMachine({}), { id: 'r1', input: { n: 1 }, parent, clock }) as unknown as AnyActorRef & { options: Record<string, unknown> };
    expect(actor.options).toMatchObject({ id: 'r1', input: { n: 1 }, parent, clock, devTools: false });
    expect(typeof actor.options.logger).toBe('function');
    expect(actor.id).toBe('r1');
    expect(actor.system).toBe(parent.system);
  });

  it('gives a snapshot copied by assign the same state value and tags, and computes them anew when the state changes', () => {
    const machine = createMachine({
      types: {} as { context: { n: number }; events: { type: 'bump' } | { type: 'next' } },
      context: { n: 0 },
      initial: 'outer',
      states: {
        outer: {
          tags: ['busy'],
          initial: 'a',
          states: {
            a: { tags: ['first'], on: { bump: { actions: assign({ n: ({ context }) => context.n + 1 }) }, next: 'b' } },
            b: { on: { bump: { actions: assign({ n: ({ context }) => context.n + 1 }) }, next: '#done' } },
          },
        },
        done: { id: 'done', type: 'final' },
      },
    });
    const actor = createActor(machine).start();
    const first = actor.getSnapshot();
    expect(first.value).toEqual({ outer: 'a' });
    actor.send({ type: 'bump' });
    const bumped = actor.getSnapshot();
    expect(bumped.context.n).toBe(1);
    expect(bumped.value).toEqual(first.value);
    expect([...bumped.tags].sort()).toEqual(['busy', 'first']);
    actor.send({ type: 'next' });
    const moved = actor.getSnapshot();
    expect(moved.value).toEqual({ outer: 'b' });
    expect([...moved.tags]).toEqual(['busy']);
    expect(moved.hasTag('first')).toBe(false);
    actor.send({ type: 'bump' });
    expect(actor.getSnapshot().value).toEqual({ outer: 'b' });
    expect(actor.getSnapshot().matches({ outer: 'b' })).toBe(true);
    actor.send({ type: 'next' });
    expect(actor.getSnapshot().status).toBe('done');
    expect(actor.getSnapshot().value).toBe('done');
    expect([...actor.getSnapshot().tags]).toEqual([]);
  });

  it('runs a targetless transition\'s actions in order, then the eventless transitions its assign enables (the scheduler\'s pattern)', () => {
    const log: string[] = [];
    const machine = createMachine({
      types: {} as { context: { waiting: number }; events: { type: 'enqueue' } | { type: 'drain' } },
      context: { waiting: 0 },
      initial: 'idle',
      states: {
        idle: {
          entry: () => log.push('enter idle'),
          exit: () => log.push('exit idle'),
          on: {
            enqueue: [
              // A guard that fails first: the second candidate is the one taken.
              { guard: () => false, target: 'backlogged' },
              { actions: [() => log.push('first'), assign({ waiting: ({ context }) => context.waiting + 1 }), emit({ type: 'queued' }), () => log.push('second')] },
            ],
          },
          always: { guard: ({ context }) => context.waiting >= 2, target: 'backlogged' },
        },
        backlogged: {
          entry: () => log.push('enter backlogged'),
          on: { drain: { actions: assign({ waiting: 0 }) } },
          always: { guard: ({ context }) => context.waiting === 0, target: 'idle' },
        },
      },
    });
    const actor = createActor(machine);
    const emitted: string[] = [];
    actor.on('queued', (e) => emitted.push(e.type));
    actor.start();
    log.length = 0;
    const before = actor.getSnapshot();
    actor.send({ type: 'enqueue' });
    expect(log).toEqual(['first', 'second']);
    expect(emitted).toEqual(['queued']);
    expect(actor.getSnapshot().value).toBe('idle');
    expect(actor.getSnapshot().context.waiting).toBe(1);
    expect(actor.getSnapshot()._nodes).toEqual(before._nodes);
    log.length = 0;
    actor.send({ type: 'enqueue' });
    // The assign enabled the eventless transition: idle is exited after the actions, not re-entered.
    expect(log).toEqual(['first', 'second', 'exit idle', 'enter backlogged']);
    expect(actor.getSnapshot().value).toBe('backlogged');
    log.length = 0;
    actor.send({ type: 'drain' });
    expect(log).toEqual(['enter idle']);
    expect(actor.getSnapshot().value).toBe('idle');
    // An event with no transition changes nothing.
    const still = actor.getSnapshot();
    actor.send({ type: 'drain' });
    expect(actor.getSnapshot()).toBe(still);
  });

  it('finds eventless transitions on ancestors, nearest first, and in every region of a parallel state', () => {
    const machine = createMachine({
      types: {} as { context: { go: boolean }; events: { type: 'go' } },
      context: { go: false },
      type: 'parallel',
      states: {
        left: {
          initial: 'outer',
          states: {
            outer: {
              // The parent's eventless transition, checked after the child's (which never fires).
              always: { guard: ({ context }) => context.go, target: 'moved' },
              initial: 'inner',
              states: { inner: { always: { guard: () => false, target: 'inner' } } },
            },
            moved: {},
          },
        },
        right: {
          initial: 'waiting',
          states: {
            waiting: { always: { guard: ({ context }) => context.go, target: 'done' }, on: { go: { actions: assign({ go: true }) } } },
            done: {},
          },
        },
      },
    });
    const actor = createActor(machine).start();
    expect(actor.getSnapshot().value).toEqual({ left: { outer: 'inner' }, right: 'waiting' });
    actor.send({ type: 'go' });
    expect(actor.getSnapshot().value).toEqual({ left: 'moved', right: 'done' });
  });

  it('keeps two transitions on one event in two regions, and targets through a history state', () => {
    const log: string[] = [];
    const machine = createMachine({
      types: {} as { events: { type: 'tick' } | { type: 'away' } | { type: 'back' } },
      initial: 'work',
      states: {
        work: {
          type: 'parallel',
          states: {
            a: { initial: 'a1', states: { a1: { on: { tick: { actions: () => log.push('a') } } } } },
            b: {
              initial: 'b1',
              states: {
                b1: { on: { tick: { target: 'b2', actions: () => log.push('b') } } },
                b2: {},
                hist: { type: 'history' },
              },
            },
          },
          on: { away: 'pause' },
        },
        pause: { on: { back: '#resume' } },
        resume: { id: 'resume', always: 'work.b.hist' },
      },
    });
    const actor = createActor(machine).start();
    actor.send({ type: 'tick' });
    expect(log).toEqual(['a', 'b']);
    expect(actor.getSnapshot().value).toEqual({ work: { a: 'a1', b: 'b2' } });
    actor.send({ type: 'away' });
    actor.send({ type: 'back' });
    // Through the history state: b returns to b2, where it was, not to its initial b1.
    expect(actor.getSnapshot().value).toEqual({ work: { a: 'a1', b: 'b2' } });
  });

  it('gives a flat machine the value of its one active state, and a nested one its value object, each its own', () => {
    const flat = createMachine({ id: 'flat', initial: 'a', states: { a: { on: { go: 'b' } }, b: { on: { go: 'c' } }, c: { type: 'final' } } });
    const other = createMachine({ id: 'other', initial: 'x', states: { x: { on: { go: 'y' } }, y: {} } });
    const nested = createMachine({ initial: 'p', states: { p: { initial: 'q', states: { q: { on: { go: 'r' } }, r: {} } } } });
    const f = createActor(flat).start();
    const o = createActor(other).start();
    const n = createActor(nested).start();
    expect([f.getSnapshot().value, o.getSnapshot().value, n.getSnapshot().value]).toEqual(['a', 'x', { p: 'q' }]);
    f.send({ type: 'go' });
    o.send({ type: 'go' });
    n.send({ type: 'go' });
    expect([f.getSnapshot().value, o.getSnapshot().value, n.getSnapshot().value]).toEqual(['b', 'y', { p: 'r' }]);
    f.send({ type: 'go' });
    expect(f.getSnapshot().value).toBe('c');
    expect(f.getSnapshot().status).toBe('done');
    // A second actor of each machine starts where the first did.
    expect(createActor(flat).start().getSnapshot().value).toBe('a');
    expect(createActor(nested).start().getSnapshot().value).toEqual({ p: 'q' });
    expect(flat.resolveState({ value: 'b' }).value).toBe('b');
  });

  it('exits and enters only the siblings on a transition between them, with or without reenter, and the parent when leaving it', () => {
    const log: string[] = [];
    const track = (name: string) => ({ entry: () => log.push(`enter ${name}`), exit: () => log.push(`exit ${name}`) });
    const machine = createMachine({
      types: {} as { events: { type: 'next' } | { type: 'again' } | { type: 'out' } },
      initial: 'parent',
      states: {
        parent: {
          ...track('parent'),
          initial: 'a',
          states: {
            a: { ...track('a'), on: { next: { target: 'b', actions: () => log.push('a→b') } } },
            b: { ...track('b'), on: { again: { target: 'a', reenter: true, actions: () => log.push('b→a') }, out: { target: '#away', actions: () => log.push('b→away') } } },
          },
        },
        away: { id: 'away', ...track('away') },
      },
    });
    const actor = createActor(machine).start();
    log.length = 0;
    actor.send({ type: 'next' });
    expect(log).toEqual(['exit a', 'a→b', 'enter b']);
    actor.send({ type: 'again' });
    expect(log.slice(3)).toEqual(['exit b', 'b→a', 'enter a']);
    expect(actor.getSnapshot().value).toEqual({ parent: 'a' });
    actor.send({ type: 'next' });
    log.length = 0;
    actor.send({ type: 'out' });
    expect(log).toEqual(['exit b', 'exit parent', 'b→away', 'enter away']);
    expect(actor.getSnapshot().value).toBe('away');
  });

  it('chooses among guarded, wildcard and partial-descriptor transitions per event type, the same each time', () => {
    const log: string[] = [];
    const machine = createMachine({
      types: {} as { context: { n: number }; events: { type: 'job.done' } | { type: 'job.failed' } | { type: 'ping' } },
      context: { n: 0 },
      initial: 'on',
      states: {
        on: {
          on: {
            'job.done': [{ guard: ({ context }) => context.n > 1, actions: () => log.push('done late') }, { actions: [() => log.push('done'), assign({ n: ({ context }) => context.n + 1 })] }],
            'job.*': { actions: () => log.push('job.*') },
            '*': { actions: () => log.push('*') },
          },
        },
      },
    });
    const actor = createActor(machine).start();
    for (const type of ['job.done', 'job.failed', 'ping', 'job.done', 'job.done', 'job.failed'] as const) actor.send({ type });
    expect(log).toEqual(['done', 'job.*', '*', 'done', 'done late', 'job.*']);
  });

  it('runs one transition\'s actions in order, each seeing the assigns before it, then enters one state or several parent first', () => {
    const log: string[] = [];
    const machine = createMachine({
      types: {} as { context: { n: number }; events: { type: 'step' } | { type: 'deep' } },
      context: { n: 0 },
      initial: 'a',
      states: {
        a: {
          on: {
            step: {
              target: 'b',
              actions: [assign({ n: 1 }), ({ context }) => log.push(`first sees ${context.n}`), assign({ n: ({ context }) => context.n + 1 }), ({ context }) => log.push(`second sees ${context.n}`)],
            },
          },
        },
        b: { entry: [() => log.push('enter b'), () => log.push('enter b again')], on: { deep: 'c' } },
        c: { entry: () => log.push('enter c'), initial: 'c1', states: { c1: { entry: () => log.push('enter c1') } } },
      },
    });
    const actor = createActor(machine).start();
    actor.send({ type: 'step' });
    expect(log).toEqual(['first sees 1', 'second sees 2', 'enter b', 'enter b again']);
    actor.send({ type: 'deep' });
    expect(log.slice(4)).toEqual(['enter c', 'enter c1']);
    expect(actor.getSnapshot().value).toEqual({ c: 'c1' });
    // The machine's own transition arrays are not changed by running them.
    actor.send({ type: 'deep' });
    const again = createActor(machine).start();
    again.send({ type: 'step' });
    expect(log.slice(6)).toEqual(['first sees 1', 'second sees 2', 'enter b', 'enter b again']);
  });

  it('leaves the system\'s map of live actors unread anywhere (so not keeping it, patch 012, changes nothing)', () => {
    const raise = readdirSync(xstateDist).filter((f) => /^raise-[0-9a-f]+(\.development)?\.(cjs|esm)\.js$/.test(f));
    expect(raise.length).toBeGreaterThanOrEqual(2);
    for (const f of raise) {
      const text = readFileSync(join(xstateDist, f), 'utf8');
      const start = text.indexOf('function createSystem(');
      const end = text.indexOf('return system;', start);
      expect(start, f).toBeGreaterThan(0);
      const body = text.slice(start, end);
      // Declared, written (unpatched), deleted from: nothing in the system reads it. A new XState that
      // reads it fails here, and patch 012 must be looked at again.
      const uses = body.match(/\bchildren\b[^;]*/g) ?? [];
      const notReads = (use: string) => use.startsWith('children = new Map()') || use.startsWith('children.set(') || use.startsWith('children.delete(');
      expect(uses.filter((use) => !notReads(use)), f).toEqual([]);
      expect(body, f).toContain('children.delete(actorRef.sessionId)');
    }
  });

  it('still finds actors by system id, forgets them when they stop, and runs many actors of one system', () => {
    const child = createMachine({ initial: 'on', states: { on: { on: { off: 'done' } }, done: { type: 'final' } } });
    const root = createActor(createMachine({})).start();
    const keyed = createActor(child, { parent: root, systemId: 'keyed' }).start();
    expect(root.system.get('keyed')).toBe(keyed);
    const many = Array.from({ length: 100 }, (_, i) => createActor(child, { id: `r${i}`, parent: root }).start());
    for (const a of many) a.send({ type: 'off' });
    expect(many.every((a) => a.getSnapshot().status === 'done')).toBe(true);
    keyed.send({ type: 'off' });
    expect(keyed.getSnapshot().status).toBe('done');
    expect(root.system.get('keyed')).toBeUndefined();
    // The id can be taken again once its actor is gone.
    const again = createActor(child, { parent: root, systemId: 'keyed' }).start();
    expect(root.system.get('keyed')).toBe(again);
  });

  it('runs entry and exit actions in order, starts an invoked child on entry and stops it after the step that left its state, runs initial actions after entry, and leaves the states\' lists as they were (patch 014)', () => {
    const log: string[] = [];
    const at = (name: string) => () => void log.push(name);
    const machine = createMachine({
      initial: 'a',
      entry: at('enter root'),
      states: {
        a: { entry: [at('enter a 1'), at('enter a 2')], exit: [at('exit a 1'), at('exit a 2')], on: { next: 'b' } },
        b: {
          entry: at('enter b'),
          exit: at('exit b'),
          invoke: { id: 'child', src: fromCallback(() => (log.push('child started'), () => void log.push('child stopped'))) },
          on: { next: 'c' },
        },
        c: {
          initial: { target: 'c1', actions: at('initial of c') },
          entry: at('enter c'),
          states: { c1: { entry: at('enter c1'), on: { next: 'd' } }, d: { type: 'final' } },
          onDone: 'e',
        },
        e: { type: 'final', entry: at('enter e') },
      },
    });
    const lengths = () => ['a', 'b', 'c', 'e'].map((k) => [machine.states[k]!.entry.length, machine.states[k]!.exit.length]);
    const before = lengths();
    for (let run = 0; run < 2; run++) {
      log.length = 0;
      const actor = createActor(machine).start();
      for (let i = 0; i < 3; i++) actor.send({ type: 'next' });
      expect(actor.getSnapshot().status).toBe('done');
      expect(log).toEqual(['enter root', 'enter a 1', 'enter a 2', 'exit a 1', 'exit a 2', 'enter b', 'child started', 'exit b', 'enter c', 'initial of c', 'enter c1', 'child stopped', 'enter e']);
      expect(lengths()).toEqual(before);
    }
  });

  it('tells an inspector every kind of event, only while it is subscribed, and any observer subscribed at creation (patch 013)', () => {
    const machine = createMachine({
      initial: 'a',
      states: { a: { on: { go: { target: 'b', actions: [() => undefined, sendTo(({ system }) => system.get('peer'), { type: 'ping' })] } } }, b: { type: 'final' } },
    });
    const peer = createMachine({ on: { ping: {} } });
    const kinds = (events: InspectionEvent[]) => [...new Set(events.map((e) => e.type))].sort();
    const seen: InspectionEvent[] = [];
    const root = createActor(createMachine({}), { inspect: (e) => seen.push(e) }).start();
    createActor(peer, { parent: root, systemId: 'peer' }).start();
    createActor(machine, { parent: root }).start().send({ type: 'go' });
    expect(kinds(seen)).toEqual(['@xstate.action', '@xstate.actor', '@xstate.event', '@xstate.microstep', '@xstate.snapshot']);

    // A system nobody inspects yet: nothing until an observer comes, everything while one is there.
    const plain = createActor(createMachine({})).start();
    const late: InspectionEvent[] = [];
    const other: InspectionEvent[] = [];
    createActor(peer, { parent: plain, systemId: 'peer' }).start();
    createActor(machine, { parent: plain }).start().send({ type: 'go' });
    const first = plain.system.inspect((e) => late.push(e));
    const second = plain.system.inspect((e) => other.push(e));
    const watched = createActor(machine, { parent: plain }).start();
    first.unsubscribe();
    watched.send({ type: 'go' });
    expect(kinds(late)).toEqual(['@xstate.actor', '@xstate.event', '@xstate.snapshot']);
    expect(kinds(other)).toEqual(['@xstate.action', '@xstate.actor', '@xstate.event', '@xstate.microstep', '@xstate.snapshot']);
    second.unsubscribe();
    const count = other.length;
    createActor(machine, { parent: plain }).start().send({ type: 'go' });
    expect(other.length).toBe(count);
  });
});
