import { describe, expect, it } from 'vitest';
import { and, assign, createActor, fromPromise, not, setup } from 'xstate';
import { activeStateIds, machineToGraph } from '../src/server/debug/statechart-graph.js';
import { escapeXml, renderStatechartSvg } from '../src/server/debug/statechart-svg.js';

const sample = setup({
  types: {
    context: {} as { polls: number },
    events: {} as { type: 'grant' } | { type: 'deny' } | { type: 'cancel' } | { type: 'tick' },
  },
  actors: { fetchQuota: fromPromise(async () => 42) },
  guards: { hasBudget: () => true, isFull: () => false },
  actions: { logQueued: () => {}, countPoll: assign({ polls: ({ context }) => context.polls + 1 }) },
  delays: { pollDelay: 50 },
}).createMachine({
  id: 'request',
  context: { polls: 0 },
  initial: 'queued',
  states: {
    queued: {
      entry: 'logQueued',
      on: {
        grant: { target: 'active', guard: 'hasBudget' },
        deny: 'rejected',
        tick: { actions: 'countPoll' },
      },
      after: { 5000: 'timedOut' },
    },
    active: {
      initial: 'fetching',
      on: { cancel: 'cancelled' },
      onDone: 'completed',
      states: {
        fetching: { invoke: { src: 'fetchQuota', onDone: 'polling', onError: '#request.failed' } },
        polling: {
          entry: 'countPoll',
          after: { pollDelay: { target: 'polling', reenter: true } },
          always: { target: 'done', guard: and(['hasBudget', not('isFull')]) },
        },
        done: { type: 'final' },
      },
    },
    rejected: { type: 'final' },
    timedOut: { type: 'final' },
    cancelled: { type: 'final' },
    failed: { type: 'final' },
    completed: { type: 'final' },
  },
});

const ALL_STATE_IDS = [
  'request',
  'request.queued',
  'request.active',
  'request.active.fetching',
  'request.active.polling',
  'request.active.done',
  'request.rejected',
  'request.timedOut',
  'request.cancelled',
  'request.failed',
  'request.completed',
];

describe('machineToGraph', () => {
  const graph = machineToGraph(sample);

  it('has every state node, keyed by XState id, with its parent, type and markers', () => {
    expect(graph.machineId).toBe('request');
    expect(graph.rootId).toBe('request');
    expect(graph.nodes.map((n) => n.id).sort()).toEqual([...ALL_STATE_IDS].sort());

    const node = (id: string) => graph.nodes.find((n) => n.id === id)!;
    expect(node('request')).toMatchObject({ parentId: null, type: 'compound' });
    expect(node('request.active')).toMatchObject({ key: 'active', parentId: 'request', type: 'compound', initial: false });
    expect(node('request.queued')).toMatchObject({ initial: true, entry: ['logQueued'] });
    expect(node('request.active.fetching')).toMatchObject({
      parentId: 'request.active',
      type: 'atomic',
      initial: true,
      invokes: ['fetchQuota'],
    });
    expect(node('request.active.done')).toMatchObject({ type: 'final', final: true });
    expect(node('request.completed').final).toBe(true);
    // The raise/cancel pair XState adds to implement `after` is not shown as an action.
    expect(node('request.active.polling').entry).toEqual(['countPoll']);
    expect(node('request.queued').exit).toBeUndefined();
    // JSON all the way through.
    expect(JSON.parse(JSON.stringify(graph))).toEqual(graph);
  });

  it('has every transition with a readable event name, guard and self-loop flag', () => {
    const simple = graph.edges.map((e) => ({
      source: e.source,
      target: e.target,
      event: e.event,
      guard: e.guard,
      selfLoop: e.selfLoop ?? false,
    }));
    const expected = [
      { source: 'request.queued', target: 'request.active', event: 'grant', guard: 'hasBudget', selfLoop: false },
      { source: 'request.queued', target: 'request.rejected', event: 'deny', guard: undefined, selfLoop: false },
      { source: 'request.queued', target: 'request.queued', event: 'tick', guard: undefined, selfLoop: true },
      { source: 'request.queued', target: 'request.timedOut', event: 'after 5000ms', guard: undefined, selfLoop: false },
      { source: 'request.active', target: 'request.cancelled', event: 'cancel', guard: undefined, selfLoop: false },
      { source: 'request.active', target: 'request.completed', event: 'onDone', guard: undefined, selfLoop: false },
      { source: 'request.active.fetching', target: 'request.active.polling', event: 'onDone', guard: undefined, selfLoop: false },
      { source: 'request.active.fetching', target: 'request.failed', event: 'onError', guard: undefined, selfLoop: false },
      { source: 'request.active.polling', target: 'request.active.polling', event: 'after pollDelay', guard: undefined, selfLoop: true },
      { source: 'request.active.polling', target: 'request.active.done', event: 'always', guard: 'hasBudget && !isFull', selfLoop: false },
    ];
    const key = (e: { source: string; event: string; target: string }) => `${e.source} ${e.event} ${e.target}`;
    expect([...simple].sort((a, b) => key(a).localeCompare(key(b)))).toEqual(
      [...expected].sort((a, b) => key(a).localeCompare(key(b))),
    );

    const byEvent = (event: string) => graph.edges.find((e) => e.event === event)!;
    expect(byEvent('tick')).toMatchObject({ internal: true, actions: ['countPoll'] });
    expect(byEvent('after pollDelay')).toMatchObject({ reenter: true });
    expect(byEvent('onError').eventType).toMatch(/^xstate\.error\.actor\./);
    expect(byEvent('always').eventType).toBe('');
    expect(new Set(graph.edges.map((e) => e.id)).size).toBe(graph.edges.length);
  });
});

