/**
 * Build step after tsc: the Node-RED editor files (nodes/*.html) go beside the compiled
 * nodes in dist/nodes/, and the shipped flow becomes the palette module's example. Files
 * already copied and newer than their sources are left alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { copyIfStale } from '../lib/build/fresh';
import { packageRoot } from '../lib/llm/resolve';

const root = packageRoot();
for (const f of fs.readdirSync(path.join(root, 'nodes'))) {
  if (f.endsWith('.html')) copyIfStale(path.join(root, 'nodes', f), path.join(root, 'dist', 'nodes', f));
}
copyIfStale(path.join(root, 'flows', 'mesh-llm.json'), path.join(root, 'examples', 'mesh-llm.json'));
copyIfStale(path.join(root, 'flows', 'agentic.json'), path.join(root, 'examples', 'agentic.json'));
