/**
 * Resolves `--- @include "name"` lines in the store's Lua (as BullMQ includes its includes/): each such
 * line is replaced by that include's text, in place, so the order of the lines is the order of
 * definition (a Lua local is visible only to code defined after it). Every include goes in once, in one
 * place: a missing, repeated or cyclic include is an error naming it, not a library that fails in Redis.
 */

/** The whole line, nothing else on it: `--- @include "waiters-grants"`. */
const DIRECTIVE = /^--- @include "([a-z0-9-]+)"$/;
const LOOKS_LIKE_DIRECTIVE = /^\s*---?\s*@include\b/;

export interface AssembledLua {
  /** The root's text with every include line replaced by its include. */
  readonly source: string;
  /** The includes in the order they went in (each once). */
  readonly includes: readonly string[];
}

/**
 * Assembles `root` (named `rootName` in errors): `read(name)` gives an include's text, or undefined when
 * there is none. Includes may include others (resolved where they stand).
 */
export function assembleLua(rootName: string, root: string, read: (name: string) => string | undefined): AssembledLua {
  const includes: string[] = [];
  const includedBy = new Map<string, string>();

  const expand = (name: string, text: string, chain: readonly string[]): string =>
    text
      .split('\n')
      .map((line) => {
        const m = DIRECTIVE.exec(line);
        if (m === null) {
          if (LOOKS_LIKE_DIRECTIVE.test(line)) throw new Error(`${name}: malformed Lua include line ${JSON.stringify(line)} (expected --- @include "name")`);
          return line;
        }
        const include = m[1]!;
        if (chain.includes(include)) throw new Error(`Lua includes form a cycle: ${[...chain, include].join(' -> ')}`);
        const earlier = includedBy.get(include);
        if (earlier !== undefined) throw new Error(`Lua include "${include}" is included twice (by ${earlier} and by ${name}): each include goes in once`);
        const body = read(include);
        if (body === undefined) throw new Error(`Lua include "${include}" (included by ${name}) not found`);
        includedBy.set(include, name);
        includes.push(include);
        return expand(include, body.replace(/\n$/, ''), [...chain, include]);
      })
      .join('\n');

  return { source: expand(rootName, root, [rootName]), includes };
}
