/**
 * Several Triage processes on one Redis (issue 5): each gateway is the BUILT CLI (`dist/src/cli.js`)
 * started as its own child process on a YAML config, all sharing a real redis-server (the suite's
 * shared one with a fresh `redis_prefix` per test, or a private one for the stop/restart test).
 *
 * What is proved here, process against process: one global (priority, arrival) order whichever
 * instance a request reached; rpm limits (a deployment's, a virtual key's) that hold across instances; each request granted exactly
 * once under a concurrent burst; slots and waiters of a `kill -9`ed instance reclaimed after its
 * lease; fail-closed 503s while Redis is down and recovery without restarting any gateway.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, describe, expect, it } from 'vitest';
import { isRunning, killAll, runCli, type CliProcess } from './support/cli-process.js';
import { completionBody, FakeOpenAI, type RecordedRequest } from './support/fake-openai.js';
import { waitFor } from './support/gateway.js';
import { status, statusUntil } from './support/queue-status.js';
import { parsePrometheus } from './support/prometheus.js';
import { freshPrefix, sharedRedisUrl, startRedisServer, type RedisServer } from './support/redis.js';

// ---------------------------------------------------------------------------------------------------
// Processes, configs and HTTP helpers

const dir = mkdtempSync(join(tmpdir(), 'triage-multi-'));
let configCount = 0;
const children: CliProcess[] = [];
const redisServers: RedisServer[] = [];
const fakes: FakeOpenAI[] = [];

afterEach(async () => {
  await killAll(children.splice(0));
  await Promise.all(redisServers.splice(0).map((s) => s.stop(true)));
  await Promise.all(fakes.splice(0).map((f) => f.close()));
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

function writeConfig(yaml: string): string {
  const file = join(dir, `config-${++configCount}.yaml`);
  writeFileSync(file, yaml);
  return file;
}

/**
 * One model group on Redis; `params` go into litellm_params, `router` into router_settings. Its
 * deployment is a mock, or with `apiBase` an `openai/up-<model>` deployment calling that base (the
 * test's fake upstream on 127.0.0.1).
 */
function groupConfig(o: { redisUrl: string; prefix: string; model: string; params: string; router?: string; extraModels?: string; apiBase?: string }): string {
  const upstream =
    o.apiBase === undefined
      ? `      model: mock/${o.model}
      mock_response: "hello from ${o.model}"`
      : `      model: openai/up-${o.model}
      api_base: ${o.apiBase}
      api_key: sk-${o.model}`;
  return `model_list:
  - model_name: ${o.model}
    litellm_params:
${upstream}
${o.params
  .trim()
  .split('\n')
  .map((l) => `      ${l.trim()}`)
  .join('\n')}
${o.extraModels ?? ''}
router_settings:
  redis_url: ${o.redisUrl}
  redis_prefix: ${o.prefix}
${(o.router ?? '')
  .trim()
  .split('\n')
  .filter((l) => l.trim() !== '')
  .map((l) => `  ${l.trim()}`)
  .join('\n')}
`;
}

interface Instance {
  url: string;
  proc: CliProcess;
}

async function startInstance(file: string): Promise<Instance> {
  const proc = runCli(['--config', file, '--port', '0']);
  children.push(proc);
  return { url: await proc.url, proc };
}

const startInstances = (file: string, n: number) => Promise.all(Array.from({ length: n }, () => startInstance(file)));

interface Reply {
  status: number;
  headers: Headers;
  body: { choices?: Array<{ message: { content: string } }>; error?: { message: string; type: string; param: string | null; code: string } };
}

/**
 * POSTs a chat completion. The promise is marked handled: a test that fails early leaves no unhandled
 * rejection behind when its processes are killed (awaiting it still throws).
 */
function chat(url: string, model: string, priority?: number, extra: Record<string, unknown> = {}): Promise<Reply> {
  const p = send(url, model, priority, extra);
  p.catch(() => undefined);
  return p;
}

async function send(url: string, model: string, priority: number | undefined, extra: Record<string, unknown>): Promise<Reply> {
  const body: Record<string, unknown> = { model, messages: [{ role: 'user', content: 'hi' }], ...extra };
  if (priority !== undefined) body.priority = priority;
  const res = await fetch(`${url}/queue/chat/completions`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
    signal: AbortSignal.timeout(30_000),
  });
  return { status: res.status, headers: res.headers, body: (await res.json()) as Reply['body'] };
}

