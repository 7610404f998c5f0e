/**
 * Build step after tsc: the gateway's int8 kernel addon (lib/native/build.ts). Without a C
 * compiler or Node's headers the build goes on without it and says so; only the native int8
 * gateway (kernel 'native') needs it, and it is compiled on first use where it is missing.
 */
import { buildKernel } from '../lib/native/build';

try {
  buildKernel((line) => process.stderr.write(`${line}\n`));
} catch (e) {
  process.stderr.write(`${(e as Error).message}; the native int8 gateway kernel is not built\n`);
}
