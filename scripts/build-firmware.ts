/**
 * Build step after tsc: the firmware's host targets (lib/firmware/build.ts). Without a C++
 * compiler the build goes on without them and says so; only the native head node needs them.
 */
import { buildFirmware, compiler, compilerAvailable } from '../lib/firmware/build';

if (!compilerAvailable()) {
  process.stderr.write(`firmware: no C++ compiler (${compiler()}); the native head node (mesh-llm node --native) is not built\n`);
} else {
  try {
    buildFirmware((line) => process.stderr.write(`${line}\n`));
  } catch (e) {
    process.stderr.write(`${(e as Error).message}\n`);
    process.exitCode = 1;
  }
}
