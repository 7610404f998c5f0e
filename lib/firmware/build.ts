/**
 * Builds the firmware's host targets with the system's C++ compiler: the firmware core
 * (firmware/core, no hardware calls) linked with the POSIX layer (firmware/host) gives the
 * native head node `dist/firmware/mesh-llm-node`; linked with firmware/test/head_check.cpp it
 * gives `dist/firmware/head-check`, which the tests compare with the TypeScript head step; with
 * firmware/test/link_check.cpp and mbedTLS it gives `dist/firmware/link-check`, which the tests
 * feed the head-link bodies and radio frames TypeScript writes.
 */
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { isFresh } from '../build/fresh';
import { packageRoot } from '../llm/resolve';
import { MeshLlmError } from '../llm/errors';

export interface FirmwareTarget {
  name: string;
  sources: string[];
  /** Linker arguments after the sources (libraries). */
  libs: string[];
  /** Include folders beyond firmware/core and the generated headers. */
  includes?: string[];
  /** Preprocessor definitions (-D). */
  defines?: string[];
}

/** Core sources that need mbedTLS (AES-CMAC): only the targets that use the radio frame link them. */
const MBEDTLS_SOURCES = ['radio_frame.cpp', 'radio_node.cpp'];
/** The Debian package with the mbedTLS headers and libraries. */
export const MBEDTLS_PACKAGE = 'libmbedtls-dev';

/** Compiler flags: strict IEEE float (no contraction into FMA, no fast-math), so the host build computes what the TypeScript step computes. */
export const CXXFLAGS = ['-std=c++17', '-O2', '-Wall', '-Wextra', '-ffp-contract=off', '-fno-fast-math'];

function cppFiles(dir: string): string[] {
  if (!fs.existsSync(dir)) return [];
  return fs.readdirSync(dir).filter((f) => f.endsWith('.cpp')).sort().map((f) => path.join(dir, f));
}

export function firmwareDir(): string {
  return path.join(packageRoot(), 'firmware');
}

export function firmwareOutDir(): string {
  return path.join(packageRoot(), 'dist', 'firmware');
}

/** The targets this machine can build (link-check only where the mbedTLS headers are installed). */
export function firmwareTargets(): FirmwareTarget[] {
  const fw = firmwareDir();
  const core = cppFiles(path.join(fw, 'core'));
  const withoutRadio = core.filter((f) => !MBEDTLS_SOURCES.includes(path.basename(f)));
  const targets: FirmwareTarget[] = [
    { name: 'mesh-llm-node', sources: [...withoutRadio, ...cppFiles(path.join(fw, 'host'))], libs: [] },
    { name: 'head-check', sources: [...withoutRadio, path.join(fw, 'test', 'head_check.cpp')], libs: [] },
    // the head step as a pipe, bit-exact and with float32 accumulation (the S3's FPU): bench/firmware-numerics.ts
    { name: 'head-serve', sources: [...withoutRadio, path.join(fw, 'test', 'head_serve.cpp')], libs: [] },
    { name: 'head-serve-f32acc', sources: [...withoutRadio, path.join(fw, 'test', 'head_serve.cpp')], libs: [], defines: ['ML_ACCUM_FLOAT32'] },
  ];
  if (mbedtlsAvailable()) {
    const radioHost = path.join(fw, 'host', 'radio');
    targets.push(
      { name: 'link-check', sources: [...core, path.join(fw, 'test', 'link_check.cpp')], libs: ['-lmbedcrypto'] },
      // the firmware's radio head node on the host HALs (the simulated SX1262 on the simulated channel)
      { name: 'mesh-llm-radio-node', sources: [...core, ...cppFiles(radioHost), path.join(fw, 'host', 'mapped_shard.cpp')], libs: ['-lmbedcrypto'], includes: [radioHost] },
      // the gateway's radio modem: its serial side on a pty, its radio the simulated channel's gateway radio
      { name: 'mesh-llm-modem', sources: [...core, path.join(radioHost, 'sim_radio.cpp'), path.join(fw, 'host', 'modem', 'modem_main.cpp')], libs: ['-lmbedcrypto'], includes: [radioHost] },
      // the host unit tests of core and hal, written for Unity (PlatformIO's `native` env); firmware/test/unity/ stands in for it here
      { name: 'firmware-unit', sources: [...core, path.join(fw, 'test', 'test_core', 'test_main.cpp')], libs: ['-lmbedcrypto'], includes: [path.join(fw, 'test', 'unity')] },
    );
  }
  return targets;
}

let mbedtlsFound: boolean | undefined;

/** Whether the compiler finds mbedTLS's CMAC header (checked once per process). */
export function mbedtlsAvailable(): boolean {
  if (mbedtlsFound === undefined) {
    const r = spawnSync(compiler(), ['-x', 'c++', '-fsyntax-only', '-'], { input: '#include <mbedtls/cmac.h>\n', encoding: 'utf8' });
    mbedtlsFound = r.status === 0;
  }
  return mbedtlsFound;
}

/** The C++ compiler: $CXX, else g++. */
export function compiler(): string {
  return process.env.CXX || 'g++';
}

export function compilerAvailable(): boolean {
  const r = spawnSync(compiler(), ['--version'], { encoding: 'utf8' });
  return r.status === 0;
}

