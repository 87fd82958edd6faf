/**
 * Starts ONE redis-server for the whole test run on a free port of 127.0.0.1 (no persistence), and
 * hands its URL to tests: `inject('redisUrl')` and `process.env.TRIAGE_TEST_REDIS_URL`.
 */
import type { TestProject } from 'vitest/node';
import { startRedisServer, type RedisServer } from './redis.js';

declare module 'vitest' {
  export interface ProvidedContext {
    redisUrl: string;
  }
}

let server: RedisServer | undefined;

export default async function setup(project: TestProject): Promise<() => Promise<void>> {
  server = await startRedisServer();
  process.env.TRIAGE_TEST_REDIS_URL = server.url;
  project.provide('redisUrl', server.url);
  return async () => {
    await server?.stop();
    server = undefined;
  };
}
