/**
 * Build step after tsc: assembles the WebAssembly kernels (lib/llm/wasm/*.wat, readable text)
 * into binaries beside the compiled code (dist/lib/llm/wasm/*.wasm), where lib/llm/kernels.ts
 * loads them. Uses the `wabt` devDependency (wat2wasm compiled to JavaScript). Without it the
 * step only warns: the engine then runs its JavaScript kernels. A binary newer than its text
 * (and than this assembler) is left alone.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isFresh } from '../../build/fresh';
import { packageRoot } from '../resolve';

async function main(): Promise<void> {
  const sourceDir = path.join(packageRoot(), 'lib', 'llm', 'wasm');
  const binary = (file: string) => path.join(__dirname, file.replace(/\.wat$/, '.wasm'));
  // a binary newer than its text and than this assembler is current
  const stale = fs.readdirSync(sourceDir).filter((f) => f.endsWith('.wat') && !isFresh([binary(f)], [path.join(sourceDir, f), __filename]));
  if (stale.length === 0) return;
  let wabt: typeof import('wabt');
  try {
    wabt = require('wabt') as typeof import('wabt');
  } catch {
    process.stderr.write('assemble: the wabt package is not installed; the engine will use its JavaScript kernels\n');
    return;
  }
  const tools = await wabt();
  for (const file of stale) {
    const text = fs.readFileSync(path.join(sourceDir, file), 'utf8');
    const module = tools.parseWat(file, text, { simd: true });
    try {
      module.validate();
      const { buffer } = module.toBinary({ log: false, write_debug_names: true });
      fs.writeFileSync(binary(file), buffer);
    } finally {
      module.destroy();
    }
  }
}

main().catch((e: unknown) => {
  process.stderr.write(`assemble: ${e instanceof Error ? e.message : String(e)}\n`);
  process.exit(1);
});
