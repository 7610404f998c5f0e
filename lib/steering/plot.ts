/**
 * The measurement plot as a PNG, without dependencies: an RGB canvas, lines and dots, a 5x7
 * pixel font for the few labels, and a PNG encoder (zlib from node:zlib, CRC-32 here).
 * Plotted: per channel, the lexicon mass relative to its value at reading 0, against the
 * normalised reading.
 */
import * as zlib from 'node:zlib';

export type Rgb = [number, number, number];

export class Canvas {
  readonly pixels: Uint8Array;
  constructor(
    readonly width: number,
    readonly height: number,
    background: Rgb = [255, 255, 255],
  ) {
    this.pixels = new Uint8Array(width * height * 3);
    for (let i = 0; i < width * height; i++) this.pixels.set(background, i * 3);
  }

  set(x: number, y: number, c: Rgb): void {
    x = Math.round(x);
    y = Math.round(y);
    if (x < 0 || y < 0 || x >= this.width || y >= this.height) return;
    this.pixels.set(c, (y * this.width + x) * 3);
  }

  /** A line `thickness` pixels wide (square brush). */
  line(x0: number, y0: number, x1: number, y1: number, c: Rgb, thickness = 1): void {
    const steps = Math.max(1, Math.ceil(Math.hypot(x1 - x0, y1 - y0)));
    const r = (thickness - 1) / 2;
    for (let s = 0; s <= steps; s++) {
      const x = x0 + ((x1 - x0) * s) / steps;
      const y = y0 + ((y1 - y0) * s) / steps;
      for (let dx = -r; dx <= r; dx++) for (let dy = -r; dy <= r; dy++) this.set(x + dx, y + dy, c);
    }
  }

  dot(x: number, y: number, c: Rgb, radius = 3): void {
    for (let dx = -radius; dx <= radius; dx++) for (let dy = -radius; dy <= radius; dy++) if (dx * dx + dy * dy <= radius * radius) this.set(x + dx, y + dy, c);
  }

  /** Text in the 5x7 font, scaled by `scale`, top-left at (x, y). */
  text(x: number, y: number, s: string, c: Rgb, scale = 2): void {
    for (const ch of s) {
      const glyph = FONT[ch] ?? FONT['?'];
      glyph.forEach((row, gy) => {
        for (let gx = 0; gx < 5; gx++) if (row & (1 << (4 - gx))) for (let a = 0; a < scale; a++) for (let b = 0; b < scale; b++) this.set(x + gx * scale + a, y + gy * scale + b, c);
      });
      x += 6 * scale;
    }
  }

  png(): Buffer {
    return encodePng(this.width, this.height, this.pixels);
  }
}

const CRC_TABLE = Array.from({ length: 256 }, (_, n) => {
  let c = n;
  for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
  return c >>> 0;
});

