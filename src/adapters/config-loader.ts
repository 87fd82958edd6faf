/**
 * Loads a LiteLLM-style proxy config (YAML) into the normalized TriageConfig. Every problem is collected
 * and thrown at once as a ConfigError; ignored settings and unknown keys come back as warnings. Secrets
 * (master_key, keys[].key, api_key, redis_password) never appear in an issue message.
 */
import { checkGroupModes, checkMockResponse, ENDPOINT_PARAMS_KEYS, readEndpointSettings } from './config-endpoints.js';
import { QUEUE_BOUNDS_KEY, readQueueBounds } from './config-queue-bounds.js';
import { readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { readRedisExtras, REDIS_EXTRA_KEYS } from './config-redis.js';
import {
  absentOrValid,
  checkBoolean,
  checkHttpUrl,
  checkInteger,
  checkList,
  checkMap,
  checkNonEmptyString,
  checkNonNegativeInteger,
  checkNonNegativeSeconds,
  checkPort,
  checkPositiveInteger,
  checkPositiveSeconds,
  checkRedisUrl,
  checkString,
  childPath,
  isMap,
  describeValue,
  isAbsent,
  optionalField,
  requiredField,
  ROOT_PATH,
  secondsToMs,
  Unresolved,
  warnUnknownKeys,
  withoutUndefined,
  type Check,
  type RawMap,
} from './config-checks.js';
import { redactSecrets, secretList } from '../core/secrets.js';
import { PROVIDER_PARAMS_KEYS, readProviderParams } from './config-provider.js';
import {
  type ClientTimeoutSettings,
  ConfigError,
  type ConfigIssue,
  type DeploymentConfig,
  type DeploymentLimits,
  type GeneralSettings,
  type LoadedConfig,
  type ModelGroupConfig,
  type RedisSettings,
  type RouterSettings,
  type TriageConfig,
  type VirtualKeyConfig,
} from '../core/config-types.js';
import { ALIAS_KEY, readAliases } from './config-aliases.js';
import { skipReason, splitModel } from './config-callable.js';
import { applyCredentials } from './config-credentials.js';
import { applyEnvironmentVariables, settleMissingVariables, type MissingVariable } from './config-env.js';
import { applyIncludes } from './config-include.js';
import { applyLitellmSettings } from './config-litellm-settings.js';
import { warnLitellmParams } from './config-params-ignored.js';
import { applyDefaultMaxParallel, DEFAULT_MAX_PARALLEL_KEY } from './config-router-defaults.js';
import { AUTH_SETTING_KEYS, checkUnenforcedAuth } from './config-security.js';
import { parseYaml11 } from './config-yaml.js';
import { providerSpec } from './providers.js';
import { matchWildcard } from '../model-resolver.js';

export interface NormalizeOptions {
  /**
   * Where `os.environ/NAME` and the master-key fallbacks are read, and where `environment_variables`
   * are written (as LiteLLM sets them in its process); defaults to process.env.
   */
  env?: NodeJS.ProcessEnv;
  /** Start even when general_settings asks for auth Triage does not enforce (`--allow-unenforced-auth`): a warning each. */
  allowUnenforcedAuth?: boolean;
}

export interface ParseOptions extends NormalizeOptions {
  /** Names the text in YAML syntax errors (a file path); defaults to `(root)`. */
  source?: string;
  /** The folder `include:` paths are relative to; defaults to the current directory. */
  baseDir?: string;
}

export const DEFAULT_ROUTING_STRATEGY = 'usage-based-routing';

const ENV_PREFIX = 'os.environ/';
const MASTER_KEY_ENV_VARS = ['TRIAGE_MASTER_KEY', 'LITELLM_MASTER_KEY'] as const;

const TOP_LEVEL_KEYS = ['model_list', 'router_settings', 'general_settings', 'litellm_settings', 'environment_variables', 'credential_list'];
/** Limits may also sit beside litellm_params, where LiteLLM's router looks first. */
const DEPLOYMENT_KEYS = ['model_name', 'litellm_params', 'model_info', 'rpm', 'tpm', 'max_parallel_requests'];
const LITELLM_PARAMS_KEYS = [
  'model',
  'mock_response',
  'mock_delay',
  'api_key',
  'api_base',
  'api_version',
  'rpm',
  'tpm',
  'max_parallel_requests',
  'timeout',
  ...PROVIDER_PARAMS_KEYS,
  ...ENDPOINT_PARAMS_KEYS,
];
const ROUTER_KEYS = [
  'routing_strategy',
  'polling_interval',
  'timeout',
  'request_timeout',
  'default_priority',
  'min_priority',
  'max_priority',
  'cooldown_time',
  'allowed_fails',
  'num_retries',
  'max_queue_size',
  'priority_aging_seconds',
  'default_max_tokens',
  'redis_url',
  'redis_host',
  'redis_port',
  'redis_password',
  'redis_prefix',
  'redis_lease_seconds',
  'max_wildcard_models',
  ALIAS_KEY,
  DEFAULT_MAX_PARALLEL_KEY,
  ...REDIS_EXTRA_KEYS,
  QUEUE_BOUNDS_KEY,
];
/** general_settings keys for the server's client timeouts, and the ServerTimeouts field each sets. */
const CLIENT_TIMEOUT_KEYS = {
  client_request_timeout_seconds: 'requestTimeoutMs',
  client_headers_timeout_seconds: 'headersTimeoutMs',
  keep_alive_timeout_seconds: 'keepAliveTimeoutMs',
  stream_stall_timeout_seconds: 'streamStallMs',
} as const;
const GENERAL_KEYS = ['master_key', 'keys', 'max_request_body_bytes', 'public_metrics', 'enable_metrics', 'shutdown_grace_seconds', ...Object.keys(CLIENT_TIMEOUT_KEYS), ...AUTH_SETTING_KEYS];
const VIRTUAL_KEY_KEYS = ['key', 'name', 'models', 'max_priority', 'rpm'];

/** Everything one normalization pass accumulates. */
interface Context {
  issues: ConfigIssue[];
  warnings: ConfigIssue[];
  /** Secret values seen anywhere, scrubbed from every message as a last line of defence. */
  secrets: Set<string>;
  /** Groups whose every deployment was skipped so far, with the reasons (config-callable.ts). */
  skipped: Map<string, string[]>;
  /** The environment (REDIS_CLUSTER_NODES, providers' key variables). */
  env?: NodeJS.ProcessEnv;
}

/**
 * Replaces every string that is exactly `os.environ/NAME`, in maps and lists at any depth, with env[NAME].
 * A variable that is not set becomes an Unresolved value: the check that reads it reports it at its path,
 * and `missing` (when given) lists it, so one nobody reads can be a warning instead (config-env.ts).
 * Returns a new tree; the input is not changed.
 */
export function resolveEnvReferences(
  value: unknown,
  env: NodeJS.ProcessEnv,
  path: string,
  issues: ConfigIssue[],
  /** Maps and lists on the way down: a YAML alias that contains itself would otherwise recurse for ever. */
  ancestors: Set<object> = new Set(),
  missing?: MissingVariable[],
): unknown {
  if (typeof value === 'string') {
    if (!value.startsWith(ENV_PREFIX)) return value;
    const name = value.slice(ENV_PREFIX.length);
    const where = path || ROOT_PATH;
    if (name === '') {
      issues.push({ path: where, message: `"${ENV_PREFIX}" names no environment variable` });
      return new Unresolved('');
    }
    const resolved = env[name];
    if (resolved === undefined) {
      missing?.push({ path: where, variable: name });
      return new Unresolved(name);
    }
    return resolved;
  }
  if (typeof value !== 'object' || value === null || value instanceof Uint8Array || value instanceof Date) return value;
  if (ancestors.has(value)) {
    issues.push({ path: path || ROOT_PATH, message: 'a YAML alias refers to a map or list that contains it (a cycle); write the value out' });
    return new Unresolved('');
  }
  ancestors.add(value);
  try {
    if (Array.isArray(value)) return value.map((item, i) => resolveEnvReferences(item, env, childPath(path, i), issues, ancestors, missing));
    return Object.fromEntries(
      Object.entries(value).map(([key, item]) => [key, resolveEnvReferences(item, env, childPath(path, key), issues, ancestors, missing)]),
    );
  } finally {
    ancestors.delete(value);
  }
}

/**
 * Parses YAML text as LiteLLM reads it (YAML 1.1, duplicate keys warned about), follows `include:`,
 * and normalizes it. YAML syntax errors are issues at `source` with their line and column.
 */
export function parseConfig(yamlText: string, options: ParseOptions = {}): LoadedConfig {
  const source = options.source ?? ROOT_PATH;
  const parsed = parseYaml11(yamlText, source);
  const included = applyIncludes(parsed.raw, options.baseDir ?? process.cwd());
  const normalizeOptions: NormalizeOptions = { env: options.env };
  if (options.allowUnenforcedAuth !== undefined) normalizeOptions.allowUnenforcedAuth = options.allowUnenforcedAuth;
  const loaded = normalizeConfig(included.root, normalizeOptions);
  return { ...loaded, warnings: [...parsed.warnings, ...included.warnings, ...loaded.warnings] };
}

/** Reads and loads a config file; a file that cannot be read is a ConfigError at its path. */
export function loadConfigFile(path: string, env?: NodeJS.ProcessEnv, options: Omit<ParseOptions, 'env' | 'source' | 'baseDir'> = {}): LoadedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    const reason = code === 'ENOENT' ? 'file not found' : (code ?? (error as Error).message);
    throw new ConfigError([{ path, message: `cannot read config file: ${reason}` }]);
  }
  return parseConfig(text, { ...options, env, source: path, baseDir: dirname(path) });
}

