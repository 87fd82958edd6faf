/**
 * Writes the statecharts the debugger draws as static SVG files, for docs:
 *
 *   npm run build && node dist/src/export-statecharts.js docs/statecharts
 *
 * One file per machine (`request.svg`, `scheduler.svg`), drawn from the machine definitions
 * themselves, so the docs never drift from the code. The directory defaults to `docs/statecharts`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { DEBUG_MACHINES, renderMachineSvg } from './server/debug/routes.js';

export async function exportStatecharts(dir: string): Promise<string[]> {
  const out = resolve(dir);
  await mkdir(out, { recursive: true });
  const written: string[] = [];
  for (const m of DEBUG_MACHINES) {
    const file = join(out, `${m.id}.svg`);
    await writeFile(file, await renderMachineSvg(m.id)!, 'utf8');
    written.push(file);
  }
  return written;
}

const invokedDirectly = process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href;
if (invokedDirectly) {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h') || args.length > 1) {
    console.log('usage: node dist/src/export-statecharts.js [directory]   (default: docs/statecharts)');
    process.exit(args.length > 1 ? 2 : 0);
  }
  exportStatecharts(args[0] ?? 'docs/statecharts').then(
    (files) => {
      for (const f of files) console.log(`wrote ${f}`);
    },
    (e: unknown) => {
      console.error(`export-statecharts: ${String((e as Error)?.message ?? e)}`);
      process.exit(1);
    },
  );
}
