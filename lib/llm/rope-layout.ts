/**
 * The two row layouts of W_Q and W_K. llama2.c (and GGUF) rotate interleaved pairs: rows
 * (2i, 2i+1) of a head are the pair of frequency i. Hugging Face's rotate-half RoPE pairs
 * row i with row i + headSize/2 instead, so its checkpoints hold the rows permuted. These
 * map one head's rows between the layouts, as llama.cpp's converter (`permute`) does.
 */

/** The Hugging Face row (within a head) that holds interleaved row p. */
export function rotateHalfRow(p: number, headSize: number): number {
  return (p & 1) * (headSize / 2) + (p >> 1);
}

/**
 * Rows of a head in the rotate-half layout -> the interleaved layout (load a Hugging Face
 * checkpoint). w holds whole heads [heads * headSize, cols].
 */
export function interleaveFromRotateHalf(w: Float32Array, headSize: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const heads = w.length / (headSize * cols);
  for (let h = 0; h < heads; h++) {
    for (let p = 0; p < headSize; p++) {
      const from = (h * headSize + rotateHalfRow(p, headSize)) * cols;
      out.set(w.subarray(from, from + cols), (h * headSize + p) * cols);
    }
  }
  return out;
}

/** The inverse: interleaved rows -> rotate-half rows (write a Hugging Face checkpoint). */
export function rotateHalfFromInterleaved(w: Float32Array, headSize: number, cols: number): Float32Array {
  const out = new Float32Array(w.length);
  const heads = w.length / (headSize * cols);
  for (let h = 0; h < heads; h++) {
    for (let p = 0; p < headSize; p++) {
      const to = (h * headSize + rotateHalfRow(p, headSize)) * cols;
      out.set(w.subarray((h * headSize + p) * cols, (h * headSize + p + 1) * cols), to);
    }
  }
  return out;
}
