/** What the CLI writes to stdout: JSON results, and text streamed as it is generated. */
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
