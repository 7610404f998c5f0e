/**
 * Builds the gateway's int8 kernel (lib/native/int8_gateway.c) as a Node-API addon with the
 * system's C compiler, against the headers of the Node.js that runs the build:
 * `dist/native/int8_gateway.node`. Node-API is ABI-stable, so one build serves every Node.js
 * version from 20 on; it is compiled on the machine that runs it, never shipped prebuilt.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isFresh } from '../build/fresh';
import { MeshLlmError } from '../llm/errors';
import { packageRoot } from '../llm/resolve';

/** The C compiler: $CC, else cc. */
export function cCompiler(): string {
  return process.env.CC || 'cc';
}

export function kernelSource(): string {
  return path.join(packageRoot(), 'lib', 'native', 'int8_gateway.c');
}

export function kernelAddon(): string {
  return path.join(packageRoot(), 'dist', 'native', 'int8_gateway.node');
}

/** The folder with node_api.h of the running Node.js (official builds and Debian's both ship it). */
export function nodeIncludeDir(): string {
  return path.join(path.dirname(path.dirname(process.execPath)), 'include', 'node');
}

/** Compiles the addon unless it is newer than its source and was built with the same command; returns whether it compiled. */
export function buildKernel(log: (line: string) => void = () => undefined): boolean {
  const include = nodeIncludeDir();
  if (!fs.existsSync(path.join(include, 'node_api.h'))) throw new MeshLlmError(`native kernel: ${path.join(include, 'node_api.h')} not found (the headers of this Node.js); install them (Debian: libnode-dev) or use a Node.js build that ships include/node`);
  const out = kernelAddon();
  const args = ['-std=c11', '-O2', '-Wall', '-Wextra', '-ffp-contract=off', '-fPIC', '-shared', '-I', include, '-o', out, kernelSource(), '-lm', ...(process.platform === 'darwin' ? ['-undefined', 'dynamic_lookup'] : [])];
  const command = [cCompiler(), ...args].join(' ');
  const stamp = `${out}.cmd`;
  if (fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === command && isFresh([out], [kernelSource()])) return false;
  fs.mkdirSync(path.dirname(out), { recursive: true });
  log(`native kernel: compiling ${path.basename(out)} (${cCompiler()})`);
  const r = spawnSync(cCompiler(), args, { encoding: 'utf8' });
  if (r.status !== 0) throw new MeshLlmError(`native kernel: ${cCompiler()} failed building ${path.basename(out)}:\n${r.stderr || r.error?.message}`);
  if (r.stderr.trim()) log(r.stderr.trim());
  fs.writeFileSync(stamp, command);
  return true;
}