/** Path of a built target; throws a clear error when it has not been built. */
export function firmwareBinary(name = 'mesh-llm-node'): string {
  const bin = path.join(firmwareOutDir(), name);
  if (!fs.existsSync(bin)) {
    const what = name === 'mesh-llm-node' ? 'the native head node' : name;
    const needs = name === 'link-check' ? `a C++ compiler (g++) and ${MBEDTLS_PACKAGE}` : 'a C++ compiler (g++)';
    throw new MeshLlmError(`${what} is not built (${bin} is missing): install ${needs} and run npm run build`);
  }
  return bin;
}

/** The schemas the node validates what it receives against, compiled into the firmware. */
export const FIRMWARE_SCHEMAS = ['assignment', 'session', 'steering'] as const;

/**
 * Writes dist/firmware/gen/ml_schemas.h: schemas/{kind}.json as C++ string constants
 * (ML_SCHEMA_ASSIGNMENT, ...), so the firmware validates against the same files as ajv.
 * Returns the header's path; it is rewritten only when its text changes.
 */
export function writeSchemaHeader(): string {
  const dir = path.join(firmwareOutDir(), 'gen');
  fs.mkdirSync(dir, { recursive: true });
  const lines = ['// Generated by lib/firmware/build.ts from schemas/*.json: do not edit.', '#pragma once', ''];
  for (const kind of FIRMWARE_SCHEMAS) {
    const text = JSON.stringify(JSON.parse(fs.readFileSync(path.join(packageRoot(), 'schemas', `${kind}.json`), 'utf8')));
    lines.push(`static const char ML_SCHEMA_${kind.toUpperCase()}[] = ${JSON.stringify(text)};`);
  }
  const header = path.join(dir, 'ml_schemas.h');
  const text = `${lines.join('\n')}\n`;
  if (!fs.existsSync(header) || fs.readFileSync(header, 'utf8') !== text) fs.writeFileSync(header, text);
  return header;
}

/** Compiles every target (or the named ones) that is missing or older than its sources (or headers). */
export function buildFirmware(log: (line: string) => void = () => undefined, only?: readonly string[]): string[] {
  const out = firmwareOutDir();
  fs.mkdirSync(out, { recursive: true });
  const generated = writeSchemaHeader();
  const headers = ['core', 'hal', 'host', 'host/radio', 'host/modem', 'test', 'test/unity'].flatMap((d) => {
    const dir = path.join(firmwareDir(), d);
    return fs.existsSync(dir) ? fs.readdirSync(dir).filter((f) => f.endsWith('.h')).map((f) => path.join(dir, f)) : [];
  });
  const built: string[] = [];
  if (!only && !mbedtlsAvailable()) log(`firmware: mbedtls/cmac.h not found, so link-check (the radio frame's cross-check) is not built: install the Debian package ${MBEDTLS_PACKAGE}`);
  for (const t of firmwareTargets()) {
    if (only && !only.includes(t.name)) continue;
    if (t.sources.some((s) => !fs.existsSync(s))) continue; // a target whose sources are not there yet
    const bin = path.join(out, t.name);
    const includes = [path.join(firmwareDir(), 'core'), path.dirname(generated), ...(t.includes ?? [])].flatMap((d) => ['-I', d]);
    const args = [...CXXFLAGS, ...(t.defines ?? []).map((d) => `-D${d}`), ...includes, '-o', bin, ...t.sources, ...t.libs];
    // the command line is kept beside the binary: a new compiler, flag or source list rebuilds it
    const stamp = `${bin}.cmd`;
    const command = [compiler(), ...args].join(' ');
    const inputs = [...t.sources, ...headers, generated];
    const upToDate = fs.existsSync(stamp) && fs.readFileSync(stamp, 'utf8') === command && isFresh([bin], inputs);
    if (upToDate) continue;
    log(`firmware: compiling ${t.name} (${t.sources.length} sources)`);
    const r = spawnSync(compiler(), args, { encoding: 'utf8' });
    if (r.status !== 0) throw new MeshLlmError(`firmware: ${compiler()} failed building ${t.name}:\n${r.stderr || r.error?.message}`);
    fs.writeFileSync(stamp, command);
    if (r.stderr.trim()) log(r.stderr.trim());
    built.push(bin);
  }
  return built;
}

/**
 * Path of the native head node, compiled on first use: the installed package holds the
 * firmware sources, not a binary built for another machine. Without a C++ compiler, or where
 * the package's folder is not writable, one line says so and how to go on.
 */
export function nativeNodeBinary(log: (line: string) => void = (line) => process.stderr.write(`${line}\n`)): string {
  const bin = path.join(firmwareOutDir(), 'mesh-llm-node');
  if (fs.existsSync(bin)) return bin;
  if (!compilerAvailable()) {
    throw new MeshLlmError(`the native head node is not built (${bin} is missing) and no C++ compiler was found (${compiler()}): install g++ or set CXX to one, or run the node.js head node (leave out --native)`);
  }
  log(`mesh-llm: building the native head node on first use (${compiler()}, into ${firmwareOutDir()})`);
  try {
    buildFirmware(log, ['mesh-llm-node']);
  } catch (e) {
    if (e instanceof MeshLlmError) throw e;
    throw new MeshLlmError(`the native head node could not be built into ${firmwareOutDir()}: ${(e as Error).message}`);
  }
  return bin;
}
