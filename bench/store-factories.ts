/** Store factories for the router under test: in memory (as the router builds it) and with a recorder around any factory. */
import { MemoryStore, type MemoryStoreOptions } from '../src/machines/memory-store.js';
import type { StoreFactory } from '../src/router.js';
import { LoggingStore, type StoreRecord } from './store-log.js';

/** The in-memory store with the options the router gives it. */
export const memoryStoreFactory: StoreFactory = (model, deployments, config) => {
  const options: MemoryStoreOptions = {
    model,
    deployments,
    maxQueueSize: config.router.maxQueueSize,
    cooldown: { cooldownTimeMs: config.router.cooldownTimeMs, allowedFails: config.router.allowedFails },
  };
  if (config.router.priorityAgingMs !== undefined) options.priorityAgingMs = config.router.priorityAgingMs;
  return new MemoryStore(options);
};

/** Wraps every store the factory builds in a recorder writing to `records`. */
export function recording(factory: StoreFactory, records: StoreRecord[]): StoreFactory {
  return (model, deployments, config) => new LoggingStore(factory(model, deployments, config), model, records);
}
