/**
 * The store's Lua library is lib.lua with its includes (src/adapters/redis/includes/), each once, in the
 * order lib.lua declares; a missing, repeated or cyclic include fails with an error naming it.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { assembleLua } from '../src/adapters/lua-includes.js';
import { scriptDirectory, scriptLibrary } from '../src/adapters/redis-library.js';

const files = (texts: Record<string, string>) => (name: string) => texts[name];

describe('assembleLua', () => {
  it('puts each include where its line stands, nested includes where theirs stand', () => {
    const root = 'header\n--- @include "a"\nmiddle\n--- @include "b"\ntail\n';
    const { source, includes } = assembleLua('root.lua', root, files({ a: 'A1\n--- @include "c"\nA2\n', b: 'B\n', c: 'C\n' }));
    expect(source).toBe('header\nA1\nC\nA2\nmiddle\nB\ntail\n');
    expect(includes).toEqual(['a', 'c', 'b']);
  });

  it('fails on a missing include, naming it and who included it', () => {
    expect(() => assembleLua('root.lua', '--- @include "a"\n--- @include "gone"\n', files({ a: 'A' }))).toThrow(
      'Lua include "gone" (included by root.lua) not found',
    );
  });

  it('fails on an include included twice, naming both places', () => {
    expect(() => assembleLua('root.lua', '--- @include "a"\n--- @include "b"\n', files({ a: 'A', b: '--- @include "a"' }))).toThrow(
      'Lua include "a" is included twice (by root.lua and by b)',
    );
  });

  it('fails on a cycle, naming it', () => {
    expect(() => assembleLua('root.lua', '--- @include "a"\n', files({ a: '--- @include "b"', b: '--- @include "a"' }))).toThrow(
      'Lua includes form a cycle: root.lua -> a -> b -> a',
    );
  });

  it('fails on an include line it cannot read', () => {
    expect(() => assembleLua('root.lua', "--- @include 'a'\n", files({ a: 'A' }))).toThrow('root.lua: malformed Lua include line');
  });
});

describe("the store's library", () => {
  const dir = scriptDirectory();
  const lib = readFileSync(join(dir, 'lib.lua'), 'utf8');
  const declared = [...lib.matchAll(/^--- @include "([a-z0-9-]+)"$/gm)].map((m) => m[1]!);

  it('is lib.lua with every file of includes/ in the declared order, each once', () => {
    const onDisk = readdirSync(join(dir, 'includes')).map((f) => f.replace(/\.lua$/, ''));
    expect([...declared].sort()).toEqual(onDisk.sort());
    expect(new Set(declared).size).toBe(declared.length);
    const library = scriptLibrary();
    expect(library.includes).toEqual(declared);

    // Each include's text appears once, after the one declared before it; lib.lua's header comes first.
    const source = library.source;
    let at = source.indexOf(lib.slice(0, lib.indexOf(']]') + 2));
    expect(at).toBeGreaterThan(0);
    for (const name of declared) {
      const text = readFileSync(join(dir, 'includes', `${name}.lua`), 'utf8').replace(/\n$/, '');
      const found = source.indexOf(text);
      expect(found, name).toBeGreaterThan(at);
      expect(source.indexOf(text, found + 1), name).toBe(-1);
      at = found;
    }
    expect(source).not.toMatch(/^--- @include/m);
  });
});
