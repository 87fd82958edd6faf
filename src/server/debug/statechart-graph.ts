/**
 * Turns an XState v5 machine definition into a plain JSON graph (state nodes
 * and transitions) that a renderer or a page can use without knowing XState.
 *
 * Everything here reads the machine's resolved StateNode tree (`machine.root`),
 * never the raw config, so what is drawn is what the interpreter runs.
 */
import type { AnyStateMachine, StateValue } from 'xstate';

export type StateNodeType = 'atomic' | 'compound' | 'parallel' | 'final' | 'history';

export interface StatechartNode {
  /** The XState state node id, e.g. `request.polling` (the root is the machine id). */
  id: string;
  /** The key in its parent's `states` (the root's key is the machine id). */
  key: string;
  /** Parent state node id; `null` for the root. */
  parentId: string | null;
  type: StateNodeType;
  /** True when this node is the initial child of its parent (the root counts as initial). */
  initial: boolean;
  final: boolean;
  /** `'shallow'` or `'deep'` for history states. */
  history?: 'shallow' | 'deep';
  entry?: string[];
  exit?: string[];
  /** Names of the actors invoked while in this state. */
  invokes?: string[];
  tags?: string[];
  description?: string;
}

export interface StatechartEdge {
  /** Unique, deterministic id. */
  id: string;
  source: string;
  target: string;
  /** Human label: `grant`, `after 5000ms`, `after pollDelay`, `always`, `onDone`, `onError`, `*`. */
  event: string;
  /** The event type XState matches on, e.g. `xstate.done.actor.fetch` (`''` for `always`). */
  eventType: string;
  guard?: string;
  /** Names of the actions run by the transition. */
  actions?: string[];
  /** Source and target are the same node (an explicit self-transition or a targetless one). */
  selfLoop?: boolean;
  /** A targetless transition: runs actions without leaving or re-entering the state. */
  internal?: boolean;
  /** An explicit self/descendant transition that re-enters its source (`reenter: true`). */
  reenter?: boolean;
}

export interface StatechartGraph {
  /** The machine id (= the root node id). */
  machineId: string;
  rootId: string;
  /** Nodes in document order, parents before their children. */
  nodes: StatechartNode[];
  edges: StatechartEdge[];
}

/** Structural view of the parts of XState's StateNode this module reads. */
interface StateNodeLike {
  id: string;
  key: string;
  path: string[];
  type: StateNodeType;
  parent?: StateNodeLike;
  states: Record<string, StateNodeLike>;
  history: false | 'shallow' | 'deep';
  entry: readonly unknown[];
  exit: readonly unknown[];
  tags: string[];
  description?: string;
  transitions: Map<string, readonly TransitionLike[]>;
  always?: readonly TransitionLike[];
  invoke: ReadonlyArray<{ id: string; src: unknown }>;
  initial?: { target: ReadonlyArray<StateNodeLike> } | undefined;
  config: { invoke?: unknown; initial?: unknown };
}

interface TransitionLike {
  eventType: string;
  target: ReadonlyArray<StateNodeLike> | undefined;
  source: StateNodeLike;
  guard?: unknown;
  actions?: readonly unknown[];
  reenter?: boolean;
  delay?: unknown;
}

function rootOf(machine: AnyStateMachine): StateNodeLike {
  return machine.root as unknown as StateNodeLike;
}

function childrenOf(node: StateNodeLike): StateNodeLike[] {
  return Object.values(node.states ?? {});
}

/** The direct initial child of a compound node, if any. */
function initialChildOf(node: StateNodeLike): StateNodeLike | undefined {
  if (node.type !== 'compound') return undefined;
  const targets = node.initial?.target ?? [];
  for (const t of targets) {
    // The initial target may be a deeper descendant (`initial: 'a.b'` is not
    // allowed in v5, but be tolerant): walk up to the direct child.
    let cur: StateNodeLike | undefined = t;
    while (cur && cur.parent && cur.parent !== node) cur = cur.parent;
    if (cur && cur.parent === node) return cur;
  }
  return undefined;
}

const INFERRED_FN_NAMES = new Set(['anonymous', 'actions', 'entry', 'exit', 'guard', 'delay']);

const BUILTIN_ACTION_NAMES: Record<string, string> = {
  'xstate.assign': 'assign',
  'xstate.raise': 'raise',
  'xstate.sendTo': 'sendTo',
  'xstate.sendParent': 'sendParent',
  'xstate.log': 'log',
  'xstate.emit': 'emit',
  'xstate.cancel': 'cancel',
  'xstate.spawnChild': 'spawnChild',
  'xstate.stopChild': 'stopChild',
  'xstate.enqueueActions': 'enqueueActions',
};

