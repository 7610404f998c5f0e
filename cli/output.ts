/** Streams UTF-8 text that arrives as byte pieces (a character may be split across tokens). */
import { StringDecoder } from 'node:string_decoder';

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