/** Validates and normalizes an already-parsed config (e.g. from YAML or JSON). Throws ConfigError with every issue. */
export function normalizeConfig(raw: unknown, options: NormalizeOptions = {}): LoadedConfig {
  const env = options.env ?? process.env;
  const ctx: Context = { issues: [], warnings: [], secrets: new Set(), skipped: new Map(), env };
  // environment_variables first, as LiteLLM does: os.environ/ references elsewhere may name them.
  let toResolve = raw;
  if (typeof raw === 'object' && raw !== null && !Array.isArray(raw) && 'environment_variables' in raw) {
    applyEnvironmentVariables((raw as RawMap).environment_variables, env, ctx.issues, ctx.warnings);
    // Applied, and its own os.environ/ references settled there; nothing below reads it.
    const { environment_variables: _applied, ...rest } = raw as RawMap;
    toResolve = rest;
  }
  const missing: MissingVariable[] = [];
  let resolved = resolveEnvReferences(toResolve, env, '', ctx.issues, new Set(), missing);
  if (typeof resolved === 'object' && resolved !== null && !Array.isArray(resolved) && !(resolved instanceof Unresolved)) {
    resolved = applyCredentials(resolved as RawMap, ctx.issues);
  }

  if (isAbsent(resolved)) {
    ctx.issues.push({ path: ROOT_PATH, message: 'the config is empty; expected a map with at least model_list' });
  }
  const root = isAbsent(resolved) ? undefined : checkMap(resolved, ROOT_PATH, ctx.issues);
  // Nothing below the top level can be checked when the document is not a map.
  if (root === undefined) throw new ConfigError(ctx.issues);
  warnUnknownKeys(root, '', TOP_LEVEL_KEYS, ctx.warnings);
  if (!isAbsent(root.include)) {
    ctx.warnings.push({ path: 'include', message: 'ignored here: includes are followed when the config is read from YAML (parseConfig, loadConfigFile)' });
  }

  const { groups, groupNames } = normalizeModelList(root.model_list, ctx);
  const router = normalizeRouterSettings(root.router_settings, ctx);
  const routerMap = isMap(root.router_settings) ? root.router_settings : {};
  applyLitellmSettings(sectionMap(root.litellm_settings, 'litellm_settings', ctx), routerMap, router, ctx.issues, ctx.warnings);
  applyDefaultMaxParallel(groups, routerMap, ctx.issues);
  const exact = groups.filter((g) => !g.name.includes('*'));
  const wildcards = groups.filter((g) => g.name.includes('*'));
  const unavailableGroups = [...ctx.skipped].map(([name, reasons]) => ({ name, reason: reasons.join('; ') }));
  const aliases = readAliases(
    routerMap[ALIAS_KEY],
    { names: new Set([...exact.map((g) => g.name), ...unavailableGroups.map((g) => g.name)]), patterns: wildcards.map((g) => g.name) },
    ctx.issues,
    ctx.warnings,
  );
  for (const a of aliases) groupNames.add(a.name);
  checkUnenforcedAuth(isMap(root.general_settings) ? root.general_settings : {}, options.allowUnenforcedAuth === true, ctx.issues, ctx.warnings);
  const general = normalizeGeneralSettings(root.general_settings, env, router, groupNames, ctx);
  settleMissingVariables(missing, ctx.issues, ctx.warnings);

  if (ctx.issues.length > 0) throw new ConfigError(scrubSecrets(ctx.issues, ctx.secrets));
  const config: TriageConfig = { modelGroups: exact, router, general };
  if (wildcards.length > 0) config.wildcards = wildcards;
  if (aliases.length > 0) config.aliases = aliases;
  if (unavailableGroups.length > 0) config.unavailableGroups = unavailableGroups;
  return { config, warnings: scrubSecrets(ctx.warnings, ctx.secrets) };
}

