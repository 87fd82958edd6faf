/** The config tests' one way to read a refusal. */
import { expect } from 'vitest';
import { ConfigError, type ConfigIssue } from '../../src/core/config-types.js';

/** The issues of the ConfigError that `load` throws (fails the test if it throws anything else, or nothing). */
export function issuesOf(load: () => unknown): ConfigIssue[] {
  try {
    load();
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    return (error as ConfigError).issues;
  }
  throw new Error('expected a ConfigError');
}
