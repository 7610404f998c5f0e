/**
 * AES-128-CMAC (RFC 4493, NIST SP 800-38B) on node:crypto's AES block cipher: the integrity
 * code of LoRaWAN's MIC and of mesh-llm's radio frames.
 */
import { createCipheriv } from 'node:crypto';

const BLOCK = 16;
/** R_b of RFC 4493: the constant folded in when a doubling carries out of the top bit. */
const RB = 0x87;
const ZERO_BLOCK = Buffer.alloc(BLOCK);

function aesBlock(key: Buffer, block: Buffer): Buffer {
  const c = createCipheriv('aes-128-ecb', key, null);
  c.setAutoPadding(false);
  return c.update(block);
}

/** Doubling in GF(2^128): shift left one bit, folding R_b in when the top bit falls out. */
function double(b: Buffer): Buffer {
  const out = Buffer.alloc(BLOCK);
  for (let i = 0; i < BLOCK; i++) out[i] = ((b[i] << 1) | (i + 1 < BLOCK ? b[i + 1] >> 7 : 0)) & 0xff;
  if (b[0] & 0x80) out[BLOCK - 1] ^= RB;
  return out;
}

/** The subkeys K1, K2 of RFC 4493 section 2.3. */
export function cmacSubkeys(key: Buffer): { k1: Buffer; k2: Buffer } {
  const k1 = double(aesBlock(key, ZERO_BLOCK));
  return { k1, k2: double(k1) };
}

function xorInto(target: Buffer, offset: number, mask: Buffer): void {
  for (let i = 0; i < BLOCK; i++) target[offset + i] ^= mask[i];
}

/** AES-128-CMAC of a message: 16 bytes. */
export function aesCmac(key: Buffer, message: Uint8Array): Buffer {
  if (key.length !== BLOCK) throw new RangeError(`AES-128-CMAC needs a 16-byte key, got ${key.length} bytes`);
  const { k1, k2 } = cmacSubkeys(key);
  const blocks = Math.max(1, Math.ceil(message.length / BLOCK));
  const complete = message.length > 0 && message.length % BLOCK === 0;
  // The message, padded with 10..0 when its last block is short, the last block masked by K1 or K2.
  const m = Buffer.alloc(blocks * BLOCK);
  m.set(message);
  if (!complete) m[message.length] = 0x80;
  xorInto(m, (blocks - 1) * BLOCK, complete ? k1 : k2);
  // CBC-MAC with a zero IV: the last ciphertext block is the tag.
  const c = createCipheriv('aes-128-cbc', key, ZERO_BLOCK);
  c.setAutoPadding(false);
  const out = c.update(m);
  return out.subarray(out.length - BLOCK);
}
