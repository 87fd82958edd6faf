/** A gateway instance's /queue/status, read over HTTP by the multi-process tests (one Redis, or a cluster). */
import { expect } from 'vitest';
import { waitFor } from './gateway.js';

export interface GroupStatus {
  model: string;
  waiting: number;
  inFlight: number;
  depthByPriority: Record<string, number>;
  deployments: Array<{ id: string; inFlight: number; rpmUsed: number; tpmUsed: number; rpm: number | null; headroom: number | null }>;
  waiters: Array<{ id: string; priority: number; seq: number }>;
}

export async function status(url: string, model: string): Promise<GroupStatus> {
  const res = await fetch(`${url}/queue/status`, { signal: AbortSignal.timeout(5_000) });
  expect(res.status).toBe(200);
  const s = ((await res.json()) as { models: GroupStatus[] }).models.find((m) => m.model === model);
  if (s === undefined) throw new Error(`no status for ${model}`);
  return s;
}

/**
 * Polls an instance's /queue/status until `ok` holds; returns that status. `retryErrors`: an
 * unanswered poll is tried again (a shard restarting) instead of failing the test.
 */
export function statusUntil(url: string, model: string, ok: (s: GroupStatus) => boolean, what: string, timeoutMs = 10_000, retryErrors = false): Promise<GroupStatus> {
  return waitFor(
    async () => {
      const s = retryErrors ? await status(url, model).catch(() => undefined) : await status(url, model);
      return s !== undefined && ok(s) ? s : undefined;
    },
    what,
    timeoutMs,
  );
}