async function readiness(url: string): Promise<{ status: number; body: { ready: boolean; status: string; store: string } }> {
  const res = await fetch(`${url}/health/readiness`, { signal: AbortSignal.timeout(5_000) });
  return { status: res.status, body: (await res.json()) as { ready: boolean; status: string; store: string } };
}

/** The sum over instances of a counter sample from /metrics, e.g. triage_admit_total{model="b",outcome="granted"}. */
async function counterSum(instances: Instance[], name: string, labels: string): Promise<number> {
  let sum = 0;
  for (const i of instances) {
    const values = parsePrometheus(await (await fetch(`${i.url}/metrics`, { signal: AbortSignal.timeout(5_000) })).text());
    const sample = [...values].find(([k]) => k.startsWith(`${name}{`) && labels.split(',').every((p) => k.includes(p)));
    sum += sample?.[1] ?? 0;
  }
  return sum;
}

/** Indices sorted by (priority, arrival): the order one global queue must grant them in. */
const globalOrder = (priorities: number[]) => priorities.map((p, i) => [p, i] as const).sort((a, b) => a[0] - b[0] || a[1] - b[1]).map(([, i]) => i);

const alive = (i: Instance): boolean => isRunning(i.proc);

/** A fake OpenAI upstream on 127.0.0.1, closed by afterEach. */
async function startFake(): Promise<FakeOpenAI> {
  const fake = await FakeOpenAI.start();
  fakes.push(fake);
  return fake;
}

/** The user message of a chat completion: the test's label for a request. */
const promptOf = (r: RecordedRequest | undefined): unknown => r?.body?.messages?.[0]?.content;

/**
 * Holds every call `fake` receives: call k (0-based, in arrival order) is answered with a completion
 * echoing its prompt only once the test called `release(k)` (or never, if its caller goes away).
 */
function holdEveryCall(fake: FakeOpenAI): { release(k: number): void } {
  const opened = new Set<number>();
  const gates = new Map<number, () => void>();
  fake.always(async (x) => {
    const k = x.request.seq - 1;
    const released = new Promise<void>((resolve) => {
      if (opened.has(k)) resolve();
      else gates.set(k, resolve);
    });
    await Promise.race([released, x.ended]);
    x.json(200, completionBody(String(x.request.body?.model), `answer to ${String(promptOf(x.request))}`));
  });
  return {
    release(k) {
      opened.add(k);
      gates.get(k)?.();
    },
  };
}

// ---------------------------------------------------------------------------------------------------