function rememberSecret(ctx: Context, value: unknown): void {
  if (typeof value === 'string') ctx.secrets.add(value);
}

function scrubSecrets(issues: ConfigIssue[], secrets: Set<string>): ConfigIssue[] {
  const list = secretList(secrets);
  return issues.map((issue) => ({ path: redactSecrets(issue.path, list), message: redactSecrets(issue.message, list) }));
}

/** An optional section: absent or null means "all defaults"; anything else must be a map. */
function sectionMap(value: unknown, path: string, ctx: Context): RawMap {
  if (isAbsent(value)) return {};
  return checkMap(value, path, ctx.issues) ?? {};
}

// ---------------------------------------------------------------------------------------------------
// model_list

function normalizeModelList(value: unknown, ctx: Context): { groups: ModelGroupConfig[]; groupNames: Set<string> } {
  const path = 'model_list';
  const byGroup = new Map<string, DeploymentConfig[]>();
  /** Deployments seen per model_name, valid or not: gives each its index within the group. */
  const groupCounts = new Map<string, number>();
  const idOwners = new Map<string, string>();

  let list: unknown[] = [];
  if (isAbsent(value)) {
    ctx.issues.push({ path, message: 'is required (a non-empty list of deployments)' });
  } else {
    list = checkList(value, path, ctx.issues) ?? [];
    if (Array.isArray(value) && value.length === 0) {
      ctx.issues.push({ path, message: 'expected a non-empty list of deployments, got []' });
    }
  }

  list.forEach((entry, index) => {
    const entryPath = childPath(path, index);
    const result = normalizeDeployment(entry, entryPath, groupCounts, ctx);
    if (!result) return;
    if ('skipped' in result) {
      const reasons = ctx.skipped.get(result.modelName) ?? [];
      reasons.push(`${entryPath} ${result.skipped}`);
      ctx.skipped.set(result.modelName, reasons);
      return;
    }
    const { deployment, idPath } = result;
    const owner = idOwners.get(deployment.id);
    if (owner !== undefined) {
      ctx.issues.push({ path: idPath, message: `duplicate deployment id ${JSON.stringify(deployment.id)} (already used by ${owner})` });
      return;
    }
    idOwners.set(deployment.id, entryPath);
    const group = byGroup.get(deployment.modelName) ?? [];
    group.push(deployment);
    byGroup.set(deployment.modelName, group);
  });

  const groups = [...byGroup].map(([name, deployments]) => ({ name, deployments }));
  // A group with a callable deployment left serves with it; only the rest answer 503 with the reasons.
  for (const name of byGroup.keys()) ctx.skipped.delete(name);
  ctx.issues.push(...checkGroupModes(groups));
  return { groups, groupNames: new Set(groupCounts.keys()) };
}

