/** Store factories for the router under test: in memory (as the router builds it) and with a recorder around any factory. */
import type { StoreFactory } from '../src/router.js';
import { LoggingStore, type StoreRecord } from './store-log.js';

/** The in-memory store, exactly as the router builds it. */
export { memoryStoreFactory } from '../src/router.js';

/** Wraps every store the factory builds in a recorder writing to `records`. */
export function recording(factory: StoreFactory, records: StoreRecord[]): StoreFactory {
  return (model, deployments, config) => new LoggingStore(factory(model, deployments, config), model, records);
}
