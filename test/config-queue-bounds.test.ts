/** router_settings.max_queue_size_by_priority: read from YAML, and the bound an arrival finds full. */
import { describe, expect, it } from 'vitest';
import { fullBound } from '../src/machines/queue-bounds.js';
import { parseConfig } from '../src/adapters/config-loader.js';
import { ConfigError } from '../src/core/config-types.js';

const yaml = (bounds: string) => `model_list:
  - model_name: m
    litellm_params: { model: mock/m, mock_response: ok }
router_settings:
  max_queue_size_by_priority: ${bounds}
`;

describe('max_queue_size_by_priority', () => {
  it('reads priority thresholds and their bounds, narrowest last', () => {
    const { config } = parseConfig(yaml('{ "100": 1000, "10": 5000 }'));
    expect(config.router.maxQueueSizeByPriority).toEqual([
      { minPriority: 10, maxWaiting: 5000 },
      { minPriority: 100, maxWaiting: 1000 },
    ]);
    expect(parseConfig(yaml('{}')).config.router.maxQueueSizeByPriority).toEqual([]);
  });

  it('refuses to start on a bad key or bound, naming its path and value', () => {
    let error: unknown;
    try {
      parseConfig(yaml('{ "batch": 10, "5": -1, "7": "many" }'));
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(ConfigError);
    const messages = (error as ConfigError).issues.map((i) => `${i.path}: ${i.message}`);
    // Sorted: the path of a non-integer key sorts before the quoted integer ones.
    expect(messages.sort()).toEqual([
      expect.stringMatching(/^router_settings\.max_queue_size_by_priority\.batch: .*integer priority.*"batch"/),
      expect.stringMatching(/^router_settings\.max_queue_size_by_priority\["5"\]: .*non-negative integer.*-1/),
      expect.stringMatching(/^router_settings\.max_queue_size_by_priority\["7"\]: .*non-negative integer.*"many"/),
    ]);
    expect(() => parseConfig(yaml('[1, 2]'))).toThrow(/max_queue_size_by_priority: expected a map/);
  });

  it('an arrival finds the narrowest full bound it falls under', () => {
    const bounds = [
      { minPriority: 10, maxWaiting: 5 },
      { minPriority: 100, maxWaiting: 2 },
    ];
    const counts = new Map([
      [10, 5],
      [100, 2],
    ]);
    const count = (p: number) => counts.get(p) ?? 0;
    expect(fullBound(bounds, 5, count)).toBeUndefined();
    expect(fullBound(bounds, 50, count)).toEqual(bounds[0]);
    expect(fullBound(bounds, 100, count)).toEqual(bounds[1]);
    counts.set(10, 4);
    expect(fullBound(bounds, 50, count)).toBeUndefined();
    expect(fullBound(undefined, 100, count)).toBeUndefined();
  });
});