function normalizeDeployment(
  entry: unknown,
  path: string,
  groupCounts: Map<string, number>,
  ctx: Context,
): { deployment: DeploymentConfig; idPath: string } | { skipped: string; modelName: string } | undefined {
  const map = checkMap(entry, path, ctx.issues);
  if (!map) return undefined;
  warnUnknownKeys(map, path, DEPLOYMENT_KEYS, ctx.warnings);

  const modelName = requiredField(map, 'model_name', path, checkNonEmptyString, ctx.issues);
  let indexInGroup = 0;
  if (modelName !== undefined) {
    indexInGroup = groupCounts.get(modelName) ?? 0;
    groupCounts.set(modelName, indexInGroup + 1);
  }
  const paramsPath = childPath(path, 'litellm_params');
  const params = requiredField(map, 'litellm_params', path, checkMap, ctx.issues);
  const infoPath = childPath(path, 'model_info');
  const info = optionalField(map, 'model_info', path, checkMap, ctx.issues);

  // A deployment Triage cannot call is skipped before its params are read: their os.environ/ references
  // (a bedrock entry's AWS keys) then never stop the start.
  const skip = params ? skipReason(params, info) : undefined;
  if (skip !== undefined && modelName !== undefined) {
    ctx.warnings.push({ path, message: `deployment of ${JSON.stringify(modelName)} skipped: ${skip}` });
    return { skipped: skip, modelName };
  }

  // model_info: id and fallback limits; any other key is LiteLLM metadata and ignored silently.
  const explicitId = info ? optionalField(info, 'id', infoPath, checkNonEmptyString, ctx.issues) : undefined;
  const infoLimits = info ? readLimits(info, infoPath, ctx) : {};
  const deploymentLimits = readLimits(map, path, ctx);
  const normalizedParams = params ? normalizeLitellmParams(params, paramsPath, ctx) : undefined;
  if (modelName === undefined || normalizedParams === undefined) return undefined;

  // LiteLLM's router reads each limit beside litellm_params first, then in it, then in model_info.
  const { limits: paramLimits, ...rest } = normalizedParams;
  const limits = withoutUndefined<DeploymentLimits>({
    rpm: deploymentLimits.rpm ?? paramLimits.rpm ?? infoLimits.rpm,
    tpm: deploymentLimits.tpm ?? paramLimits.tpm ?? infoLimits.tpm,
    maxParallelRequests: deploymentLimits.maxParallelRequests ?? paramLimits.maxParallelRequests ?? infoLimits.maxParallelRequests,
  });
  const deployment = withoutUndefined<DeploymentConfig>({
    id: explicitId ?? `${modelName}#${indexInGroup}`,
    modelName,
    ...rest,
    limits,
    ...(params ? readEndpointSettings(params, info, path, ctx.issues) : {}),
  });
  return { deployment, idPath: explicitId !== undefined ? childPath(infoPath, 'id') : path };
}

