/** The progress display: one line per scenario step on stderr, with the time since the run began. */

const started = performance.now();

export function elapsedSeconds(): number {
  return (performance.now() - started) / 1000;
}

export function step(scenario: string, message: string): void {
  process.stderr.write(`[${elapsedSeconds().toFixed(1).padStart(6)}s] ${scenario}: ${message}\n`);
}
