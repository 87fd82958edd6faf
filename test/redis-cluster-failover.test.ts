/**
 * Failover on a real Redis Cluster with replicas (test/support/redis-cluster.ts: 3 masters, 3
 * replicas, cluster-node-timeout 1000 ms) under two gateway processes (the built CLI): the master of
 * a model group's slot is killed with SIGKILL and its replica promoted by the cluster. Requests in
 * flight then get an answer (served, or 503 store_unavailable with Retry-After), nothing is
 * dispatched twice, the parallel limit holds, and traffic flows again without a gateway restart.
 *
 * Replication is asynchronous, so a promoted replica may miss the master's last writes. The second
 * test makes that happen on purpose (replication cut, then writes, then the kill) and checks what
 * docs/multi-instance.md says happens: a grant Redis lost leaves its call running uncounted (the
 * limit exceeded by that call, once), its slot's old holder is given back by reconciliation, a
 * waiter Redis lost is re-queued by its owner, and the group ends idle. The third shows a lease
 * shorter than the failover: the silence is not counted against it, so nobody is reaped.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { killAll, runCli, type CliProcess } from './support/cli-process.js';
import { completionBody, FakeOpenAI, type RecordedRequest } from './support/fake-openai.js';
import { waitFor } from './support/gateway.js';
import { statusUntil as pollStatus, type GroupStatus } from './support/queue-status.js';
import { freshPrefix } from './support/redis.js';
import { keySlot, modelWithSlot, servesSlot, startRedisCluster, type RedisCluster } from './support/redis-cluster.js';

/** Polls ride out the failover (a status call may fail while the slot has no master). */
const statusUntil = (url: string, model: string, ok: (s: GroupStatus) => boolean, what: string, timeoutMs = 15_000) => pollStatus(url, model, ok, what, timeoutMs, true);

const NODE_TIMEOUT_MS = 1000;
/**
 * Longer than a failover here (times in docs/multi-instance.md, Failover): no lease lapses on the
 * promoted replica meanwhile. The last test shows what a shorter lease does.
 */
const LONG_LEASE = '  redis_lease_seconds: 10\n';
const dir = mkdtempSync(join(tmpdir(), 'triage-failover-test-'));
let configCount = 0;
const children: CliProcess[] = [];
const fakes: FakeOpenAI[] = [];
let cluster: RedisCluster;

beforeAll(async () => {
  cluster = await startRedisCluster({ masters: 3, replicas: 1, nodeTimeoutMs: NODE_TIMEOUT_MS });
}, 60_000);

afterEach(async () => {
  await killAll(children.splice(0));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

afterAll(async () => {
  await cluster?.stop();
  rmSync(dir, { recursive: true, force: true });
});

/** A model name whose group slot lies on the master at `nodeIndex`. */
function modelOn(nodeIndex: number): string {
  const node = cluster.nodes[nodeIndex];
  expect(node.role).toBe('master');
  return modelWithSlot('f', (slot) => servesSlot(node, slot));
}

function writeConfig(model: string, apiBase: string, prefix: string, maxParallel: number, router = ''): string {
  const nodes = cluster.nodes.slice(0, 3).map((n) => `    - { host: 127.0.0.1, port: ${n.port} }`).join('\n');
  const file = join(dir, `config-${++configCount}.yaml`);
  writeFileSync(
    file,
    `model_list:
  - model_name: ${model}
    litellm_params:
      model: openai/up-${model}
      api_base: ${apiBase}
      api_key: sk-${model}
      max_parallel_requests: ${maxParallel}
router_settings:
  redis_startup_nodes:
${nodes}
  redis_prefix: ${prefix}
${router}`,
  );
  return file;
}

async function startInstances(file: string, n: number): Promise<string[]> {
  const procs = Array.from({ length: n }, () => runCli(['--config', file, '--port', '0']));
  children.push(...procs);
  return Promise.all(procs.map((p) => p.url));
}

interface Reply {
  status: number;
  headers: Headers;
  body: { choices?: Array<{ message: { content: string } }>; error?: { type: string; code: string } };
}

function chat(url: string, model: string, content: string, priority = 0): Promise<Reply> {
  const p = (async () => {
    const res = await fetch(`${url}/queue/chat/completions`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model, priority, messages: [{ role: 'user', content }], timeout: 40 }),
      signal: AbortSignal.timeout(45_000),
    });
    return { status: res.status, headers: res.headers, body: (await res.json()) as Reply['body'] };
  })();
  p.catch(() => undefined);
  return p;
}

