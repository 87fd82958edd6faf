/** The `triage` command as users run it: start-up, config errors, LiteLLM flags, graceful shutdown. */
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import OpenAI from 'openai';
import { afterEach, describe, expect, it } from 'vitest';
import { runCli, type CliProcess } from './support/cli-process.js';
import { waitFor } from './support/gateway.js';

const children: CliProcess[] = [];
afterEach(() => {
  for (const c of children.splice(0)) if (c.child.exitCode === null) c.child.kill('SIGKILL');
});

function cli(args: string[], env?: NodeJS.ProcessEnv): CliProcess {
  const c = runCli(args, env);
  children.push(c);
  return c;
}

function configFile(yaml: string): string {
  const dir = mkdtempSync(join(tmpdir(), 'triage-cli-'));
  const path = join(dir, 'config.yaml');
  writeFileSync(path, yaml);
  return path;
}

describe('triage CLI', () => {
  it('refuses to start on a broken config, naming the path and value', async () => {
    const path = configFile(`model_list:\n  - model_name: m\n    litellm_params:\n      model: mock/m\n      mock_response: hi\n      rpm: ten\n`);
    const c = cli(['--config', path, '--port', '0']);
    expect(await c.exit).toBe(1);
    expect(c.stderr()).toContain('model_list[0].litellm_params.rpm');
    expect(c.stderr()).toContain('"ten"');
  });

  it('refuses a config asking for auth it does not enforce, unless started with --allow-unenforced-auth', async () => {
    const path = configFile(`model_list:\n  - model_name: m\n    litellm_params: { model: mock/m, mock_response: hi }\ngeneral_settings:\n  master_key: sk-cli-master\n  enable_jwt_auth: true\n`);
    const refused = cli(['--config', path, '--port', '0']);
    expect(await refused.exit).toBe(1);
    expect(refused.stderr()).toContain('general_settings.enable_jwt_auth');
    expect(refused.stderr()).toContain('--allow-unenforced-auth');
    const allowed = cli(['--config', path, '--port', '0', '--allow-unenforced-auth']);
    const url = await allowed.url;
    expect(allowed.stderr()).toMatch(/warning: general_settings\.enable_jwt_auth: .*runs without it/);
    // The master key it does enforce still guards the gateway.
    const res = await fetch(`${url}/v1/models`);
    expect(res.status).toBe(401);
    allowed.child.kill('SIGTERM');
    expect(await allowed.exit).toBe(0);
  });

  it('serves a wildcard-only config, saying which names it answers', async () => {
    const path = configFile(`model_list:\n  - model_name: "*"\n    litellm_params: { model: "mock/*", mock_response: from the wildcard }\n`);
    const c = cli(['--config', path, '--port', '0']);
    const url = await c.url;
    expect(c.stdout()).toContain('Models: any model matching *');
    expect(c.stdout()).toContain('"model":"gpt-4o-mini"');
    const client = new OpenAI({ apiKey: 'none', baseURL: url, maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'whatever-model', messages: [{ role: 'user', content: 'hi' }] });
    expect(r.choices[0].message.content).toBe('from the wildcard');
    c.child.kill('SIGTERM');
    expect(await c.exit).toBe(0);
  });

  it('exits 2 with usage on an unknown flag, and warns about LiteLLM flags it ignores', async () => {
    const bad = cli(['--bogus']);
    expect(await bad.exit).toBe(2);
    expect(bad.stderr()).toContain('Usage: triage');
    const c = cli(['--port', '0', '--num_workers', '4']);
    await c.url;
    expect(c.stderr()).toContain('--num_workers is a LiteLLM option that Triage ignores');
    c.child.kill('SIGTERM');
    expect(await c.exit).toBe(0);
  });

  it('serves the embedded default config and prints its URL and models', async () => {
    const c = cli(['--port', '0']);
    const url = await c.url;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    expect(c.stdout()).toContain('Models: triage-mock, triage-mock-limited, triage-mock-embedding\n');
    expect(c.stderr()).toContain('no master_key');
    const client = new OpenAI({ apiKey: 'none', baseURL: url, maxRetries: 0 });
    const r = await client.chat.completions.create({ model: 'triage-mock', messages: [{ role: 'user', content: 'hi' }], priority: 0 } as never);
    expect((r as OpenAI.ChatCompletion).choices[0].message.content).toBe('Hello from Triage!');
    const e = await client.embeddings.create({ model: 'triage-mock-embedding', input: 'hi', encoding_format: 'float' });
    expect(e.data[0].embedding).toHaveLength(8);
    c.child.kill('SIGINT');
    expect(await c.exit).toBe(0);
  });

  it('on SIGTERM lets dispatched calls finish and answers waiting ones 503', async () => {
    const path = configFile(
      `model_list:\n  - model_name: slow\n    litellm_params:\n      model: mock/slow\n      mock_response: done\n      mock_delay: 0.8\n      max_parallel_requests: 1\ngeneral_settings:\n  shutdown_grace_seconds: 10\n`,
    );
    const c = cli(['--config', path, '--port', '0']);
    const url = await c.url;
    const send = () =>
      fetch(`${url}/queue/chat/completions`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ model: 'slow', messages: [{ role: 'user', content: 'x' }] }) });
    const dispatched = send();
    await waitFor(async () => {
      const s = (await (await fetch(`${url}/queue/status`)).json()) as { models: Array<{ inFlight: number }> };
      return s.models[0].inFlight === 1 ? true : undefined;
    }, 'the first call to be dispatched');
    const waiting = [send(), send()];
    await waitFor(async () => {
      const s = (await (await fetch(`${url}/queue/status`)).json()) as { models: Array<{ waiting: number }> };
      return s.models[0].waiting === 2 ? true : undefined;
    }, 'two waiters');
    c.child.kill('SIGTERM');
    const [first, ...rest] = await Promise.all([dispatched, ...waiting]);
    expect(first.status).toBe(200);
    expect(((await first.json()) as { choices: Array<{ message: { content: string } }> }).choices[0].message.content).toBe('done');
    for (const r of rest) {
      expect(r.status).toBe(503);
      expect(((await r.json()) as { error: { code: string } }).error.code).toBe('shutting_down');
    }
    expect(await c.exit).toBe(0);
  });
});
