/**
 * The least an XState actor costs on this machine: a four-state machine whose context is updated with
 * `assign` and which `emit`s once, created, started, sent three events and run to its final state,
 * the shortest life a request actor can have (queued → dispatched → done). Run in a benchmark child,
 * it bounds what any design with one live actor per request can reach (scenario 1).
 */
import { assign, createActor, emit, setup } from 'xstate';

const floorMachine = setup({
  types: { context: {} as { n: number; input: Record<string, unknown> }, events: {} as { type: 'next' }, input: {} as Record<string, unknown> },
}).createMachine({
  id: 'floor',
  context: ({ input }) => ({ n: 0, input }),
  initial: 'queued',
  states: {
    queued: { on: { next: { target: 'dispatched', actions: [assign({ n: ({ context }) => context.n + 1 }), emit({ type: 'dispatched' })] } } },
    dispatched: { on: { next: { target: 'finishing', actions: assign({ n: ({ context }) => context.n + 1 }) } } },
    finishing: { on: { next: 'done' } },
    done: { type: 'final' },
  },
});

/** Microseconds per actor life, the best of `rounds` runs of `actors` actors each (after a warm-up run). */
export function xstateFloorMicros(actors: number, rounds: number): number {
  const next = { type: 'next' } as const;
  const run = () => {
    const started = performance.now();
    for (let i = 0; i < actors; i++) {
      const actor = createActor(floorMachine, { input: { id: i } });
      actor.on('*', () => undefined);
      actor.start();
      actor.send(next);
      actor.send(next);
      actor.send(next);
    }
    return ((performance.now() - started) * 1000) / actors;
  };
  run();
  let best = Infinity;
  for (let r = 0; r < rounds; r++) best = Math.min(best, run());
  return best;
}