const promptOf = (r: RecordedRequest | undefined): unknown => r?.body?.messages?.[0]?.content;

/**
 * A fake upstream that holds each call until the test releases it (by its prompt, or all from some
 * point on), and records how many calls it held at once.
 */
async function startHeldUpstream() {
  const fake = await FakeOpenAI.start();
  fakes.push(fake);
  const gates = new Map<string, () => void>();
  const opened = new Set<string>();
  let openAll = false;
  let current = 0;
  /** `entered`: calls that reached the handler (the fake records a request before its handler runs). */
  const stats = { maxConcurrent: 0, entered: 0 };
  fake.always(async (x) => {
    stats.entered += 1;
    current += 1;
    stats.maxConcurrent = Math.max(stats.maxConcurrent, current);
    const prompt = String(promptOf(x.request));
    await Promise.race([
      new Promise<void>((resolve) => (openAll || opened.has(prompt) ? resolve() : gates.set(prompt, resolve))),
      x.ended,
    ]);
    current -= 1;
    x.json(200, completionBody(String(x.request.body?.model), `answer to ${prompt}`));
  });
  return {
    fake,
    stats,
    prompts: () => fake.requests.map(promptOf),
    release(prompt: string) {
      opened.add(prompt);
      gates.get(prompt)?.();
    },
    releaseAll() {
      openAll = true;
      for (const g of gates.values()) g();
    },
  };
}

/** Served, or refused 503 store_unavailable with a Retry-After: what a request during a failover may get. */
function expectServedOrUnavailable(r: Reply, content: string): void {
  if (r.status === 200) {
    expect(r.body.choices?.[0].message.content).toBe(`answer to ${content}`);
    return;
  }
  expect(`${r.status} ${r.body.error?.code}`).toBe('503 store_unavailable');
  expect(Number(r.headers.get('retry-after'))).toBeGreaterThanOrEqual(1);
}

