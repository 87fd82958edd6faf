/**
 * The Router applies V8_FLAGS (src/runtime-flags.ts) when created, as the CLI does, unless its options
 * say `v8Flags: false`. What the flag does to the heap is measured in docs/performance.md; here only
 * that the Router asks for it.
 */
import { describe, it, expect, vi, beforeEach } from 'vitest';

const applied = vi.hoisted(() => ({ count: 0 }));
vi.mock('../src/runtime-flags.js', async (importOriginal) => {
  const real = await importOriginal<typeof import('../src/runtime-flags.js')>();
  return { ...real, applyV8Flags: () => void (applied.count += 1) };
});

const { createRouter } = await import('../src/router.js');
const { V8_FLAGS } = await import('../src/runtime-flags.js');
const { testConfig } = await import('./support/test-config.js');

describe('V8 flags', () => {
  beforeEach(() => {
    applied.count = 0;
  });

  it('turn allocation-site pretenuring off', () => {
    expect(V8_FLAGS).toEqual(['--no-allocation-site-pretenuring']);
  });

  it('are applied by a new Router', async () => {
    const router = createRouter(testConfig({ m: [{}] }));
    expect(applied.count).toBe(1);
    await router.close(0);
  });

  it('are left alone with v8Flags: false', async () => {
    const router = createRouter(testConfig({ m: [{}] }), { v8Flags: false });
    expect(applied.count).toBe(0);
    await router.close(0);
  });
});
