/**
 * Writing a checkpoint in llama2.c's version-2 (int8, Q8_0) format from a float32 one, as
 * llama2.c's export.py `version2_export` does: a 256-byte "ak42" header with the group size,
 * the RMSNorm weights in float32, then every weight matrix, layer by layer, as int8 values
 * followed by their float32 group scales (lib/llm/quant.ts's group-wise quantisation).
 * stories260K_q8.bin is published nowhere; this export of stories260K.bin with groups of 4
 * is that file byte for byte.
 */
import { Checkpoint, TensorName } from './checkpoint';
import { quantizeVector } from './quant';

const MAGIC_AK42 = 0x616b3432;
const HEADER_BYTES = 256;

/** The version-2 header: magic, version, the seven config ints, shared-classifier flag, group size. */
function version2Header(ckpt: Checkpoint, groupSize: number): Buffer {
  const c = ckpt.info.config;
  const header = Buffer.alloc(HEADER_BYTES);
  header.writeUInt32LE(MAGIC_AK42, 0);
  header.writeInt32LE(2, 4);
  [c.dim, c.hiddenDim, c.nLayers, c.nHeads, c.nKvHeads, c.vocabSize, c.seqLen].forEach((v, i) => header.writeInt32LE(v, 8 + 4 * i));
  header.writeUInt8(c.sharedClassifier ? 1 : 0, 36);
  header.writeInt32LE(groupSize, 37);
  return header;
}

/** Every layer of a tensor, in order (one entry for whole-model tensors). */
export function tensorLayers(ckpt: Checkpoint, name: TensorName): Float32Array[] {
  const perLayer = !['tokenEmbedding', 'rmsFinal', 'wcls'].includes(name);
  return Array.from({ length: perLayer ? ckpt.info.config.nLayers : 1 }, (_, l) => ckpt.read(name, l));
}

const bytesOf = (a: Float32Array | Int8Array): Buffer => Buffer.from(a.buffer, a.byteOffset, a.byteLength);

/** The version-2 export of the float32 checkpoint at `sourcePath`, quantised in groups of `groupSize`. */
export function exportInt8(sourcePath: string, groupSize: number): Buffer {
  const ckpt = Checkpoint.open(sourcePath);
  try {
    const norms = (['rmsAtt', 'rmsFfn', 'rmsFinal'] as const).flatMap((n) => tensorLayers(ckpt, n).map(bytesOf));
    const matrices: TensorName[] = ['tokenEmbedding', 'wq', 'wk', 'wv', 'wo', 'w1', 'w2', 'w3'];
    if (!ckpt.info.config.sharedClassifier) matrices.push('wcls');
    const quantised = matrices.flatMap((n) =>
      tensorLayers(ckpt, n).flatMap((w) => {
        const q = quantizeVector(w, groupSize);
        return [bytesOf(q.q), bytesOf(q.scales)];
      }),
    );
    return Buffer.concat([version2Header(ckpt, groupSize), ...norms, ...quantised]);
  } finally {
    ckpt.close();
  }
}
