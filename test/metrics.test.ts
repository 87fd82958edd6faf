/** `GET /metrics`: names, labels and values after a known sequence of requests. */
import { afterEach, describe, expect, it } from 'vitest';
import { FakeClock } from '../src/core/clock.js';
import { chat, startGateway, waitFor, type RunningGateway } from './support/gateway.js';
import { parsePrometheus } from './support/prometheus.js';
import { testConfig } from './support/test-config.js';

let running: RunningGateway[] = [];
afterEach(async () => {
  await Promise.all(running.map((g) => g.stop()));
  running = [];
});

async function scrape(g: RunningGateway, headers: Record<string, string> = {}) {
  const r = await fetch(`${g.url}/metrics`, { headers });
  expect(r.status).toBe(200);
  expect(r.headers.get('content-type')).toMatch(/text\/plain/);
  return parsePrometheus(await r.text());
}

function post(g: RunningGateway, body: object) {
  return fetch(`${g.url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
}

describe('/metrics', () => {
  it('counts admissions by outcome, queue depth by priority, waits, in-flight and limits', async () => {
    const clock = new FakeClock(Date.now());
    const g = await startGateway(testConfig({ m: [{ id: 'dep-a', rpm: 2, maxParallelRequests: 5 }] }, { maxQueueSize: 2, queueTimeoutMs: 120_000, priorityAgingMs: 5_000 }), { clock });
    running.push(g);
    const client = g.client();
    await client.chat.completions.create(chat('m', 'one'));
    await client.chat.completions.create(chat('m', 'two'));
    // rpm spent: one whose 5 s deadline passes before the window reopens is answered at once; two
    // waiters (priorities 3 and 7) fill the queue.
    const servedLater = post(g, chat('m', 'three', 3));
    await waitFor(() => (g.gateway.router.liveRequests === 1 ? true : undefined), 'one waiter');
    expect((await post(g, { ...chat('m', 'four', 7), timeout: 5 })).status).toBe(429);
    const servedLast = post(g, chat('m', 'five', 7));
    await waitFor(() => (g.gateway.router.liveRequests === 2 ? true : undefined), 'two waiters');
    expect((await post(g, chat('m', 'six', 9))).status).toBe(429);

    let m = await scrape(g);
    expect(m.get('triage_queue_depth{model="m",priority="3"}')).toBe(1);
    expect(m.get('triage_queue_depth{model="m",priority="7"}')).toBe(1);
    expect(m.get('triage_requests_waiting{model="m"}')).toBe(2);
    expect(m.get('triage_deployment_rpm_used{model="m",deployment="dep-a"}')).toBe(2);
    expect(m.get('triage_deployment_rpm_limit{model="m",deployment="dep-a"}')).toBe(2);
    expect(m.get('triage_deployment_parallel_limit{model="m",deployment="dep-a"}')).toBe(5);
    expect(m.get('triage_admit_total{model="m",outcome="granted"}')).toBe(2);
    expect(m.get('triage_admit_total{model="m",outcome="rejected_full"}')).toBe(1);
    expect(m.get('triage_admit_total{model="m",outcome="rejected_deadline"}')).toBe(1);

    clock.advance(60_000);
    expect((await servedLater).status).toBe(200);
    expect((await servedLast).status).toBe(200);

    m = await scrape(g);
    expect(m.get('triage_admit_total{model="m",outcome="granted"}')).toBe(4);
    expect(m.get('triage_requests_total{model="m",outcome="done"}')).toBe(4);
    expect(m.get('triage_requests_total{model="m",outcome="rejected"}')).toBe(2);
    expect(m.get('triage_requests_waiting{model="m"}')).toBe(0);
    expect(m.get('triage_requests_running{model="m",deployment="dep-a"}')).toBe(0);
    // Four grants: two at once, two after a 60 s wait (which also counts as an aging promotion).
    expect(m.get('triage_queue_wait_seconds_count{model="m"}')).toBe(4);
    expect(m.get('triage_queue_wait_seconds_bucket{le="0.001",model="m"}')).toBe(2);
    expect(m.get('triage_queue_wait_seconds_sum{model="m"}')).toBeCloseTo(120, 0);
    expect(m.get('triage_starvation_promotion_total{model="m"}')).toBe(2);
    expect(m.get('triage_upstream_latency_seconds_count{model="m",deployment="dep-a"}')).toBe(4);
  });

  it('needs a key when keys are configured, unless public_metrics is set', async () => {
    const keyed = await startGateway(testConfig({ m: [{}] }, {}, { masterKey: 'sk-metrics-master' }));
    running.push(keyed);
    expect((await fetch(`${keyed.url}/metrics`)).status).toBe(401);
    expect((await scrape(keyed, { authorization: 'Bearer sk-metrics-master' })).size).toBeGreaterThan(0);
    const open = await startGateway(testConfig({ m: [{}] }, {}, { masterKey: 'sk-metrics-master', publicMetrics: true }));
    running.push(open);
    expect((await scrape(open)).size).toBeGreaterThan(0);
    const off = await startGateway(testConfig({ m: [{}] }, {}, { metrics: false }));
    running.push(off);
    expect((await fetch(`${off.url}/metrics`)).status).toBe(404);
  });
});