describe('gateways on a Redis Cluster with replicas: failover', () => {
  it("kill -9 of the group's master: in-flight and waiting requests are answered, each dispatched once, the parallel limit held, and traffic flows again after the replica's promotion", async () => {
    const masterIndex = 0;
    const model = modelOn(masterIndex);
    const slot = keySlot(`{${model}}`);
    const replicaIndex = await cluster.replicaOf(masterIndex);
    const up = await startHeldUpstream();
    const prefix = freshPrefix('fo');
    const [i0, i1] = await startInstances(writeConfig(model, up.fake.url, prefix, 2, LONG_LEASE), 2);

    // Two calls in flight (one per instance), four waiters (two per instance).
    const held = [chat(i0, model, 'held 0'), chat(i1, model, 'held 1')];
    await up.fake.until((f) => f.requests.length === 2, 'two calls in flight');
    const waiters = [0, 1, 2, 3].map((k) => chat(k % 2 === 0 ? i0 : i1, model, `waiter ${k}`, k));
    await statusUntil(i0, model, (s) => s.waiting === 4 && s.inFlight === 2, 'four waiters behind two calls');
    // This test is about the failover itself: the replica has every write (the next test is not).
    await cluster.waitReplicated(masterIndex, `{${model}}:replication-probe`);

    const killedAt = Date.now();
    await cluster.stopNode(masterIndex, true);
    // During the failover: one call in flight finishes (its release fails, and is sent again later),
    // and new requests reach both instances.
    up.release('held 0');
    const during = [0, 1, 2, 3, 4, 5].map((k) => chat(k % 2 === 0 ? i0 : i1, model, `during ${k}`, 5));
    const promotedIndex = await cluster.waitServedBy(slot, masterIndex, 20_000);
    const promotedMs = Date.now() - killedAt;
    expect(promotedIndex).toBe(replicaIndex);

    expect((await held[0]).status).toBe(200);
    // Traffic flows again on both instances without a restart: a fresh request is served on each.
    up.releaseAll();
    const firstServed: number[] = [];
    for (const [n, url] of [i0, i1].entries()) {
      await waitFor(
        async () => {
          const r = await chat(url, model, `after ${n} ${Date.now()}`);
          return r.status === 200 ? true : undefined;
        },
        `instance ${n} to serve again`,
        20_000,
      );
      firstServed.push(Date.now() - killedAt);
    }

    // Every request of the failover got an answer: the ones already there were all served.
    for (const r of [...held, ...waiters]) expect((await r).status).toBe(200);
    for (const [k, r] of during.entries()) expectServedOrUnavailable(await r, `during ${k}`);
    // Nothing was dispatched twice, and never more than max_parallel_requests at once.
    const prompts = up.prompts();
    expect(new Set(prompts).size).toBe(prompts.length);
    for (const k of [0, 1, 2, 3]) expect(prompts).toContain(`waiter ${k}`);
    expect(up.stats.maxConcurrent).toBeLessThanOrEqual(2);
    // Both instances listen on the promoted node (sharded channels resubscribed), and the group ends idle.
    const port = cluster.nodes[promotedIndex].port;
    await waitFor(async () => {
      const channels = (await cluster.cli(port, 'pubsub', 'shardchannels', `${prefix}:*`)).split('\n').filter((l) => l !== '');
      return channels.length === 2 ? true : undefined;
    }, 'the sharded channels on the promoted node', 15_000);
    await statusUntil(i1, model, (s) => s.waiting === 0 && s.inFlight === 0, 'an idle group');
    const served = (await Promise.all(during)).filter((r) => r.status === 200).length;
    console.log(
      `cluster failover (cluster-node-timeout ${NODE_TIMEOUT_MS} ms): replica promoted ${promotedMs} ms after the kill; ` +
        `served again ${firstServed.join(' / ')} ms after it; requests sent during it: ${served} of 6 served, ${6 - served} answered 503`,
    );
  }, 90_000);

  it("writes the replica never received (replication cut, then the master killed): a lost grant's call runs uncounted once, the lost waiter is re-queued and served, and the group ends idle", async () => {
    const masterIndex = 1;
    const model = modelOn(masterIndex);
    const slot = keySlot(`{${model}}`);
    const up = await startHeldUpstream();
    const [a, b] = await startInstances(writeConfig(model, up.fake.url, freshPrefix('fo-lost'), 1, LONG_LEASE), 2);

    // Replicated: A's call holds the only slot; B's waiter waits.
    const holder = chat(a, model, 'holder');
    await up.fake.until((f) => f.requests.length === 1, 'the holder in flight');
    const first = chat(b, model, 'first waiter');
    await statusUntil(a, model, (s) => s.waiting === 1 && s.inFlight === 1, 'a waiter behind the holder');
    await cluster.waitReplicated(masterIndex, `{${model}}:replication-probe`);

    // Not replicated: the holder's release, the grant of B's waiter (dispatched), and A's new waiter.
    await cluster.cutReplication(masterIndex);
    up.release('holder');
    expect((await holder).status).toBe(200);
    await up.fake.until((f) => f.requests.length === 2, "B's waiter dispatched");
    expect(promptOf(up.fake.requests[1])).toBe('first waiter');
    const lost = chat(a, model, 'lost waiter');
    await statusUntil(a, model, (s) => s.waiting === 1 && s.inFlight === 1, 'the new waiter queued on the master only');

    await cluster.stopNode(masterIndex, true);
    await cluster.waitServedBy(slot, masterIndex, 20_000);
    // The promoted replica still holds the holder's grant and B's waiter, and not A's waiter. The
    // instances reconcile: A gives back the holder's grant (it released it already), B removes its
    // dispatched waiter's stale entry (or gives its second grant back unused: never sent twice), A
    // re-queues its lost waiter, and it is granted while B's call is still running, since Redis no
    // longer counts that call.
    await waitFor(() => (up.stats.entered === 3 ? true : undefined), 'the lost waiter re-queued and dispatched', 20_000);
    expect(promptOf(up.fake.requests[2])).toBe('lost waiter');
    expect(up.stats.maxConcurrent).toBe(2);
    up.releaseAll();
    expect((await first).body.choices?.[0].message.content).toBe('answer to first waiter');
    expect((await lost).body.choices?.[0].message.content).toBe('answer to lost waiter');
    expect(up.prompts()).toEqual(['holder', 'first waiter', 'lost waiter']);
    // The limit is whole again: the lost grant's release released nothing, no slot is stuck.
    await statusUntil(b, model, (s) => s.waiting === 0 && s.inFlight === 0, 'an idle group');
    up.stats.maxConcurrent = 0;
    const after = await Promise.all([0, 1, 2, 3].map((k) => chat(k % 2 === 0 ? a : b, model, `after ${k}`)));
    for (const r of after) expect(r.status).toBe(200);
    expect(up.stats.maxConcurrent).toBe(1);
  }, 90_000);

  it('a lease shorter than the failover: the silence is not counted against the leases, so nobody is reaped on the promoted replica; the limit holds and the waiters are served in order', async () => {
    const masterIndex = 2;
    const model = modelOn(masterIndex);
    const slot = keySlot(`{${model}}`);
    const up = await startHeldUpstream();
    const prefix = freshPrefix('fo-lease');
    // A 1 s lease lapses while the slot has no master (a promotion takes longer here).
    const [a, b] = await startInstances(writeConfig(model, up.fake.url, prefix, 1, '  redis_lease_seconds: 1\n'), 2);
    const holder = chat(a, model, 'holder');
    await up.fake.until((f) => f.requests.length === 1, 'the holder in flight');
    const waiters = [chat(b, model, 'waiter 0', 1), chat(a, model, 'waiter 1', 2), chat(b, model, 'waiter 2', 3)];
    await statusUntil(a, model, (s) => s.waiting === 3 && s.inFlight === 1, 'three waiters behind the holder');
    await cluster.waitReplicated(masterIndex, `{${model}}:replication-probe`);

    await cluster.stopNode(masterIndex, true);
    const promoted = await cluster.waitServedBy(slot, masterIndex, 20_000);
    const port = cluster.nodes[promoted].port;
    const [sec, micros] = (await cluster.cli(port, 'time')).trim().split('\n').map(Number);
    const promotedAt = sec * 1000 + Math.floor(micros / 1000);
    // The first call on the promoted replica that checks the leases (includes/leases.lua reapDead) finds both
    // lapsed in a silence longer than half a lease and moves them on; the two instances then renew.
    // Positive signal: a lease check after the promotion, and both instances still leased after it.
    const g = `${prefix}:{${model}}`;
    await waitFor(
      async () => {
        const seen = Number(await cluster.cli(port, 'get', `${g}:seen`).catch(() => '0'));
        const leases = (await cluster.cli(port, 'zrange', `${g}:leases`, '0', '-1').catch(() => '')).split('\n').filter((l) => l !== '');
        return seen >= promotedAt && leases.length === 2 ? true : undefined;
      },
      'a lease check on the promoted replica that reaped nobody',
      20_000,
    );
    await statusUntil(a, model, (s) => s.inFlight === 1 && s.waiting === 3, 'the holder still in flight, the three waiters still waiting');
    expect(up.stats.entered).toBe(1);
    up.releaseAll();
    expect((await holder).status).toBe(200);
    for (const [k, r] of waiters.entries()) expect((await r).body.choices?.[0].message.content).toBe(`answer to waiter ${k}`);
    // Each call once, in priority order, never two at once.
    expect(up.prompts()).toEqual(['holder', 'waiter 0', 'waiter 1', 'waiter 2']);
    expect(up.stats.maxConcurrent).toBe(1);
    await statusUntil(b, model, (s) => s.waiting === 0 && s.inFlight === 0, 'an idle group');
    const after = await Promise.all([0, 1, 2, 3].map((k) => chat(k % 2 === 0 ? a : b, model, `after ${k}`)));
    for (const r of after) expect(r.status).toBe(200);
    expect(up.stats.maxConcurrent).toBe(1);
  }, 90_000);
});
