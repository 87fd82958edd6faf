/**
 * The LiteLLM config features read by the config-*.ts modules, each on its edge cases: YAML 1.1
 * scalars, includes, environment_variables, credentials, aliases, litellm_settings, unenforced auth,
 * and where a missing `os.environ/` variable stops the start. The corpus test covers whole files.
 */
import { mkdtempSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { applyCredentials } from '../src/adapters/config-credentials.js';
import { applyEnvironmentVariables } from '../src/adapters/config-env.js';
import { loadConfigFile, parseConfig } from '../src/adapters/config-loader.js';
import type { ConfigIssue } from '../src/core/config-types.js';
import { issuesOf } from './support/config-issues.js';
import { parseYaml11 } from '../src/adapters/config-yaml.js';
import { checkModelAllowed, type Caller } from '../src/server/auth.js';

const mock = (name: string) => `  - { model_name: ${JSON.stringify(name)}, litellm_params: { model: mock/x, mock_response: hi } }\n`;

describe('YAML as PyYAML reads it', () => {
  it('reads YAML 1.1 numbers and booleans, but y and n stay strings', () => {
    const { raw } = parseYaml11('a: 20_000\nb: 0o17\nc: 017\nd: yes\ne: Off\nf: y\ng: n\nh: 1_000.5\n', '(root)');
    // PyYAML: 0o17 is not a YAML 1.1 octal (a string); 017 is octal 15.
    expect(raw).toEqual({ a: 20000, b: '0o17', c: 15, d: true, e: false, f: 'y', g: 'n', h: 1000.5 });
  });

  it('keeps the last of duplicate keys at any depth, with a warning per duplicate naming its line', () => {
    const { raw, warnings } = parseYaml11('a: 1\nm: { x: 1, x: [ { y: 1, y: 2 } ] }\na: 2\n', 'c.yaml');
    expect(raw).toEqual({ a: 2, m: { x: [{ y: 2 }] } });
    expect(warnings.map((w) => [w.path, w.message.match(/\(line \d+ of c\.yaml\)/)?.[0]])).toEqual([
      ['m.x', '(line 2 of c.yaml)'],
      ['m.x[0].y', '(line 2 of c.yaml)'],
      ['a', '(line 3 of c.yaml)'],
    ]);
  });
});

describe('include', () => {
  function files(tree: Record<string, string>): string {
    const dir = mkdtempSync(join(tmpdir(), 'triage-include-'));
    for (const [name, text] of Object.entries(tree)) {
      mkdirSync(join(dir, name, '..'), { recursive: true });
      writeFileSync(join(dir, name), text);
    }
    return dir;
  }

  it('takes one file or a list, relative to the including file, appending model_list in order', () => {
    const dir = files({
      'conf/main.yaml': `include: [a.yaml, sub/b.yaml]\nmodel_list:\n${mock('main')}`,
      'conf/a.yaml': `model_list:\n${mock('a')}`,
      'conf/sub/b.yaml': `model_list:\n${mock('b')}router_settings: { num_retries: 7 }\n`,
    });
    const { config, warnings } = loadConfigFile(join(dir, 'conf/main.yaml'), {});
    expect(config.modelGroups.map((g) => g.name)).toEqual(['main', 'a', 'b']);
    expect(config.router.numRetries).toBe(7);
    expect(warnings).toEqual([]);
  });

  it('refuses a file that is not YAML or not a map, naming it', () => {
    const dir = files({ 'main.yaml': `include: [bad.yaml, list.yaml]\nmodel_list:\n${mock('m')}`, 'bad.yaml': 'a: [1\n', 'list.yaml': '- 1\n' });
    const issues = issuesOf(() => loadConfigFile(join(dir, 'main.yaml'), {}));
    expect(issues.map((i) => i.path)).toEqual([join(dir, 'bad.yaml'), 'include[1]']);
    expect(issues[0].message).toMatch(/^YAML syntax error at line/);
    expect(issues[1].message).toMatch(/must hold a map of config sections, got a list of 1 item/);
  });
});

describe('environment_variables', () => {
  it('sets each variable as a string before os.environ/ is resolved, replacing (with a warning) one already set', () => {
    const env: NodeJS.ProcessEnv = { EXISTING: 'old', SOURCE: 'copied' };
    const { config, warnings } = parseConfig(
      `environment_variables: { KEY_FROM_FILE: sk-file-key, EXISTING: new, PORT: 6379, FLAG: true, COPY: os.environ/SOURCE, GONE: os.environ/UNSET }
model_list:
  - model_name: m
    litellm_params: { model: openai/gpt-4o, api_key: os.environ/KEY_FROM_FILE }
`,
      { env },
    );
    expect(config.modelGroups[0].deployments[0].apiKey).toBe('sk-file-key');
    expect(env).toEqual({ EXISTING: 'new', SOURCE: 'copied', KEY_FROM_FILE: 'sk-file-key', PORT: '6379', FLAG: 'True', COPY: 'copied' });
    expect(warnings.map((w) => [w.path, w.message])).toEqual([
      ['environment_variables.EXISTING', 'replaces the value EXISTING already had in the environment (as LiteLLM does)'],
      ['environment_variables.GONE', 'UNSET is not set; GONE is left as it is'],
    ]);
  });

  it('refuses a value that is a map or list', () => {
    const issues: ConfigIssue[] = [];
    applyEnvironmentVariables({ A: { b: 1 } }, {}, issues, []);
    expect(issues).toEqual([{ path: 'environment_variables.A', message: 'expected a string, number or boolean, got a map with keys "b"' }]);
  });
});

describe('credential_list', () => {
  it("fills a deployment's missing params from the named credential; the deployment's own values win", () => {
    const issues: ConfigIssue[] = [];
    const root = applyCredentials(
      {
        credential_list: [{ credential_name: 'c', credential_values: { api_key: 'k', api_base: 'https://cred/v1', api_version: 'v1' } }],
        model_list: [{ model_name: 'm', litellm_params: { model: 'azure/x', litellm_credential_name: 'c', api_base: 'https://own/v1' } }],
      },
      issues,
    );
    expect(issues).toEqual([]);
    expect(root.model_list).toEqual([{ model_name: 'm', litellm_params: { model: 'azure/x', api_key: 'k', api_base: 'https://own/v1', api_version: 'v1' } }]);
  });

  it('reports a malformed or duplicate credential entry by path', () => {
    const issues = issuesOf(() =>
      parseConfig(`credential_list:\n  - { credential_name: a, credential_values: { api_key: k } }\n  - { credential_name: a, credential_values: {} }\n  - { credential_values: {} }\nmodel_list:\n${mock('m')}`, { env: {} }),
    );
    expect(issues.map((i) => `${i.path}: ${i.message}`)).toEqual([
      'credential_list[1].credential_name: duplicate credential name "a"',
      'credential_list[2].credential_name: is required (a non-empty string)',
    ]);
  });
});

describe('model_group_alias', () => {
  it('refuses an alias naming no group, and warns when an alias is also a model_name', () => {
    const issues = issuesOf(() => parseConfig(`model_list:\n${mock('m')}router_settings:\n  model_group_alias: { a: nope }\n`, { env: {} }));
    expect(issues).toEqual([{ path: 'router_settings.model_group_alias.a', message: 'names model group "nope", which model_list does not define (it defines: "m")' }]);
    const { config, warnings } = parseConfig(`model_list:\n${mock('m')}${mock('n')}router_settings:\n  model_group_alias: { m: n }\n`, { env: {} });
    expect(config.aliases).toBeUndefined();
    expect(warnings[0]).toEqual({ path: 'router_settings.model_group_alias.m', message: '"m" is also a model_name; the model_name\'s own deployments answer it, not "n"' });
  });

  it('lets a virtual key list an alias, and a wildcard pattern that allows every model it matches', () => {
    const { config } = parseConfig(
      `model_list:\n${mock('m')}${mock('team/*')}router_settings:\n  model_group_alias: { a: m }\ngeneral_settings:\n  keys: [{ key: sk-key-one, models: [a, "team/*"] }]\n`,
      { env: {} },
    );
    expect(config.general.keys[0].models).toEqual(['a', 'team/*']);
    const caller: Caller = { kind: 'key', name: 'k', models: ['a', 'team/*'] };
    expect(() => checkModelAllowed(caller, 'a')).not.toThrow();
    expect(() => checkModelAllowed(caller, 'team/x')).not.toThrow();
    expect(() => checkModelAllowed(caller, 'm')).toThrow(/may not use the model 'm'/);
  });

  it("accepts in a key's models a name only a wildcard serves, and still refuses one nothing serves", () => {
    const ok = parseConfig(`model_list:\n${mock('team/*')}general_settings:\n  keys: [{ key: sk-key-one, models: [team/alpha] }]\n`, { env: {} });
    expect(ok.config.general.keys[0].models).toEqual(['team/alpha']);
    expect(issuesOf(() => parseConfig(`model_list:\n${mock('team/*')}general_settings:\n  keys: [{ key: sk-key-one, models: [other] }]\n`, { env: {} }))).toEqual([
      { path: 'general_settings.keys[0].models[0]', message: 'unknown model "other"; model_list defines: "team/*"' },
    ]);
  });
});

describe('litellm_settings and router_settings', () => {
  it('router_settings wins over litellm_settings for request_timeout and num_retries', () => {
    const { config } = parseConfig(`model_list:\n${mock('m')}litellm_settings: { request_timeout: 9, num_retries: 8 }\nrouter_settings: { num_retries: 1 }\n`, { env: {} });
    expect(config.router).toMatchObject({ requestTimeoutMs: 9000, numRetries: 1 });
  });

  it('gives default_max_parallel_requests to the deployments that set no max_parallel_requests, rpm or tpm (as LiteLLM)', () => {
    const { config } = parseConfig(
      `model_list:
  - { model_name: a, litellm_params: { model: mock/x, mock_response: hi } }
  - { model_name: b, litellm_params: { model: mock/x, mock_response: hi, rpm: 5 } }
  - { model_name: c, max_parallel_requests: 2, litellm_params: { model: mock/x, mock_response: hi } }
  - { model_name: "*", litellm_params: { model: "mock/*", mock_response: hi } }
router_settings: { default_max_parallel_requests: 7 }
`,
      { env: {} },
    );
    expect([...config.modelGroups, ...(config.wildcards ?? [])].map((g) => [g.name, g.deployments[0].limits])).toEqual([
      ['a', { maxParallelRequests: 7 }],
      ['b', { rpm: 5 }],
      ['c', { maxParallelRequests: 2 }],
      ['*', { maxParallelRequests: 7 }],
    ]);
  });

  it('checks max_wildcard_models', () => {
    expect(parseConfig(`model_list:\n${mock('*')}router_settings: { max_wildcard_models: 5 }\n`, { env: {} }).config.router.maxWildcardModels).toBe(5);
    expect(issuesOf(() => parseConfig(`model_list:\n${mock('*')}router_settings: { max_wildcard_models: 0 }\n`, { env: {} }))).toEqual([
      { path: 'router_settings.max_wildcard_models', message: 'expected a positive integer, got 0' },
    ]);
  });
});

describe('unset os.environ/ references', () => {
  it('stop the start where Triage reads the value, and only warn where it does not', () => {
    const yaml = `model_list:
  - model_name: m
    litellm_params: { model: openai/gpt-4o, api_key: os.environ/KEY, organization: os.environ/ORG }
router_settings: { redis_url: os.environ/REDIS_URL, fallbacks: os.environ/FALLBACKS }
`;
    const issues = issuesOf(() => parseConfig(yaml, { env: {} }));
    expect(issues).toEqual([
      { path: 'model_list[0].litellm_params.api_key', message: 'environment variable KEY is not set' },
      { path: 'router_settings.redis_url', message: 'environment variable REDIS_URL is not set' },
    ]);
    const { warnings } = parseConfig(yaml, { env: { KEY: 'sk-k', REDIS_URL: 'redis://r:6379' } });
    expect(warnings.filter((w) => /is not set/.test(w.message)).map((w) => w.path)).toEqual(['model_list[0].litellm_params.organization', 'router_settings.fallbacks']);
  });

  it('in a deployment that is skipped only warn', () => {
    const { warnings } = parseConfig(`model_list:\n${mock('m')}  - { model_name: b, litellm_params: { model: bedrock/x, api_key: os.environ/AWS } }\n`, { env: {} });
    expect(warnings.map((w) => w.path)).toEqual(['model_list[1]', 'model_list[1].litellm_params.api_key']);
  });
});
