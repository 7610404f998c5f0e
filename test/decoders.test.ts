/**
 * Property-based tests of every decoder that takes bytes from outside (bench/decoders.ts):
 * on random input and on valid encodings with bytes changed, each decoder returns a value or
 * refuses with its own error, and valid encodings round-trip. A few hundred cases each here;
 * `npm run bench:reliability` runs 100,000.
 */
import fc from 'fast-check';
import { DECODER_PROPERTIES } from '../bench/decoders';

test.each(DECODER_PROPERTIES.map((p) => [p.name, p] as const))('%s: any input decodes or is refused with the decoder\'s own error', (_name, { property }) => {
  fc.assert(property, { numRuns: 300 });
});