function readLimits(map: RawMap, path: string, ctx: Context): DeploymentLimits {
  return {
    rpm: optionalField(map, 'rpm', path, checkPositiveInteger, ctx.issues),
    tpm: optionalField(map, 'tpm', path, checkPositiveInteger, ctx.issues),
    maxParallelRequests: optionalField(map, 'max_parallel_requests', path, checkPositiveInteger, ctx.issues),
  };
}

type NormalizedParams = Omit<DeploymentConfig, 'id' | 'modelName'>;

function normalizeLitellmParams(params: RawMap, path: string, ctx: Context): NormalizedParams | undefined {
  const { issues } = ctx;
  warnLitellmParams(params, path, LITELLM_PARAMS_KEYS, ctx.warnings);
  const model = requiredField(params, 'model', path, checkNonEmptyString, issues);
  const mockResponse = optionalField(params, 'mock_response', path, checkMockResponse, issues);
  const mockDelay = optionalField(params, 'mock_delay', path, checkNonNegativeSeconds, issues);
  rememberSecret(ctx, params.api_key);
  // `api_key: ""` is no key, as in LiteLLM (real configs write it for local servers).
  const apiKey = params.api_key === '' ? undefined : optionalField(params, 'api_key', path, checkNonEmptyString, issues, { secret: true });
  const apiBase = optionalField(params, 'api_base', path, checkHttpUrl, issues);
  const limits = readLimits(params, path, ctx);
  const timeout = optionalField(params, 'timeout', path, checkPositiveSeconds, issues);
  if (model === undefined) return undefined;

  const { provider, upstreamModel } = splitModel(model);

  const secret = (value: string) => rememberSecret(ctx, value);
  const providerParams =
    mockResponse === undefined && isAbsent(params.mock_response)
      ? readProviderParams(params, path, model, provider, upstreamModel, { apiBase, apiKey }, { issues, warnings: ctx.warnings, env: ctx.env ?? process.env, secret })
      : { apiBase: apiBase?.replace(/\/+$/, ''), apiKey };

  return {
    model,
    provider,
    upstreamModel,
    limits,
    mockResponse,
    mockDelayMs: secondsToMs(mockDelay ?? 0),
    requestTimeoutMs: timeout === undefined ? undefined : secondsToMs(timeout),
    ...providerParams,
  };
}