describe('activeStateIds', () => {
  it('maps a nested snapshot value to ids, ancestors included', () => {
    expect(activeStateIds(sample, { active: 'polling' })).toEqual(['request', 'request.active', 'request.active.polling']);
    expect(activeStateIds(sample, 'queued')).toEqual(['request', 'request.queued']);
  });

  it('agrees with a running actor and ignores keys the machine does not have', () => {
    const actor = createActor(sample).start();
    actor.send({ type: 'grant' });
    const ids = activeStateIds(sample, actor.getSnapshot().value);
    actor.stop();
    expect(ids).toEqual(['request', 'request.active', 'request.active.fetching']);
    expect(activeStateIds(sample, { gone: 'away', active: 'nope' })).toEqual(['request', 'request.active']);
  });
});

describe('renderStatechartSvg', () => {
  it('draws one state group per state and one labelled transition group per edge', async () => {
    const svg = await renderStatechartSvg(sample);
    const graph = machineToGraph(sample);

    expect(svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
    expect(svg.trimEnd().endsWith('</svg>')).toBe(true);
    expect(svg).toMatch(/viewBox="0 0 \d+ \d+"/);
    expect(svg).toContain('<style>');
    expect(svg).toMatch(/\.state\.active > \.box \{/);

    const stateIds = [...svg.matchAll(/data-state-id="([^"]*)"/g)].map((m) => m[1]);
    expect([...stateIds].sort()).toEqual([...ALL_STATE_IDS].sort());

    // Every edge is drawn (the targetless `tick` on an atomic state as a loop) with its label.
    const transitions = [...svg.matchAll(/<g class="transition[^"]*" data-edge-id="[^"]*" data-event="([^"]*)"/g)].map((m) => m[1]);
    expect(transitions.sort()).toEqual(graph.edges.map((e) => escapeXml(e.event)).sort());
    for (const label of ['grant [hasBudget]', 'deny', 'tick', 'after 5000ms', 'after pollDelay', 'onDone', 'onError', 'cancel', 'always']) {
      expect(svg).toContain(`>${label}<`);
    }
    expect(svg).toContain('>[hasBudget &amp;&amp; !isFull]<');
    expect(svg).toContain('data-source="request.queued" data-target="request.active"');
    // Arrowheads, initial markers (root + `active`), double border on each final state.
    expect(svg).toContain('marker-end="url(#sc-arrow)"');
    expect(svg.match(/class="initial"/g)?.length).toBe(2);
    expect(svg.match(/<rect class="inner"/g)?.length).toBe(6);
    // Every path has real coordinates.
    expect(svg).not.toMatch(/NaN|undefined/);
  });

  it('is well-formed XML-ish: balanced groups, escaped text, no raw ampersands', async () => {
    const svg = await renderStatechartSvg(sample);
    expect(svg.match(/<g[\s>]/g)?.length).toBe(svg.match(/<\/g>/g)?.length);
    expect(svg).not.toMatch(/&(?!amp;|lt;|gt;|quot;|apos;)/);
    // Tags are balanced: every opened non-self-closing element is closed in order.
    const stack: string[] = [];
    for (const m of svg.matchAll(/<(\/?)([a-zA-Z][\w-]*)([^>]*?)(\/?)>/g)) {
      const [, closing, name, , selfClosing] = m;
      if (selfClosing) continue;
      if (closing) expect(stack.pop()).toBe(name);
      else stack.push(name);
    }
    expect(stack).toEqual([]);
  });

  it('pre-lights the given states and escapes hostile names', async () => {
    const lit = await renderStatechartSvg(sample, { activeStateIds: activeStateIds(sample, { active: 'polling' }) });
    expect(lit).toMatch(/<g class="state compound active" data-state-id="request\.active"/);
    expect(lit).toMatch(/<g class="state atomic active" data-state-id="request\.active\.polling"/);
    expect(lit).not.toMatch(/class="state atomic active" data-state-id="request\.queued"/);

    const hostile = setup({}).createMachine({
      id: 'm<&>"',
      initial: 'a<b>',
      states: { 'a<b>': { on: { 'x&y"': 'c' } }, c: {} },
    });
    const svg = await renderStatechartSvg(hostile);
    expect(svg).toContain('data-state-id="m&lt;&amp;&gt;&quot;.a&lt;b&gt;"');
    expect(svg).toContain('>x&amp;y&quot;<');
    expect(svg).not.toContain('a<b>');
  });
});

describe('docs/statecharts', () => {
  it('holds the drawings the debugger serves for the current machines (re-export: node dist/src/export-statecharts.js)', async () => {
    const { readFile } = await import('node:fs/promises');
    const { DEBUG_MACHINES, renderMachineSvg } = await import('../src/server/debug/routes.js');
    for (const m of DEBUG_MACHINES) {
      const file = new URL(`../docs/statecharts/${m.id}.svg`, import.meta.url);
      expect(await readFile(file, 'utf8'), `docs/statecharts/${m.id}.svg is out of date`).toBe(await renderMachineSvg(m.id));
    }
  });
});