/**
 * A display name for an action, or `undefined` for the raise/cancel pairs that
 * XState itself adds to entry/exit to implement `after` delays.
 */
function actionName(action: unknown): string | undefined {
  if (typeof action === 'string') return action;
  if (action && typeof action === 'object' && typeof (action as { type?: unknown }).type === 'string') {
    return (action as { type: string }).type;
  }
  if (typeof action === 'function') {
    const fn = action as { type?: unknown; id?: unknown; sendId?: unknown; name?: string };
    if (typeof fn.type === 'string') {
      if (fn.type === 'xstate.raise' && typeof fn.id === 'string' && fn.id.startsWith('xstate.after.')) {
        return undefined;
      }
      if (fn.type === 'xstate.cancel' && typeof fn.sendId === 'string' && fn.sendId.startsWith('xstate.after.')) {
        return undefined;
      }
      return BUILTIN_ACTION_NAMES[fn.type] ?? fn.type;
    }
    // `{ actions: () => … }` names the arrow function after the property: that's not a name.
    return fn.name && !INFERRED_FN_NAMES.has(fn.name) ? fn.name : 'inline';
  }
  return undefined;
}

function actionNames(actions: readonly unknown[] | undefined): string[] {
  const out: string[] = [];
  for (const a of actions ?? []) {
    const name = actionName(a);
    if (name !== undefined) out.push(name);
  }
  return out;
}

/** A display name for a guard: `isAllowed`, `!isFull`, `a && b`, `in(#x.y)`, inline function names. */
export function guardName(guard: unknown): string | undefined {
  if (guard === undefined || guard === null) return undefined;
  if (typeof guard === 'string') return guard;
  if (typeof guard === 'object' && typeof (guard as { type?: unknown }).type === 'string') {
    return (guard as { type: string }).type;
  }
  if (typeof guard === 'function') {
    const fn = guard as { name?: string; guards?: unknown[]; stateValue?: unknown; check?: unknown };
    if (typeof fn.check === 'function') {
      const parts = (fn.guards ?? []).map((g) => guardName(g) ?? '?');
      const wrap = (s: string) => (/[ &|]/.test(s) ? `(${s})` : s);
      switch (fn.name) {
        case 'not':
          return `!${wrap(parts[0] ?? '?')}`;
        case 'and':
          return parts.map(wrap).join(' && ');
        case 'or':
          return parts.map(wrap).join(' || ');
        case 'stateIn':
          return `in(${typeof fn.stateValue === 'string' ? fn.stateValue : JSON.stringify(fn.stateValue)})`;
      }
    }
    return fn.name && !INFERRED_FN_NAMES.has(fn.name) ? fn.name : 'guard';
  }
  return 'guard';
}

function formatDelay(delay: unknown): string {
  if (typeof delay === 'number') return `after ${delay}ms`;
  if (typeof delay === 'string') return /^\d+(\.\d+)?$/.test(delay) ? `after ${delay}ms` : `after ${delay}`;
  if (typeof delay === 'function') {
    const name = (delay as { name?: string }).name;
    return name ? `after ${name}` : 'after (delay)';
  }
  return 'after';
}

/** Human label for a transition's event descriptor. */
function eventLabel(node: StateNodeLike, t: TransitionLike): string {
  const type = t.eventType;
  if (type === '') return 'always';
  if (type.startsWith('xstate.after.')) {
    if (t.delay !== undefined) return formatDelay(t.delay);
    // `xstate.after.<delay>.<stateId>`
    const rest = type.slice('xstate.after.'.length);
    const suffix = `.${node.id}`;
    return formatDelay(rest.endsWith(suffix) ? rest.slice(0, -suffix.length) : rest);
  }
  const actorEvent = (prefix: string, label: string): string | undefined => {
    if (!type.startsWith(prefix)) return undefined;
    const invokeId = type.slice(prefix.length);
    if (node.invoke.length <= 1) return label;
    const def = node.invoke.find((d) => d.id === invokeId);
    return `${label} (${def ? invokeName(node, def, node.invoke.indexOf(def)) : invokeId})`;
  };
  return (
    actorEvent('xstate.done.actor.', 'onDone') ??
    actorEvent('xstate.error.actor.', 'onError') ??
    actorEvent('xstate.snapshot.', 'onSnapshot') ??
    (type.startsWith('xstate.done.state.') ? 'onDone' : undefined) ??
    (type === 'xstate.route' ? 'route' : undefined) ??
    type
  );
}

