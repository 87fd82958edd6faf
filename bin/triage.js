#!/usr/bin/env -S node --no-allocation-site-pretenuring
// The `triage` command (and `npm start`). Node starts with the V8 flags of src/runtime-flags.ts on its
// command line, given on the line above (test/launcher.test.ts checks that it matches the list), so
// the common case is one process. Run another way (`node bin/triage.js`), the launcher re-executes
// node with the flags.
import '../dist/src/launcher.js';
