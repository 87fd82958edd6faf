/**
 * The config keys of the endpoints work, read beside the loader's own (small hunks there, the
 * reading here): `model_info.mode` and `model_info.output_vector_size` (LiteLLM's names),
 * `litellm_params.mock_tool_calls`, `litellm_params.forward_priority`, and a `mock_response` given as
 * a map (a structured-output mock, answered as JSON text).
 */
import { checkBoolean, checkList, checkPositiveInteger, childPath, describeValue, isAbsent, isMap, makeCheck, optionalField, type RawMap } from './config-checks.js';
import type { ConfigIssue, DeploymentConfig, MockToolCall, ModelGroupConfig } from '../core/config-types.js';
import { MODEL_MODES } from '../core/endpoints.js';

/** litellm_params keys read here (appended to the loader's known keys). */
export const ENDPOINT_PARAMS_KEYS = ['mock_tool_calls', 'forward_priority'];

/** Largest embedding a mock makes (OpenAI's largest model has 3072). */
export const MAX_MOCK_DIMENSIONS = 16_384;

/** `mock_response`: a string, or a map / list answered as its JSON text. */
export const checkMockResponse = makeCheck('a string, or a map answered as JSON text', (v) =>
  typeof v === 'string' ? v : isMap(v) || Array.isArray(v) ? JSON.stringify(v) : undefined,
);

const checkMode = makeCheck(`one of ${MODEL_MODES.join(', ')}`, (v) => (typeof v === 'string' && v !== '' ? v : undefined));

/** One `mock_tool_calls` entry: `{function: {name, arguments}}` (arguments a JSON string or a map), `id` optional. */
function readToolCall(value: unknown, path: string, index: number, issues: ConfigIssue[]): MockToolCall | undefined {
  const fn = isMap(value) ? value.function : undefined;
  const name = isMap(fn) ? fn.name : undefined;
  const args = isMap(fn) ? fn.arguments : undefined;
  if (!isMap(value) || typeof name !== 'string' || name === '' || !(args === undefined || typeof args === 'string' || isMap(args))) {
    issues.push({ path, message: `expected {function: {name: "...", arguments: "{...}" or a map}}, got ${describeValue(value)}` });
    return undefined;
  }
  const id = typeof value.id === 'string' && value.id !== '' ? value.id : `call_mock${index}`;
  return { id, type: 'function', function: { name, arguments: typeof args === 'string' ? args : JSON.stringify(args ?? {}) } };
}

/**
 * The endpoint settings of one deployment. `params` is its litellm_params, `info` its model_info;
 * problems are recorded with their paths.
 */
export function readEndpointSettings(params: RawMap, info: RawMap | undefined, path: string, issues: ConfigIssue[]): Partial<DeploymentConfig> {
  const out: Partial<DeploymentConfig> = {};
  const paramsPath = childPath(path, 'litellm_params');
  const infoPath = childPath(path, 'model_info');
  if (isMap(params.mock_response) || Array.isArray(params.mock_response)) out.mockResponseIsJson = true;
  if (!isAbsent(params.mock_tool_calls)) {
    const list = checkList(params.mock_tool_calls, childPath(paramsPath, 'mock_tool_calls'), issues);
    if (list) {
      const calls = list.map((c, i) => readToolCall(c, childPath(childPath(paramsPath, 'mock_tool_calls'), i), i, issues));
      if (calls.every((c) => c !== undefined)) out.mockToolCalls = calls as MockToolCall[];
    }
  }
  const forward = optionalField(params, 'forward_priority', paramsPath, checkBoolean, issues);
  if (forward === true) out.forwardPriority = true;
  if (info) {
    const mode = optionalField(info, 'mode', infoPath, checkMode, issues);
    if (mode !== undefined) {
      if ((MODEL_MODES as readonly string[]).includes(mode)) out.mode = mode;
      // (LiteLLM's modes Triage does not serve never get here: config-callable.ts skips their deployments.)
      else {
        issues.push({ path: childPath(infoPath, 'mode'), message: `expected one of ${MODEL_MODES.join(', ')}, got ${describeValue(mode)}` });
      }
    }
    const dims = optionalField(info, 'output_vector_size', infoPath, checkPositiveInteger, issues);
    if (dims !== undefined) {
      if (dims > MAX_MOCK_DIMENSIONS) issues.push({ path: childPath(infoPath, 'output_vector_size'), message: `expected at most ${MAX_MOCK_DIMENSIONS}, got ${dims}` });
      else out.embeddingDimensions = dims;
    }
  }
  return out;
}

/** A group's mode: its deployments' (chat when none says). */
export function groupMode(group: ModelGroupConfig): string {
  return group.deployments.find((d) => d.mode !== undefined)?.mode ?? 'chat';
}

/** Deployments of one group must agree on their mode: a group answers one kind of call. */
export function checkGroupModes(groups: readonly ModelGroupConfig[]): ConfigIssue[] {
  const issues: ConfigIssue[] = [];
  for (const g of groups) {
    const modes = new Set(g.deployments.map((d) => d.mode ?? 'chat'));
    if (modes.size > 1) {
      issues.push({ path: 'model_list', message: `the deployments of model_name ${JSON.stringify(g.name)} disagree on model_info.mode (${[...modes].join(', ')}); a group serves one mode` });
    }
  }
  return issues;
}