/** A display name for an invoked actor: its `src` name, else its explicit id. */
function invokeName(node: StateNodeLike, def: { id: string; src: unknown }, index: number): string {
  const configs = node.config.invoke === undefined ? [] : Array.isArray(node.config.invoke) ? node.config.invoke : [node.config.invoke];
  const cfg = configs[index] as { src?: unknown; id?: unknown } | undefined;
  if (cfg && typeof cfg.src === 'string') return cfg.src;
  if (cfg && typeof cfg.id === 'string') return cfg.id;
  if (typeof def.src === 'string' && !def.src.startsWith('xstate.invoke.')) return def.src;
  const logicName = (cfg?.src as { config?: { id?: unknown } } | undefined)?.config?.id;
  return typeof logicName === 'string' ? logicName : 'actor';
}

/**
 * Walks the machine's StateNode tree and returns a JSON-serialisable graph of
 * its states and transitions. Pure: does not start the machine.
 */
export function machineToGraph(machine: AnyStateMachine): StatechartGraph {
  const root = rootOf(machine);
  const nodes: StatechartNode[] = [];
  const edges: StatechartEdge[] = [];
  const usedEdgeIds = new Set<string>();

  const visit = (node: StateNodeLike, parent: StateNodeLike | undefined, isInitial: boolean): void => {
    const entry = actionNames(node.entry);
    const exit = actionNames(node.exit);
    const invokes = node.invoke.map((def, i) => invokeName(node, def, i));
    const out: StatechartNode = {
      id: node.id,
      key: node.key,
      parentId: parent ? parent.id : null,
      type: node.type,
      initial: isInitial,
      final: node.type === 'final',
    };
    if (node.type === 'history' && node.history) out.history = node.history;
    if (entry.length) out.entry = entry;
    if (exit.length) out.exit = exit;
    if (invokes.length) out.invokes = invokes;
    if (node.tags?.length) out.tags = [...node.tags];
    if (node.description) out.description = node.description;
    nodes.push(out);

    const transitionLists: Array<readonly TransitionLike[]> = [...node.transitions.values()];
    if (node.always?.length) transitionLists.push(node.always);
    for (const list of transitionLists) {
      for (const t of list) {
        const event = eventLabel(node, t);
        const guard = guardName(t.guard);
        const actions = actionNames(t.actions);
        const targets = t.target && t.target.length ? t.target : undefined;
        for (const target of targets ?? [undefined]) {
          const targetId = target ? target.id : node.id;
          const base = `${node.id}->${targetId}:${event}${guard ? `[${guard}]` : ''}`;
          let id = base;
          for (let n = 2; usedEdgeIds.has(id); n++) id = `${base}#${n}`;
          usedEdgeIds.add(id);
          const edge: StatechartEdge = { id, source: node.id, target: targetId, event, eventType: t.eventType };
          if (guard) edge.guard = guard;
          if (actions.length) edge.actions = actions;
          if (targetId === node.id) edge.selfLoop = true;
          if (!target) edge.internal = true;
          else if (t.reenter) edge.reenter = true;
          edges.push(edge);
        }
      }
    }

    const initialChild = initialChildOf(node);
    for (const child of childrenOf(node)) visit(child, node, child === initialChild);
  };

  visit(root, undefined, true);
  return { machineId: machine.id, rootId: root.id, nodes, edges };
}

/**
 * Ids of every state node that is active for `value` (a snapshot's `.value`),
 * ancestors included and starting with the root. Unknown keys are ignored, so
 * a value from an older machine version lights what still exists.
 */
export function activeStateIds(machine: AnyStateMachine, value: StateValue): string[] {
  const root = rootOf(machine);
  const ids: string[] = [root.id];
  const walk = (node: StateNodeLike, v: StateValue | undefined): void => {
    if (v === undefined || v === null) return;
    if (typeof v === 'string') {
      const child = node.states?.[v];
      if (child) ids.push(child.id);
      return;
    }
    for (const [key, sub] of Object.entries(v)) {
      const child = node.states?.[key];
      if (!child) continue;
      ids.push(child.id);
      walk(child, sub);
    }
  };
  walk(root, value);
  return ids;
}
