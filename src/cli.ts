/**
 * `triage [--config FILE] [--port N] [--host ADDR]`: the gateway on its embedded default config, or
 * on a LiteLLM-format config. LiteLLM's flags that mean nothing here are accepted with a warning.
 * Started by bin/triage.js (src/launcher.ts), which gives node the V8 flags of src/runtime-flags.ts.
 */
import { parseArgs } from 'node:util';
import { ConfigError, type LoadedConfig } from './core/config-types.js';
import { loadConfigFile } from './adapters/config-loader.js';
import { loadDefaultConfig } from './adapters/default-config.js';
import { createGateway, type GatewayOptions } from './gateway.js';
import { createLogDestination, exitAfterCrash } from './log-destination.js';

const USAGE = `Usage: triage [--config FILE] [--port N] [--host ADDR] [--allow-unenforced-auth]

  --config FILE   LiteLLM-format YAML config (default: the embedded config with two mock models)
  --port N        port to listen on (default 4000)
  --host ADDR     address to listen on (default 127.0.0.1; use 0.0.0.0 to serve other machines)
  --allow-unenforced-auth
                  start even when general_settings asks for auth Triage does not enforce
                  (enable_jwt_auth, custom_auth, allowed_routes, ...): a warning each instead of a refusal
  --help          this text

Environment: TRIAGE_MASTER_KEY (or LITELLM_MASTER_KEY) sets the master key when the config has none;
TRIAGE_LOG_LEVEL sets the log level (default info).`;

/** LiteLLM proxy flags that have no meaning for Triage: accepted, warned about, ignored. */
const IGNORED_FLAGS = ['num_workers', 'detailed_debug', 'debug', 'telemetry', 'run_gunicorn', 'use_queue'];

function fail(message: string, code = 2): never {
  process.stderr.write(`${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let parsed;
  try {
    parsed = parseArgs({
      options: {
        config: { type: 'string', short: 'c' },
        port: { type: 'string', short: 'p' },
        host: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
        'allow-unenforced-auth': { type: 'boolean' },
        ...Object.fromEntries(IGNORED_FLAGS.map((f) => [f, { type: 'string' as const }])),
      },
      strict: true,
      allowPositionals: false,
    });
  } catch (e) {
    fail(`${(e as Error).message}\n\n${USAGE}`);
  }
  const args = parsed.values as Record<string, string | boolean | undefined>;
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }
  for (const flag of IGNORED_FLAGS) if (args[flag] !== undefined) process.stderr.write(`warning: --${flag} is a LiteLLM option that Triage ignores\n`);

  const port = args.port === undefined ? 4000 : Number(args.port);
  if (!Number.isInteger(port) || port < 0 || port > 65535) fail(`--port: expected an integer from 0 to 65535, got ${JSON.stringify(args.port)}`);
  const host = typeof args.host === 'string' ? args.host : '127.0.0.1';

  let loaded: LoadedConfig;
  try {
    loaded =
      typeof args.config === 'string'
        ? loadConfigFile(args.config, undefined, { allowUnenforcedAuth: args['allow-unenforced-auth'] === true })
        : loadDefaultConfig();
  } catch (e) {
    if (e instanceof ConfigError) fail(`${args.config ?? 'default config'}: ${e.message}`, 1);
    throw e;
  }
  for (const w of loaded.warnings) process.stderr.write(`warning: ${w.path}: ${w.message}\n`);
  const { config } = loaded;
  if (config.general.masterKey === undefined && config.general.keys.length === 0) {
    process.stderr.write('warning: no master_key or keys configured: the gateway accepts requests from anyone who can reach it\n');
  }

  // The log on stdout through an asynchronous destination, flushed by gateway.close and on a crash.
  const logDestination = createLogDestination(1);
  let crashLog: { fatal(obj: object, msg: string): void } | undefined;
  process.on('uncaughtException', (e) => exitAfterCrash(e, crashLog, logDestination));
  const options: GatewayOptions = {
    config,
    logger: { level: process.env.TRIAGE_LOG_LEVEL ?? 'info' },
    logDestination,
  };
  if (config.router.redis) {
    const { createRedisStoreFactory } = await import('./adapters/redis-connection.js');
    const { leaseMs } = config.router.redis;
    const redis = createRedisStoreFactory(config.router.redis, leaseMs === undefined ? {} : { leaseMs });
    options.store = redis;
    // Listen only once the store answers, or the first requests would be refused 503 store_unavailable
    // by a gateway that just said it was listening. An unreachable Redis delays the start by at most
    // 5 s; the gateway then serves and fails closed (readiness 503) until Redis answers.
    await redis.whenReady(5000).catch((e: unknown) => {
      process.stderr.write(`warning: ${(e as Error).message}; starting anyway: requests get 503 store_unavailable until Redis answers\n`);
    });
  }
  const gateway = await createGateway(options);
  crashLog = gateway.app.log;
  // Signal handlers go in before the gateway says it listens: a SIGTERM right after start still drains.
  let signals = 0;
  const shutdown = (signal: string) => {
    signals += 1;
    if (signals > 1) {
      process.stderr.write(`${signal} again: exiting now\n`);
      process.exit(130);
    }
    process.stderr.write(`${signal}: draining (grace ${config.general.shutdownGraceMs} ms)\n`);
    gateway.close().then(
      () => process.exit(0),
      (e: unknown) => {
        process.stderr.write(`shutdown failed: ${String(e)}\n`);
        process.exit(1);
      },
    );
  };
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  const url = await gateway.listen(port, host);
  const models = gateway.router.listedModels;
  const patterns = (config.wildcards ?? []).map((g) => g.name);
  const wildcards = patterns.length > 0 ? `${models.length > 0 ? ', and ' : ''}any model matching ${patterns.join(', ')}` : '';
  // One write, so a reader that sees the URL also sees the rest.
  process.stdout.write(
    `Triage listening on ${url}\n` +
      `Models: ${models.join(', ')}${wildcards}\n` +
      `Try: curl ${url}/queue/chat/completions -H 'content-type: application/json' -d '{"model":"${models[0] ?? patterns[0]?.replace(/\*/g, 'gpt-4o-mini')}","messages":[{"role":"user","content":"hi"}],"priority":0}'\n`,
  );
}

main().catch((e: unknown) => fail(`triage: ${(e as Error)?.stack ?? String(e)}`, 1));