// ---------------------------------------------------------------------------------------------------
// router_settings

function normalizeRouterSettings(value: unknown, ctx: Context): RouterSettings {
  const path = 'router_settings';
  const { issues } = ctx;
  const map = sectionMap(value, path, ctx);
  warnUnknownKeys(map, path, ROUTER_KEYS, ctx.warnings);
  const field = <T>(key: string, check: Check<T>): T | undefined => optionalField(map, key, path, check, issues);

  const routingStrategy = field('routing_strategy', checkNonEmptyString) ?? DEFAULT_ROUTING_STRATEGY;
  if (routingStrategy !== DEFAULT_ROUTING_STRATEGY) {
    ctx.warnings.push({
      path: childPath(path, 'routing_strategy'),
      message: `${JSON.stringify(routingStrategy)} is accepted, but Triage always routes to the least-loaded deployment`,
    });
  }

  const minGiven = field('min_priority', checkInteger);
  const maxGiven = field('max_priority', checkInteger);
  const defaultGiven = field('default_priority', checkInteger);
  const minPriority = minGiven ?? 0;
  const maxPriority = maxGiven ?? 1000;
  const defaultPriority = defaultGiven ?? 0;
  const prioritiesValid =
    absentOrValid(map, 'min_priority', minGiven) &&
    absentOrValid(map, 'max_priority', maxGiven) &&
    absentOrValid(map, 'default_priority', defaultGiven);
  if (prioritiesValid) {
    if (maxPriority < minPriority) {
      const at = maxGiven !== undefined ? 'max_priority' : 'min_priority';
      issues.push({
        path: childPath(path, at),
        message:
          at === 'max_priority'
            ? `must be >= min_priority (${minPriority}), got ${maxPriority}`
            : `must be <= max_priority (${maxPriority}, the default), got ${minPriority}`,
      });
    } else if (defaultPriority < minPriority || defaultPriority > maxPriority) {
      issues.push({
        path: childPath(path, 'default_priority'),
        message:
          `must lie within [min_priority ${minPriority}, max_priority ${maxPriority}], got ${defaultPriority}` +
          (defaultGiven === undefined ? ' (the default); set default_priority' : ''),
      });
    }
  }

  const agingSeconds = field('priority_aging_seconds', checkPositiveSeconds);
  const router: RouterSettings = {
    routingStrategy,
    pollingIntervalMs: secondsToMs(field('polling_interval', checkPositiveSeconds) ?? 0.03),
    queueTimeoutMs: secondsToMs(field('timeout', checkPositiveSeconds) ?? 600),
    requestTimeoutMs: secondsToMs(field('request_timeout', checkPositiveSeconds) ?? 600),
    defaultPriority,
    minPriority,
    maxPriority,
    cooldownTimeMs: secondsToMs(field('cooldown_time', checkNonNegativeSeconds) ?? 5),
    allowedFails: field('allowed_fails', checkNonNegativeInteger) ?? 3,
    numRetries: field('num_retries', checkNonNegativeInteger) ?? 2,
    maxQueueSize: field('max_queue_size', checkPositiveInteger) ?? 10_000,
    maxQueueSizeByPriority: readQueueBounds(map, path, issues),
    priorityAgingMs: agingSeconds === undefined ? undefined : secondsToMs(agingSeconds),
    defaultMaxTokens: field('default_max_tokens', checkPositiveInteger) ?? 256,
    maxWildcardModels: field('max_wildcard_models', checkPositiveInteger),
    redis: normalizeRedis(map, path, ctx),
  };
  return withoutUndefined(router);
}