function crc32(buf: Buffer): number {
  let c = 0xffffffff;
  for (const b of buf) c = CRC_TABLE[(c ^ b) & 0xff] ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

function chunk(type: string, data: Buffer): Buffer {
  const len = Buffer.alloc(4);
  len.writeUInt32BE(data.length);
  const body = Buffer.concat([Buffer.from(type, 'latin1'), data]);
  const crc = Buffer.alloc(4);
  crc.writeUInt32BE(crc32(body));
  return Buffer.concat([len, body, crc]);
}

/** An 8-bit RGB PNG; rows unfiltered (filter byte 0), zlib-compressed. */
export function encodePng(width: number, height: number, rgb: Uint8Array): Buffer {
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(width, 0);
  ihdr.writeUInt32BE(height, 4);
  ihdr.set([8, 2, 0, 0, 0], 8); // bit depth 8, colour type 2 (RGB), deflate, no filter, no interlace
  const raw = Buffer.alloc((width * 3 + 1) * height);
  for (let y = 0; y < height; y++) raw.set(rgb.subarray(y * width * 3, (y + 1) * width * 3), y * (width * 3 + 1) + 1);
  return Buffer.concat([Buffer.from([0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]), chunk('IHDR', ihdr), chunk('IDAT', zlib.deflateSync(raw)), chunk('IEND', Buffer.alloc(0))]);
}

export interface Series {
  name: string;
  points: { x: number; y: number }[];
}

const PALETTE: Rgb[] = [
  [215, 48, 39],
  [69, 117, 180],
  [26, 152, 80],
  [152, 78, 163],
  [255, 127, 0],
  [77, 77, 77],
];

/**
 * A line chart: x in [0, 1], y from 0 to the largest value (at least `yMin`); a dashed
 * reference line at y = `reference` (e.g. the 2x target) and a legend.
 */
export function lineChart(series: readonly Series[], o: { title: string; xLabel: string; yLabel: string; reference?: number }): Buffer {
  const W = 900;
  const H = 560;
  const left = 90;
  const right = 250;
  const top = 80;
  const bottom = 80;
  const c = new Canvas(W, H);
  const yMax = Math.ceil(Math.max(o.reference ?? 0, ...series.flatMap((s) => s.points.map((p) => p.y))) * 2) / 2 + 0.5;
  const px = (x: number) => left + x * (W - left - right);
  const py = (y: number) => H - bottom - (y / yMax) * (H - top - bottom);
  const grey: Rgb = [200, 200, 200];
  const black: Rgb = [0, 0, 0];
  for (let y = 0; y <= yMax + 1e-9; y += 0.5) {
    c.line(px(0), py(y), px(1), py(y), grey);
    c.text(left - 50, py(y) - 7, y.toFixed(1), black);
  }
  for (let x = 0; x <= 1 + 1e-9; x += 0.25) {
    c.line(px(x), py(0), px(x), py(0) + 6, black);
    c.text(px(x) - 24, py(0) + 14, x.toFixed(2), black);
  }
  c.line(px(0), py(0), px(1), py(0), black, 2);
  c.line(px(0), py(0), px(0), py(yMax), black, 2);
  if (o.reference !== undefined) for (let x = 0; x < 1; x += 0.02) c.line(px(x), py(o.reference), px(Math.min(1, x + 0.01)), py(o.reference), [120, 120, 120], 2);
  series.forEach((s, i) => {
    const col = PALETTE[i % PALETTE.length];
    s.points.forEach((p, j) => {
      if (j > 0) c.line(px(s.points[j - 1].x), py(s.points[j - 1].y), px(p.x), py(p.y), col, 3);
      c.dot(px(p.x), py(p.y), col, 4);
    });
    c.line(W - right + 20, top + 20 + i * 30, W - right + 50, top + 20 + i * 30, col, 3);
    c.text(W - right + 58, top + 13 + i * 30, s.name, black);
  });
  c.text(left, 16, o.title, black, 2);
  c.text(px(0.5) - (o.xLabel.length * 12) / 2, H - 36, o.xLabel, black);
  c.text(10, top - 32, o.yLabel, black);
  return c.png();
}

// 5x7 glyphs, one number per row, bit 4 = leftmost column.
const FONT: Record<string, number[]> = {
  ' ': [0, 0, 0, 0, 0, 0, 0],
  '?': [14, 17, 1, 2, 4, 0, 4],
  '.': [0, 0, 0, 0, 0, 12, 12],
  ',': [0, 0, 0, 0, 12, 4, 8],
  ':': [0, 12, 12, 0, 12, 12, 0],
  '-': [0, 0, 0, 31, 0, 0, 0],
  '+': [0, 4, 4, 31, 4, 4, 0],
  '/': [1, 1, 2, 4, 8, 16, 16],
  '(': [2, 4, 8, 8, 8, 4, 2],
  ')': [8, 4, 2, 2, 2, 4, 8],
  '=': [0, 0, 31, 0, 31, 0, 0],
  '%': [24, 25, 2, 4, 8, 19, 3],
  '0': [14, 17, 19, 21, 25, 17, 14],
  '1': [4, 12, 4, 4, 4, 4, 14],
  '2': [14, 17, 1, 2, 4, 8, 31],
  '3': [31, 2, 4, 2, 1, 17, 14],
  '4': [2, 6, 10, 18, 31, 2, 2],
  '5': [31, 16, 30, 1, 1, 17, 14],
  '6': [6, 8, 16, 30, 17, 17, 14],
  '7': [31, 1, 2, 4, 8, 8, 8],
  '8': [14, 17, 17, 14, 17, 17, 14],
  '9': [14, 17, 17, 15, 1, 2, 12],
  A: [14, 17, 17, 31, 17, 17, 17],
  B: [30, 17, 17, 30, 17, 17, 30],
  C: [14, 17, 16, 16, 16, 17, 14],
  D: [28, 18, 17, 17, 17, 18, 28],
  E: [31, 16, 16, 30, 16, 16, 31],
  F: [31, 16, 16, 30, 16, 16, 16],
  G: [14, 17, 16, 23, 17, 17, 15],
  H: [17, 17, 17, 31, 17, 17, 17],
  I: [14, 4, 4, 4, 4, 4, 14],
  J: [7, 2, 2, 2, 2, 18, 12],
  K: [17, 18, 20, 24, 20, 18, 17],
  L: [16, 16, 16, 16, 16, 16, 31],
  M: [17, 27, 21, 21, 17, 17, 17],
  N: [17, 17, 25, 21, 19, 17, 17],
  O: [14, 17, 17, 17, 17, 17, 14],
  P: [30, 17, 17, 30, 16, 16, 16],
  Q: [14, 17, 17, 17, 21, 18, 13],
  R: [30, 17, 17, 30, 20, 18, 17],
  S: [15, 16, 16, 14, 1, 1, 30],
  T: [31, 4, 4, 4, 4, 4, 4],
  U: [17, 17, 17, 17, 17, 17, 14],
  V: [17, 17, 17, 17, 17, 10, 4],
  W: [17, 17, 17, 21, 21, 21, 10],
  X: [17, 17, 10, 4, 10, 17, 17],
  Y: [17, 17, 10, 4, 4, 4, 4],
  Z: [31, 1, 2, 4, 8, 16, 31],
};
// lower case is drawn as upper case
for (const ch of 'abcdefghijklmnopqrstuvwxyz') FONT[ch] = FONT[ch.toUpperCase()];
