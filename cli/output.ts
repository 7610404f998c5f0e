/** What the CLI writes to stdout: JSON results, and text streamed as it is generated. */
import * as fs from 'node:fs';
import { StringDecoder } from 'node:string_decoder';

/** Prints one JSON value on a line of its own on stdout (`indent`: pretty-printed with that many spaces). */
export function printJson(value: unknown, indent?: number): void {
  process.stdout.write(`${JSON.stringify(value, null, indent)}\n`);
}

/** Streams UTF-8 text that arrives as byte pieces (a character may be split across tokens). */
export class TextStream {
  private readonly decoder = new StringDecoder('utf8');
  constructor(private readonly out: NodeJS.WritableStream) {}
  write(bytes: Buffer): void {
    const text = this.decoder.write(bytes);
    if (text) this.out.write(text);
  }
  /** Flushes any incomplete character and ends the line, as run.c does. */
  end(): void {
    this.out.write(`${this.decoder.end()}\n`);
  }
}

/**
 * Runs `work` with a sink that appends each mesh event to `file` as one JSON line (- : stderr),
 * written as it happens so nothing is lost if the run fails; without a file, no sink.
 */
export async function withEventLog<T>(file: string | undefined, work: (sink?: (e: object) => void) => Promise<T>): Promise<T> {
  if (file === undefined) return work(undefined);
  const fd = file === '-' ? 2 : fs.openSync(file, 'a');
  try {
    return await work((e) => fs.writeSync(fd, `${JSON.stringify(e)}\n`));
  } finally {
    if (fd !== 2) fs.closeSync(fd);
  }
}