/** Redis settings exist only when redis_url or redis_host is given; both are passed through when both are. */
function normalizeRedis(map: RawMap, path: string, ctx: Context): RedisSettings | undefined {
  const { issues } = ctx;
  rememberSecret(ctx, map.redis_password);
  const url = optionalField(map, 'redis_url', path, checkRedisUrl, issues);
  const host = optionalField(map, 'redis_host', path, checkNonEmptyString, issues);
  const port = optionalField(map, 'redis_port', path, checkPort, issues);
  const password = optionalField(map, 'redis_password', path, checkString, issues, { secret: true });
  const prefix = optionalField(map, 'redis_prefix', path, checkNonEmptyString, issues);
  const leaseSeconds = optionalField(map, 'redis_lease_seconds', path, checkPositiveSeconds, issues);
  const { extras, enabled } = readRedisExtras(map, path, ctx.env ?? process.env, issues, ctx.warnings);

  if (isAbsent(map.redis_url) && isAbsent(map.redis_host) && !enabled) {
    for (const key of ['redis_port', 'redis_password', 'redis_prefix', 'redis_lease_seconds', 'redis_username', 'redis_db', 'redis_ssl', 'redis_ssl_ca_certs']) {
      if (!isAbsent(map[key])) {
        ctx.warnings.push({ path: childPath(path, key), message: 'ignored: neither redis_url nor redis_host is set' });
      }
    }
    return undefined;
  }
  return withoutUndefined<RedisSettings>({
    url,
    host,
    // The default port goes with a host; a URL carries its own port.
    port: port ?? (host !== undefined ? 6379 : undefined),
    password,
    prefix: prefix ?? 'triage',
    // Absent: the store's default applies.
    leaseMs: leaseSeconds === undefined ? undefined : secondsToMs(leaseSeconds),
    ...extras,
  });
}

// ---------------------------------------------------------------------------------------------------
// general_settings

function normalizeGeneralSettings(
  value: unknown,
  env: NodeJS.ProcessEnv,
  router: RouterSettings,
  groupNames: Set<string>,
  ctx: Context,
): GeneralSettings {
  const path = 'general_settings';
  const { issues } = ctx;
  const map = sectionMap(value, path, ctx);
  warnUnknownKeys(map, path, GENERAL_KEYS, ctx.warnings);

  rememberSecret(ctx, map.master_key);
  let masterKey = optionalField(map, 'master_key', path, checkNonEmptyString, issues, { secret: true });
  let masterKeySource = 'general_settings.master_key';
  if (isAbsent(map.master_key)) {
    const fromEnv = MASTER_KEY_ENV_VARS.find((name) => (env[name] ?? '') !== '');
    if (fromEnv !== undefined) {
      masterKey = env[fromEnv];
      masterKeySource = `the master key (from ${fromEnv})`;
      rememberSecret(ctx, masterKey);
    }
  }

  const keys = normalizeVirtualKeys(map.keys, childPath(path, 'keys'), { masterKey, masterKeySource, router, groupNames }, ctx);
  const graceSeconds = optionalField(map, 'shutdown_grace_seconds', path, checkNonNegativeSeconds, issues) ?? 30;
  const clientTimeouts: ClientTimeoutSettings = {};
  for (const [key, field] of Object.entries(CLIENT_TIMEOUT_KEYS)) {
    const seconds = optionalField(map, key, path, checkPositiveSeconds, issues);
    if (seconds !== undefined) clientTimeouts[field] = secondsToMs(seconds);
  }
  return withoutUndefined<GeneralSettings>({
    masterKey,
    keys,
    maxRequestBodyBytes: optionalField(map, 'max_request_body_bytes', path, checkPositiveInteger, issues) ?? 4_194_304,
    publicMetrics: optionalField(map, 'public_metrics', path, checkBoolean, issues) ?? false,
    metrics: optionalField(map, 'enable_metrics', path, checkBoolean, issues) ?? true,
    shutdownGraceMs: secondsToMs(graceSeconds),
    clientTimeouts: Object.keys(clientTimeouts).length > 0 ? clientTimeouts : undefined,
  });
}

