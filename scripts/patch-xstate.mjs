#!/usr/bin/env node
/**
 * postinstall: small changes to XState 5 for speed on Node 20, each keeping its meaning.
 *
 * 1. Actor options. XState's Actor constructor builds its options as `{ ...defaultOptions, ...options }`.
 *    On V8 11.3 (Node 20), a spread that adds properties to a cloned object gives every result a hidden
 *    class of its own, allocated in old space: ~4 µs and ~300 bytes of old-space garbage per actor, and
 *    Triage creates one actor per request. Those maps only go in full collections. `Object.assign({},
 *    defaultOptions, options)` builds the same object (the own enumerable properties of both, later
 *    ones winning) with one shared hidden class. Measured side by side: the gateway's CPU per request
 *    ~148 → ~132 µs, ~12% more requests per second, and shorter minor GC pauses.
 * 2. Snapshot copies. Every `assign`, and every change of status (a final state reached), copies the
 *    snapshot through `cloneMachineSnapshot`, which recomputes the state value and the tag set from the
 *    active state nodes: two Sets, two Maps and a few arrays, though the nodes did not change. When the
 *    copy keeps the same nodes, the value and tags (pure functions of the nodes) are taken from the
 *    snapshot it copies; any copy with new nodes computes them as before. Measured: the Router's cost
 *    per request ~10% lower (docs/performance.md).
 * 3–6. The transition algorithm's general case for the common small ones. XState runs SCXML's
 *    microstep with Sets and arrays sized for many transitions, targets and regions; Triage's machines
 *    take one transition at a time, most of the scheduler's without a target, and check eventless
 *    transitions after every step though almost none is enabled. Each change returns what the general
 *    code returns in exactly those cases, without building it:
 *    - eventless transitions are looked for by walking parent links (not an array of ancestors per
 *      state), and with none enabled there is no conflict check to make;
 *    - a single transition has nothing to conflict with;
 *    - a single transition without a target exits and enters nothing, so only its actions run;
 *    - a transition with one target that is not a history state has that target as its effective
 *      target set.
 *    Measured together: ~57 → ~47 KB allocated per request and ~24.8 → ~20.9 µs per request on the
 *    Router API (docs/performance.md).
 * 7–9. Answers XState recomputes for every event or snapshot though the machine alone decides them:
 *    - a flat machine's state value (the root and one atomic child) is that child's key, and the
 *      value of the root alone (the snapshot before the initial state is entered, built twice per
 *      actor) is computed once per machine;
 *    - a transition to a sibling has their parent as its domain (no target, ancestor and concat
 *      arrays);
 *    - the candidate transitions of a state node for an event type are kept in a Map, not under a key
 *      built as a new string for every event and looked up by name (the StateNode chunk).
 *    Counted with cachegrind (instruction counts repeat here within a few percent; times do not): the
 *    Router API ~183k → ~144k instructions per request, the whole gateway ~327k → ~295k (the bare
 *    fastify server: ~122k). docs/performance.md has the method.
 * 10–11. Two copies the microstep made per step that are only read: one transition's actions (flatMap)
 *    and one state to enter (an array, sorted). Counted: the Router API ~141k → ~133–136k instructions.
 * 12. The actor system's map of live actors. `createSystem` keeps every actor of the system in a Map
 *    (`children`) that it writes in `_register`, deletes from in `_unregister`, and never reads. All
 *    request actors share one system, so that Map churns once per request, and a Map that churns
 *    keeps its values alive through minor collections (src/machines/churn-map.ts says how): every
 *    request that lived across a collection, a few milliseconds, was promoted and waited for a full
 *    one. `_register` no longer stores the actor. test/xstate-patch.test.ts checks that `children` is
 *    still read nowhere. Measured with the ChurnMap change, 32 requests in flight of ~5 ms each: each
 *    minor collection promotes ~180 instead of ~1,200 KB and pauses ~2 instead of ~5.9 ms.
 *
 * Applied only when this repository itself is installed (`npm install` / `npm ci` here), never when
 * Triage is a dependency of another project: that project's XState is its own. Idempotent. If the
 * installed XState no longer has a changed passage, it says so and leaves that one alone;
 * test/xstate-patch.test.ts then fails, so a new XState version is looked at rather than silently
 * slower. Without the patch (`--ignore-scripts`) Triage behaves the same, only slower. Drop each change
 * once XState makes it itself.
 */
import { readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..');

/**
 * The files changed, one per build (cjs, esm) and mode (production, development) of each chunk: `raise`
 * holds the Actor class, the snapshot functions and the transition algorithm; `machine` the StateNode
 * class. A patch applies to the `raise` chunks unless it names another.
 */
export const XSTATE_CHUNKS = {
  raise: /^raise-[0-9a-f]+(\.development)?\.(cjs|esm)\.js$/,
  machine: /^StateMachine-[0-9a-f]+(\.development)?\.(cjs|esm)\.js$/,
};

/** The chunk a file of XState's dist is (a key of XSTATE_CHUNKS), or undefined. */
export function chunkOf(file) {
  return Object.keys(XSTATE_CHUNKS).find((chunk) => XSTATE_CHUNKS[chunk].test(file));
}

/** Whether a patch is for this file of XState's dist: its `chunk`, `raise` unless it names another. */
export function appliesTo(patch, file) {
  return (patch.chunk ?? 'raise') === chunkOf(file);
}

/** The text that shows a patch is in a file: its `marker`, or else its whole replacement. */
export function appliedText(patch) {
  return patch.marker ?? patch.to;
}

/** A passage of XState's code as a pattern: the text as written, any run of whitespace matching any other. */
function passage(code) {
  return new RegExp(
    code
      .trim()
      .split(/\s+/)
      .map((word) => word.replace(/[.*+?^${}()|[\]\\]/g, '\\$&'))
      .join('\\s*'),
  );
}

/**
 * Each change: the passage as XState ships it, and what it becomes (`$1` for what the passage's first
 * group matched); an applied change is recognised by its `marker`, or by its whole replacement.
 */
export const PATCHES = [
  {
    name: 'actor options built with Object.assign',
    from: passage('const resolvedOptions = { ...defaultOptions, ...options };'),
    to: 'const resolvedOptions = Object.assign({}, defaultOptions, options);',
  },
  {
    name: 'snapshot copies with the same state nodes keep their value and tags',
    from: passage(`
function createMachineSnapshot(config, machine) {
  return {
    status: config.status,
    output: config.output,
    error: config.error,
    machine,
    context: config.context,
    _nodes: config._nodes,
    value: getStateValue(machine.root, config._nodes),
    tags: new Set(config._nodes.flatMap(sn => sn.tags)),`),
    to: `function createMachineSnapshot(config, machine, sameNodes) {
  // triage patch: sameNodes is the snapshot being copied when the copy keeps its state nodes.
  return {
    status: config.status,
    output: config.output,
    error: config.error,
    machine,
    context: config.context,
    _nodes: config._nodes,
    value: sameNodes ? sameNodes.value : getStateValue(machine.root, config._nodes),
    tags: sameNodes ? sameNodes.tags : new Set(config._nodes.flatMap(sn => sn.tags)),`,
  },
  {
    name: 'cloneMachineSnapshot passes the copied snapshot when the nodes stay',
    from: passage(`
function cloneMachineSnapshot(snapshot, config = {}) {
  return createMachineSnapshot({
    ...snapshot,
    ...config
  }, snapshot.machine);
}`),
    to: `function cloneMachineSnapshot(snapshot, config = {}) {
  const sameNodes = config._nodes === undefined && snapshot.value !== undefined && snapshot.tags !== undefined ? snapshot : undefined;
  return createMachineSnapshot({
    ...snapshot,
    ...config
  }, snapshot.machine, sameNodes);
}`,
  },
  {
    name: 'eventless transitions found by parent links, with no conflict check when none is enabled',
    from: passage(`
  const enabledTransitionSet = new Set();
  const atomicStates = nextState._nodes.filter(isAtomicStateNode);
  for (const stateNode of atomicStates) {
    loop: for (const s of [stateNode].concat(getProperAncestors(stateNode, undefined))) {
      if (!s.always) {
        continue;
      }
      for (const transition of s.always) {
        if (transition.guard === undefined || evaluateGuard(transition.guard, nextState.context, event, nextState)) {
          enabledTransitionSet.add(transition);
          break loop;
        }
      }
    }
  }
  return removeConflictingTransitions(Array.from(enabledTransitionSet), new Set(nextState._nodes), nextState.historyValue);`),
    to: `  // triage patch: the same states in the same order (each atomic state, then its ancestors), by parent links.
  const enabledTransitionSet = new Set();
  for (const stateNode of nextState._nodes) {
    if (!isAtomicStateNode(stateNode)) {
      continue;
    }
    loop: for (let s = stateNode; s; s = s.parent) {
      if (!s.always) {
        continue;
      }
      for (const transition of s.always) {
        if (transition.guard === undefined || evaluateGuard(transition.guard, nextState.context, event, nextState)) {
          enabledTransitionSet.add(transition);
          break loop;
        }
      }
    }
  }
  if (enabledTransitionSet.size === 0) {
    return [];
  }
  return removeConflictingTransitions(Array.from(enabledTransitionSet), new Set(nextState._nodes), nextState.historyValue);`,
  },
  {
    name: 'a single transition has nothing to conflict with',
    from: passage(`
function removeConflictingTransitions(enabledTransitions, stateNodeSet, historyValue) {
  const filteredTransitions = new Set();`),
    to: `function removeConflictingTransitions(enabledTransitions, stateNodeSet, historyValue) {
  // triage patch: what the loop below returns for fewer than two transitions (its callers only read it).
  if (enabledTransitions.length < 2) {
    return enabledTransitions;
  }
  const filteredTransitions = new Set();`,
  },
  {
    name: 'a single transition without a target runs only its actions',
    from: passage(`
  try {
    const mutStateNodeSet = new Set(currentSnapshot._nodes);
    let historyValue = currentSnapshot.historyValue;`),
    to: `  try {
    // triage patch: no target, so no state is exited or entered, the history and the state nodes stay,
    // and the general path below would return the snapshot its actions leave. They are only read.
    if (!isInitial && transitions.length === 1 && !transitions[0].target?.length) {
      return [resolveActionsAndContext(currentSnapshot, event, actorScope, transitions[0].actions, internalQueue, undefined), actions];
    }
    const mutStateNodeSet = new Set(currentSnapshot._nodes);
    let historyValue = currentSnapshot.historyValue;`,
  },
  {
    name: 'one target that is not a history state is its own effective target set',
    from: passage(`
function getEffectiveTargetStates(transition, historyValue) {
  if (!transition.target) {
    return [];
  }
  const targets = new Set();`),
    to: `function getEffectiveTargetStates(transition, historyValue) {
  if (!transition.target) {
    return [];
  }
  // triage patch: the Set below would hold just this target (its callers only read the array).
  if (transition.target.length === 1 && !isHistoryNode(transition.target[0])) {
    return transition.target;
  }
  const targets = new Set();`,
  },
  {
    name: 'a flat machine\'s state value without building the node set',
    from: passage(`
function getStateValue(rootNode, stateNodes) {
  const config = getAllStateNodes(stateNodes);`),
    to: `// triage patch: the root alone has one value per machine; kept when it is a string (immutable).
const rootOnlyValues = new WeakMap();
function getStateValue(rootNode, stateNodes) {
  // triage patch: the two shapes a flat machine's snapshots have, answered as the code below would.
  // The root alone is the snapshot before the initial state is entered, built twice per actor.
  if (stateNodes.length === 1 && stateNodes[0] === rootNode) {
    let value = rootOnlyValues.get(rootNode);
    if (value === undefined) {
      value = getValueFromAdj(rootNode, getAdjList(getAllStateNodes(stateNodes)));
      if (typeof value !== 'string') {
        return value;
      }
      rootOnlyValues.set(rootNode, value);
    }
    return value;
  }
  // The root and one atomic or final child of it: the value is that child's key.
  if (stateNodes.length === 2 && rootNode.type === 'compound') {
    const leaf = stateNodes[0] === rootNode ? stateNodes[1] : stateNodes[1] === rootNode ? stateNodes[0] : undefined;
    if (leaf !== undefined && leaf.parent === rootNode && isAtomicStateNode(leaf)) {
      return leaf.key;
    }
  }
  const config = getAllStateNodes(stateNodes);`,
  },
  {
    name: 'a transition to a sibling has their parent as its domain',
    from: passage(`
function getTransitionDomain(transition, historyValue) {
  const targetStates = getEffectiveTargetStates(transition, historyValue);
  if (!targetStates) {
    return;
  }
  if (!transition.reenter && targetStates.every(`),
    to: `function getTransitionDomain(transition, historyValue) {
  const targetStates = getEffectiveTargetStates(transition, historyValue);
  if (!targetStates) {
    return;
  }
  // triage patch: one target, another child of the source's parent: the least common ancestor found
  // below is that parent, with or without reenter (an array, a concat and the ancestors' list each).
  if (targetStates.length === 1 && targetStates[0] !== transition.source && targetStates[0].parent !== undefined && targetStates[0].parent === transition.source.parent) {
    return transition.source.parent;
  }
  if (!transition.reenter && targetStates.every(`,
  },
  {
    name: 'transition candidates kept per event type in a Map',
    chunk: 'machine',
    // The call is qualified in the CommonJS builds and not in the ES module ones: $1 keeps it as found.
    from: /const candidates = memo\(this, `candidates-\$\{eventType\}`, \(\) => ((?:dist_xstateGuards\.)?getCandidates)\(this, eventType\)\);/,
    marker: "const candidatesByType = memo(this, 'candidatesByType', () => new Map());",
    to: `// triage patch: memo's key here is a new string per event, looked up by name in a growing object.
    const candidatesByType = memo(this, 'candidatesByType', () => new Map());
    let candidates = candidatesByType.get(eventType);
    if (candidates === undefined) {
      candidates = $1(this, eventType);
      candidatesByType.set(eventType, candidates);
    }`,
  },
  {
    name: 'one transition\'s actions are its own array',
    from: passage(`
    nextState = resolveActionsAndContext(nextState, event, actorScope, filteredTransitions.flatMap(t => t.actions), internalQueue, undefined);`),
    to: `    // triage patch: flatMap would copy one transition's actions; they are only read.
    nextState = resolveActionsAndContext(nextState, event, actorScope, filteredTransitions.length === 1 ? filteredTransitions[0].actions : filteredTransitions.flatMap(t => t.actions), internalQueue, undefined);`,
  },
  {
    name: 'one state to enter needs no sorting',
    from: passage(`
  for (const stateNodeToEnter of [...statesToEnter].sort((a, b) => a.order - b.order)) {`),
    to: `  // triage patch: a single state is in document order already (the loop does not change the Set).
  for (const stateNodeToEnter of statesToEnter.size === 1 ? statesToEnter : [...statesToEnter].sort((a, b) => a.order - b.order)) {`,
  },
  {
    name: 'the system does not keep a map of live actors that nothing reads',
    from: passage(`
    _register: (sessionId, actorRef) => {
      children.set(sessionId, actorRef);
      return sessionId;
    },`),
    to: `_register: (sessionId, actorRef) => {
      // triage patch: the system's Map of actors was written here and never read; churning once per
      // actor, it kept every actor alive through minor collections.
      return sessionId;
    },`,
  },
];

// Run as a script (postinstall), not when the test imports PATCHES.
if (process.argv[1] !== undefined && realpathSync(process.argv[1]) === realpathSync(fileURLToPath(import.meta.url))) main();

function main() {
  const initCwd = process.env.INIT_CWD;
  // npm sets INIT_CWD to where `npm install` ran; compared as real paths, so a symlinked checkout still counts.
  if (initCwd !== undefined && realpathSync(resolve(initCwd)) !== realpathSync(root)) return;

  let xstateDir;
  try {
    xstateDir = dirname(createRequire(join(root, 'package.json')).resolve('xstate/package.json'));
  } catch {
    console.log('patch-xstate: xstate is not installed; nothing to do');
    return;
  }
  const dist = join(xstateDir, 'dist');
  const files = readdirSync(dist).filter((f) => chunkOf(f) !== undefined);
  const { version } = JSON.parse(readFileSync(join(xstateDir, 'package.json'), 'utf8'));
  const counts = PATCHES.map(() => ({ patched: 0, already: 0, files: 0 }));
  for (const file of files) {
    const path = join(dist, file);
    let text = readFileSync(path, 'utf8');
    const before = text;
    PATCHES.forEach((patch, i) => {
      if (!appliesTo(patch, file)) return;
      counts[i].files += 1;
      if (text.includes(appliedText(patch))) counts[i].already += 1;
      else if (patch.from.test(text)) {
        text = text.replace(patch.from, patch.to);
        counts[i].patched += 1;
      }
    });
    if (text !== before) writeFileSync(path, text);
  }
  PATCHES.forEach((patch, i) => {
    const { patched, already } = counts[i];
    if (patched + already === 0) console.log(`patch-xstate: xstate ${version} no longer has the passage for "${patch.name}"; nothing changed`);
    else console.log(`patch-xstate: xstate ${version}: ${patch.name} in ${patched + already} of ${counts[i].files} files (${patched} patched now)`);
  });
}
