/**
 * Build step after tsc: the Node-RED editor files (nodes/*.html) go beside the compiled
 * nodes in dist/nodes/, and the shipped flow becomes the palette module's example.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { packageRoot } from '../lib/llm/resolve';

const root = packageRoot();
const nodesOut = path.join(root, 'dist', 'nodes');
fs.mkdirSync(nodesOut, { recursive: true });
for (const f of fs.readdirSync(path.join(root, 'nodes'))) {
  if (f.endsWith('.html')) fs.copyFileSync(path.join(root, 'nodes', f), path.join(nodesOut, f));
}
fs.mkdirSync(path.join(root, 'examples'), { recursive: true });
fs.copyFileSync(path.join(root, 'flows', 'mesh-llm.json'), path.join(root, 'examples', 'mesh-llm.json'));