describe('several gateway processes on one Redis', () => {
  it.each([2, 3])('%i instances grant in one global (priority, arrival) order, whichever instance was asked', async (n) => {
    const model = 'ordered';
    // Every upstream call is held at the fake until the test releases it, so the holder keeps the
    // only slot for as long as the enqueues take, however loaded the machine.
    const fake = await startFake();
    const calls = holdEveryCall(fake);
    const file = writeConfig(
      groupConfig({ redisUrl: sharedRedisUrl(), prefix: freshPrefix('mi-order'), model, params: 'max_parallel_requests: 1', apiBase: fake.url }),
    );
    const instances = await startInstances(file, n);
    // The prompt labels each request, so the fake knows which one it was granted to.
    const ask = (url: string, label: string, priority: number) => chat(url, model, priority, { messages: [{ role: 'user', content: label }] });
    const label = (i: number) => `waiter ${i}`;

    // The holder takes the only slot; everything after it must wait in the shared queue.
    const holder = ask(instances[0].url, 'holder', 9);
    await fake.until((f) => f.requests.length === 1, 'the holder to reach the upstream');
    await statusUntil(instances[n - 1].url, model, (s) => s.inFlight === 1, 'the holder to be dispatched');

    // Ties (5, 5 and 1, 1) arrive on different instances, the later one sometimes on the lower-numbered one.
    const priorities = [5, 1, 1, 5, 0, 3];
    const completed: number[] = [];
    const replies: Promise<Reply>[] = [];
    // A test-clock bound on when each waiter was enqueued: before seenAt[i].
    const seenAt: number[] = [];
    for (const [i, p] of priorities.entries()) {
      replies.push(
        ask(instances[i % n].url, label(i), p).then((r) => {
          completed.push(i);
          return r;
        }),
      );
      // Arrival order is the order of the enqueues: wait for this one to be in the global queue
      // (seen from another instance) before sending the next.
      await statusUntil(instances[(i + 1) % n].url, model, (s) => s.waiting === i + 1 && s.inFlight === 1, `waiter ${i} to be enqueued`);
      seenAt.push(Date.now());
    }
    expect(fake.requests.map(promptOf)).toEqual(['holder']);

    // Every instance shows the same global queue, already in grant order.
    const expected = globalOrder(priorities);
    const views = await Promise.all(instances.map((i) => status(i.url, model)));
    for (const v of views) {
      expect(v.waiters.map((w) => w.priority)).toEqual(expected.map((i) => priorities[i]));
      expect(v.waiters.map((w) => w.id)).toEqual(views[0].waiters.map((w) => w.id));
    }

    // Release the calls one at a time, in the order they reach the upstream: call 0 is the holder's,
    // call k the k-th grant's. Each reply is awaited before the next release.
    const releasedAt: number[] = [Date.now()];
    calls.release(0);
    const first = await holder;
    expect(first.status).toBe(200);
    expect(first.body.choices?.[0].message.content).toBe('answer to holder');
    for (let k = 1; k <= priorities.length; k++) {
      await fake.until((f) => f.requests.length === k + 1, `grant ${k} to reach the upstream`);
      const current = expected[k - 1];
      expect(promptOf(fake.requests[k])).toBe(label(current));
      // One slot: no other call was sent while this one is held.
      expect(fake.requests).toHaveLength(k + 1);
      releasedAt.push(Date.now());
      calls.release(k);
      await Promise.race(replies.filter((_, i) => !completed.includes(i)));
      expect(completed).toEqual(expected.slice(0, k));
    }

    const results = await Promise.all(replies);
    for (const [i, r] of results.entries()) {
      expect(r.status).toBe(200);
      expect(r.headers.get('x-triage-priority')).toBe(String(priorities[i]));
      expect(r.body.choices?.[0].message.content).toBe(`answer to ${label(i)}`);
    }
    expect(completed).toEqual(expected);
    // Each waited for everyone ahead of it: the k-th grant came only after call k - 1 was released
    // (±2 ms of clock rounding). (Waits need not grow along the grant order: a tie enqueued later
    // and granted next can have waited less.)
    const waits = expected.map((i) => Number(results[i].headers.get('x-triage-queue-wait-ms')));
    for (const [k, i] of expected.entries()) expect(waits[k]).toBeGreaterThanOrEqual(releasedAt[k] - seenAt[i] - 2);

    expect(fake.requests).toHaveLength(priorities.length + 1);
    expect(fake.handlerErrors).toEqual([]);
    for (const i of instances) await statusUntil(i.url, model, (s) => s.waiting === 0 && s.inFlight === 0, 'an idle group');
  });

  it('an rpm limit of 5 holds across three instances: a burst of 15 dispatches exactly 5; the rest, whose 3 s deadline passes before the window reopens, are told so at once', async () => {
    const model = 'limited';
    const file = writeConfig(groupConfig({ redisUrl: sharedRedisUrl(), prefix: freshPrefix('mi-rpm'), model, params: 'rpm: 5' }));
    const instances = await startInstances(file, 3);

    const started = Date.now();
    const burst = Array.from({ length: 15 }, (_, i) => chat(instances[i % 3].url, model, i % 4, { timeout: 3 }));
    const replies = await Promise.all(burst);
    const elapsed = Date.now() - started;

    const ok = replies.filter((r) => r.status === 200);
    const refused = replies.filter((r) => r.status === 429);
    expect(ok).toHaveLength(5);
    expect(refused).toHaveLength(10);
    for (const r of ok) {
      expect(r.body.choices?.[0].message.content).toBe('hello from limited');
      // Dispatched at once, not after a window reopened.
      expect(Number(r.headers.get('x-triage-queue-wait-ms'))).toBeLessThan(1500);
    }
    for (const r of refused) {
      expect(r.body).toEqual({ error: { message: expect.any(String), type: 'rate_limit_error', param: null, code: 'queue_timeout_certain' } });
      // When the shared window reopens: within the minute of the 5 grants.
      const retryAfter = Number(r.headers.get('retry-after'));
      expect(retryAfter).toBeGreaterThan(3);
      expect(retryAfter).toBeLessThanOrEqual(60);
    }
    // Nobody waited for a deadline that could not be met.
    expect(elapsed).toBeLessThan(3_000);
    expect(await counterSum(instances, 'triage_admit_total', `model="${model}",outcome="granted"`)).toBe(5);

    // Nothing left behind, and the window is still full for everyone.
    for (const i of instances) {
      const s = await statusUntil(i.url, model, (x) => x.waiting === 0 && x.inFlight === 0, 'an empty queue');
      expect(s.deployments[0]).toMatchObject({ rpmUsed: 5, headroom: 0 });
    }
  });

  it("a key's rpm of 3 holds across two instances: its 4th and 5th requests, on either, get 429 key_rate_limited; the master key is not affected", async () => {
    const model = 'keyed';
    const file = writeConfig(`${groupConfig({ redisUrl: sharedRedisUrl(), prefix: freshPrefix('mi-keyrpm'), model, params: '' })}general_settings:
  master_key: sk-mi-master-000001
  keys:
    - key: sk-mi-team-a-000001
      name: team-a
      rpm: 3
`);
    const [a, b] = await startInstances(file, 2);
    const asKey = async (url: string, key: string) => {
      const res = await fetch(`${url}/queue/chat/completions`, {
        method: 'POST',
        headers: { 'content-type': 'application/json', authorization: `Bearer ${key}` },
        body: JSON.stringify({ model, messages: [{ role: 'user', content: 'hi' }] }),
        signal: AbortSignal.timeout(30_000),
      });
      return { status: res.status, retryAfter: res.headers.get('retry-after'), body: (await res.json()) as Reply['body'] };
    };

    for (const url of [a.url, b.url, a.url]) expect((await asKey(url, 'sk-mi-team-a-000001')).status).toBe(200);
    for (const url of [b.url, a.url]) {
      const refused = await asKey(url, 'sk-mi-team-a-000001');
      expect(refused.status).toBe(429);
      expect(Number(refused.retryAfter)).toBeGreaterThanOrEqual(1);
      expect(Number(refused.retryAfter)).toBeLessThanOrEqual(60);
      expect(refused.body).toEqual({ error: { message: expect.stringContaining('3 requests per minute'), type: 'rate_limit_error', param: null, code: 'key_rate_limited' } });
    }
    expect((await asKey(b.url, 'sk-mi-master-000001')).status).toBe(200);
  });

  it('a burst of 200 concurrent requests over two instances is granted exactly once each, never over max_parallel_requests', async () => {
    const model = 'burst';
    const file = writeConfig(
      groupConfig({ redisUrl: sharedRedisUrl(), prefix: freshPrefix('mi-burst'), model, params: 'mock_delay: 0.01\nmax_parallel_requests: 4' }),
    );
    const instances = await startInstances(file, 2);

    let sampling = true;
    let maxInFlight = 0;
    let samples = 0;
    const sampler = (async () => {
      // Bounded: stops with the burst, or after 2,000 samples at most.
      while (sampling && samples < 2_000) {
        const s = await status(instances[samples % 2].url, model);
        maxInFlight = Math.max(maxInFlight, s.inFlight);
        samples += 1;
      }
    })();

    const sent = 200;
    const replies = await Promise.all(Array.from({ length: sent }, (_, i) => chat(instances[i % 2].url, model, i % 5)));
    sampling = false;
    await sampler;

    expect(replies.map((r) => r.status)).toEqual(Array(sent).fill(200));
    const ids = replies.map((r) => r.headers.get('x-triage-request-id'));
    expect(ids.every((id) => typeof id === 'string' && id.length > 0)).toBe(true);
    expect(new Set(ids).size).toBe(sent);
    expect(samples).toBeGreaterThan(0);
    expect(maxInFlight).toBeLessThanOrEqual(4);

    // Counted by the instances themselves: one grant and one completion per request, summed over both.
    expect(await counterSum(instances, 'triage_admit_total', `model="${model}",outcome="granted"`)).toBe(sent);
    expect(await counterSum(instances, 'triage_requests_total', `model="${model}",outcome="done"`)).toBe(sent);
    for (const i of instances) expect(await statusUntil(i.url, model, (s) => s.waiting === 0 && s.inFlight === 0, 'an idle group')).toMatchObject({ waiting: 0, inFlight: 0 });
  });

  it('kill -9 of an instance: its slot and waiters come back after the lease, the survivor keeps its order', async () => {
    const model = 'leased';
    const redisUrl = sharedRedisUrl();
    const prefix = freshPrefix('mi-kill');
    const router = 'redis_lease_seconds: 2';
    // The same group and limits for both (the shared state); only the victim's mock is slow, so its
    // dispatched call is still running when it dies.
    const victimFile = writeConfig(groupConfig({ redisUrl, prefix, model, params: 'mock_delay: 60\nmax_parallel_requests: 1', router }));
    const survivorFile = writeConfig(groupConfig({ redisUrl, prefix, model, params: 'mock_delay: 0.2\nmax_parallel_requests: 1', router }));
    const [victim, survivor] = await Promise.all([startInstance(victimFile), startInstance(survivorFile)]);

    const victimCalls: Promise<unknown>[] = [chat(victim.url, model, 0).catch(() => 'gone')];
    await statusUntil(survivor.url, model, (s) => s.inFlight === 1, 'the victim to hold the slot');

    // Interleaved arrivals: the victim's waiters (priorities 0 and 1) are ahead of all the survivor's.
    const plan: Array<{ on: 'victim' | 'survivor'; priority: number }> = [
      { on: 'victim', priority: 0 },
      { on: 'survivor', priority: 5 },
      { on: 'survivor', priority: 2 },
      { on: 'victim', priority: 1 },
      { on: 'survivor', priority: 3 },
      { on: 'survivor', priority: 2 },
    ];
    const survivorPriorities: number[] = [];
    const completed: number[] = [];
    const survivorReplies: Promise<Reply>[] = [];
    for (const [k, step] of plan.entries()) {
      if (step.on === 'victim') {
        victimCalls.push(chat(victim.url, model, step.priority).catch(() => 'gone'));
      } else {
        const idx = survivorPriorities.push(step.priority) - 1;
        survivorReplies.push(
          chat(survivor.url, model, step.priority).then((r) => {
            completed.push(idx);
            return r;
          }),
        );
      }
      await statusUntil(survivor.url, model, (s) => s.waiting === k + 1, `waiter ${k} to be enqueued`);
    }
    expect((await status(survivor.url, model)).depthByPriority).toEqual({ 0: 1, 1: 1, 2: 2, 3: 1, 5: 1 });

    victim.proc.child.kill('SIGKILL');
    const killedAt = Date.now();
    await victim.proc.exit;

    // Reclaimed: the victim's waiters are gone (no ghosts) and its slot went to the survivor's head.
    const reclaimed = await statusUntil(
      survivor.url,
      model,
      (s) => s.depthByPriority['0'] === undefined && s.depthByPriority['1'] === undefined,
      "the victim's waiters and slot to be reclaimed",
      8_000,
    );
    const reclaimMs = Date.now() - killedAt;
    // Only the survivor's four requests are left: waiting, or (its head) holding the freed slot.
    expect(reclaimed.inFlight).toBeLessThanOrEqual(1);
    expect(reclaimed.waiting + reclaimed.inFlight).toBeGreaterThanOrEqual(3);
    expect(reclaimed.waiting + reclaimed.inFlight).toBeLessThanOrEqual(4);
    expect(reclaimed.waiters.every((w) => [2, 3, 5].includes(w.priority))).toBe(true);
    // About the lease: the victim renewed it until it died (every pump while it had waiters, at least
    // every heartbeat of lease/3), so nothing came back before it lapsed, and little after.
    expect(reclaimMs).toBeGreaterThan(1_000);
    expect(reclaimMs).toBeLessThan(4_000);
    console.log(`multi-instance: kill -9 → victim's slot and waiters reclaimed by the survivor after ${reclaimMs} ms (lease 2000 ms)`);

    const results = await Promise.all(survivorReplies);
    for (const r of results) expect(r.status).toBe(200);
    expect(completed).toEqual(globalOrder(survivorPriorities));
    expect(await statusUntil(survivor.url, model, (s) => s.waiting === 0 && s.inFlight === 0, 'an idle group')).toMatchObject({ waiting: 0, inFlight: 0 });
    expect(alive(survivor)).toBe(true);
    await Promise.all(victimCalls);
  });

  it('Redis stopped and restarted mid-traffic: 503 store_unavailable and readiness 503 while down, recovery without restarting the gateways', async () => {
    const redis = await startRedisServer();
    redisServers.push(redis);
    const file = writeConfig(
      groupConfig({
        redisUrl: redis.url,
        prefix: freshPrefix('mi-down'),
        model: 'fast',
        params: 'mock_delay: 0.02\nmax_parallel_requests: 2',
        router: 'timeout: 30',
        extraModels: `  - model_name: slow
    litellm_params:
      model: mock/slow
      mock_response: "hello from slow"
      mock_delay: 1
      max_parallel_requests: 1`,
      }),
    );
    const instances = await startInstances(file, 2);
    const [a, b] = instances;
    for (const i of instances) expect(await readiness(i.url)).toMatchObject({ status: 200, body: { ready: true, store: 'redis' } });

    // Background traffic: one sequential client per instance until told to stop (bounded). A request
    // already in the queue when Redis goes away keeps waiting until it is back, so a client may see no
    // 503 at all; the explicit requests below check the refusals.
    let traffic = true;
    let redisDown = false;
    const seen = instances.map(() => ({ before: 0, during503: 0, after: 0, other: [] as string[] }));
    const loopsEnd = Date.now() + 60_000;
    const loops = Promise.all(instances.map(async (inst, n) => {
      for (let k = 0; traffic && k < 2_000 && Date.now() < loopsEnd; k++) {
        const down = redisDown;
        let r: Reply;
        try {
          r = await chat(inst.url, 'fast', k % 3);
        } catch (e) {
          seen[n].other.push(String(e));
          continue;
        }
        if (r.status === 200) {
          if (!down) seen[n].before += 1;
          else seen[n].after += 1;
        } else if (r.status === 503 && r.body.error?.code === 'store_unavailable') seen[n].during503 += 1;
        else seen[n].other.push(`${r.status} ${JSON.stringify(r.body)}`);
        if (r.status === 503) await new Promise((res) => setTimeout(res, 20));
      }
    }));
    await waitFor(() => (seen.every((s) => s.before >= 3) ? true : undefined), 'traffic to flow through both instances');

    // A call in flight on A and a waiter on B when Redis goes away.
    const dispatched = chat(a.url, 'slow', 0);
    await statusUntil(b.url, 'slow', (s) => s.inFlight === 1, 'the slow call to be dispatched');
    const waiter = chat(b.url, 'slow', 1);
    await statusUntil(a.url, 'slow', (s) => s.waiting === 1, 'the waiter to be enqueued');

    redisDown = true;
    await redis.stop(true);
    const stoppedAt = Date.now();

    for (const i of instances) {
      const r = await waitFor(async () => {
        const x = await readiness(i.url);
        return x.status === 503 ? x : undefined;
      }, 'readiness to report the store down');
      expect(r.body).toMatchObject({ ready: false, status: 'store_unavailable', store: 'redis' });
      const refused = await chat(i.url, 'fast', 0);
      expect(refused.status).toBe(503);
      expect(refused.headers.get('retry-after')).toBe('1');
      expect(refused.body).toEqual({ error: { message: expect.any(String), type: 'service_unavailable', param: null, code: 'store_unavailable' } });
    }
    // The dispatched call finishes without Redis; its release is retried later.
    const first = await dispatched;
    expect(first.status).toBe(200);
    expect(first.body.choices?.[0].message.content).toBe('hello from slow');
    const downMs = Date.now() - stoppedAt;

    // Back, empty (no persistence): nobody restarts the gateways.
    await redis.restart();
    const restartedAt = Date.now();
    for (const i of instances) {
      await waitFor(async () => ((await readiness(i.url)).status === 200 ? true : undefined), 'readiness to come back');
    }
    const readyMs = Date.now() - restartedAt;
    // B's waiter was re-queued at its place by B's reconciliation and served.
    const second = await waiter;
    expect(second.status).toBe(200);
    expect(second.body.choices?.[0].message.content).toBe('hello from slow');
    for (const i of instances) expect((await chat(i.url, 'fast', 0)).status).toBe(200);
    await waitFor(() => (seen.every((s) => s.after >= 3) ? true : undefined), 'traffic to flow again through both instances');
    traffic = false;
    await loops;
    console.log(`multi-instance: Redis down ${downMs} ms; readiness back on both ${readyMs} ms after the restart; traffic ${JSON.stringify(seen)}`);

    for (const s of seen) expect(s.other).toEqual([]);
    for (const i of instances) {
      expect(alive(i)).toBe(true);
      expect(i.proc.stderr()).not.toMatch(/unhandled|uncaught/i);
      for (const m of ['fast', 'slow']) await statusUntil(i.url, m, (s) => s.waiting === 0 && s.inFlight === 0, `${m} to be idle`);
    }
  });
});
