/**
 * V8's flags belong to the process: a Router sets them (V8_FLAGS, src/runtime-flags.ts) only when its
 * caller opts in with `v8Flags: true`. The `triage` command gets them on node's command line instead
 * (test/launcher.test.ts). What the flag does to the heap is measured in docs/performance.md.
 */
import { describe, it, expect, vi, beforeEach } from 'vitest';

const setFlags = vi.hoisted(() => ({ calls: [] as string[] }));
vi.mock('node:v8', async (importOriginal) => {
  const real = await importOriginal<typeof import('node:v8')>();
  return { ...real, default: real, setFlagsFromString: (flag: string) => void setFlags.calls.push(flag) };
});

const { createRouter } = await import('../src/router.js');
const { V8_FLAGS, missingV8Flags } = await import('../src/runtime-flags.js');
const { testConfig } = await import('./support/test-config.js');

describe('V8 flags', () => {
  beforeEach(() => {
    setFlags.calls = [];
  });

  it('are left alone by a new Router', async () => {
    const router = createRouter(testConfig({ m: [{}] }));
    expect(setFlags.calls).toEqual([]);
    await router.close(0);
  });

  it('are set by a Router whose caller opts in with v8Flags: true', async () => {
    const router = createRouter(testConfig({ m: [{}] }), { v8Flags: true });
    expect(setFlags.calls).toEqual([...V8_FLAGS]);
    await router.close(0);
  });

  it('missing from a command line are named, and only those', () => {
    expect(missingV8Flags([])).toEqual([...V8_FLAGS]);
    expect(missingV8Flags(['--inspect', ...V8_FLAGS])).toEqual([]);
  });
});