interface KeyRules {
  masterKey: string | undefined;
  masterKeySource: string;
  router: RouterSettings;
  groupNames: Set<string>;
}

function normalizeVirtualKeys(value: unknown, path: string, rules: KeyRules, ctx: Context): VirtualKeyConfig[] {
  if (isAbsent(value)) return [];
  const list = checkList(value, path, ctx.issues) ?? [];
  const keyOwners = new Map<string, string>();
  const nameOwners = new Map<string, string>();
  const keys: VirtualKeyConfig[] = [];
  list.forEach((entry, index) => {
    const entryPath = childPath(path, index);
    const map = checkMap(entry, entryPath, ctx.issues);
    if (!map) return;
    const parsed = normalizeVirtualKey(map, entryPath, index, rules, ctx);

    if (parsed.key !== undefined) {
      const owner = keyOwners.get(parsed.key);
      if (owner !== undefined) {
        ctx.issues.push({ path: childPath(entryPath, 'key'), message: `duplicate key (the same as ${owner}.key)` });
      }
      keyOwners.set(parsed.key, owner ?? entryPath);
    }
    if (parsed.name !== undefined) {
      const owner = nameOwners.get(parsed.name);
      if (owner !== undefined) {
        ctx.issues.push({
          path: childPath(entryPath, 'name'),
          message: `duplicate name ${JSON.stringify(parsed.name)} (already used by ${owner})`,
        });
      }
      nameOwners.set(parsed.name, owner ?? entryPath);
    }
    if (parsed.key !== undefined && parsed.name !== undefined) keys.push(withoutUndefined(parsed as VirtualKeyConfig));
  });
  return keys;
}

function normalizeVirtualKey(
  map: RawMap,
  path: string,
  index: number,
  rules: KeyRules,
  ctx: Context,
): Partial<VirtualKeyConfig> {
  const { issues } = ctx;
  warnUnknownKeys(map, path, VIRTUAL_KEY_KEYS, ctx.warnings);
  rememberSecret(ctx, map.key);
  const key = requiredField(map, 'key', path, checkNonEmptyString, issues, { secret: true });
  if (key !== undefined && key === rules.masterKey) {
    issues.push({ path: childPath(path, 'key'), message: `must differ from ${rules.masterKeySource}` });
  }
  const name = isAbsent(map.name) ? `key-${index}` : optionalField(map, 'name', path, checkNonEmptyString, issues);
  const models = normalizeKeyModels(map.models, childPath(path, 'models'), rules.groupNames, ctx);

  const maxPriority = optionalField(map, 'max_priority', path, checkInteger, issues);
  const { minPriority, maxPriority: routerMax } = rules.router;
  if (maxPriority !== undefined && (maxPriority < minPriority || maxPriority > routerMax)) {
    issues.push({
      path: childPath(path, 'max_priority'),
      message: `must lie within [router_settings.min_priority ${minPriority}, router_settings.max_priority ${routerMax}], got ${maxPriority}`,
    });
  }
  const rpm = optionalField(map, 'rpm', path, checkPositiveInteger, issues);
  return { key, name, models, maxPriority, rpm };
}

function normalizeKeyModels(
  value: unknown,
  path: string,
  groupNames: Set<string>,
  ctx: Context,
): string[] | undefined {
  if (isAbsent(value)) return undefined;
  const list = checkList(value, path, ctx.issues);
  if (!list) return undefined;
  if (list.length === 0) {
    ctx.warnings.push({ path, message: 'an empty list allows no model at all; omit models to allow every model' });
  }
  const models: string[] = [];
  list.forEach((item, index) => {
    const itemPath = childPath(path, index);
    const name = checkNonEmptyString(item, itemPath, ctx.issues);
    if (name === undefined) return;
    // A name a wildcard entry serves (`gpt-4o` under `model_name: "*"`) is a model the key may be given.
    if (!groupNames.has(name) && ![...groupNames].some((p) => p.includes('*') && matchWildcard(p, name) !== undefined)) {
      const known = [...groupNames].map((n) => JSON.stringify(n)).join(', ') || 'none';
      ctx.issues.push({ path: itemPath, message: `unknown model ${JSON.stringify(name)}; model_list defines: ${known}` });
      return;
    }
    models.push(name);
  });
  return models;
}
