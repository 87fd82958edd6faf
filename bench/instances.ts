/** Starts Triage instances as benchmark children (bench/instance-main.ts) and measures their clock offsets. */
import { probeOffset, startChild, type Child } from './child-rpc.js';

export interface Instance {
  child: Child;
  index: number;
  /** Add to this child's timestamps to get the runner's time base. */
  offsetMs: number;
  /** Round trip of the probe the offset came from: the offset is right within half of it. */
  probeRttMs: number;
}

/** How far apart two instances' corrected timestamps of one moment can be: the largest probe round trip. */
export function clockTolerance(instances: Instance[]): number {
  return Math.max(0, ...instances.map((i) => (Number.isFinite(i.probeRttMs) ? i.probeRttMs : 0)));
}

export interface InstanceOptions {
  yaml: string;
  store: 'memory' | 'redis';
  log?: boolean;
  reportStarts?: boolean;
  execArgv?: string[];
}

export async function startInstances(n: number, options: InstanceOptions): Promise<Instance[]> {
  const started: Instance[] = [];
  try {
    await Promise.all(
      Array.from({ length: n }, async (_, i) => {
        const child = await startChild('instance-main.js', { execArgv: options.execArgv ?? [] });
        started.push({ child, index: i, offsetMs: 0, probeRttMs: NaN });
        await child.call('init', { yaml: options.yaml, store: options.store, instanceId: `bench-${i}-${process.pid}`, log: options.log === true, reportStarts: options.reportStarts === true }, 20_000);
      }),
    );
    started.sort((a, b) => a.index - b.index);
    for (const inst of started) {
      const probe = await probeOffset(inst.child);
      inst.offsetMs = probe.offsetMs;
      inst.probeRttMs = probe.rttMs;
    }
    return started;
  } catch (e) {
    await stopInstances(started);
    throw e;
  }
}

export async function stopInstances(instances: Instance[]): Promise<void> {
  await Promise.all(instances.map((i) => i.child.stop(5_000)));
}
