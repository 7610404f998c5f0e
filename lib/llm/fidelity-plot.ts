/**
 * The fidelity plot of docs/QUANTISATION.md: one line per weight format through its transports,
 * radio bytes per layer on x, top-1 agreement with float32 on y (the Canvas of lib/steering/plot.ts).
 */
import { Canvas, Rgb } from '../steering/plot';

export interface FidelityPoint {
  label: string;
  bytes: number;
  top1: number;
}

const COLOURS: Rgb[] = [
  [77, 77, 77],
  [69, 117, 180],
  [26, 152, 80],
  [215, 48, 39],
];

/** Series (one per weight format) of points (one per transport) -> PNG. y spans [yMin, 1]; a dashed floor line at `floor`. */
export function fidelityChart(series: readonly { name: string; points: FidelityPoint[] }[], o: { title: string; xLabel: string; yLabel: string; yMin: number; floor?: number }): Buffer {
  const W = 960;
  const H = 600;
  const left = 90;
  const right = 270;
  const top = 80;
  const bottom = 80;
  const c = new Canvas(W, H);
  const xMax = Math.max(...series.flatMap((s) => s.points.map((p) => p.bytes))) * 1.05;
  const px = (x: number) => left + (x / xMax) * (W - left - right);
  const py = (y: number) => H - bottom - ((y - o.yMin) / (1 - o.yMin)) * (H - top - bottom);
  const grey: Rgb = [200, 200, 200];
  const black: Rgb = [0, 0, 0];
  const yStep = (1 - o.yMin) / 5;
  for (let k = 0; k <= 5; k++) {
    const y = o.yMin + k * yStep;
    c.line(px(0), py(y), px(xMax), py(y), grey);
    c.text(left - 70, py(y) - 7, y.toFixed(2), black);
  }
  const xStep = Math.pow(10, Math.floor(Math.log10(xMax / 2)));
  for (let x = 0; x <= xMax; x += xStep * (xMax / xStep > 8 ? 2 : 1)) {
    c.line(px(x), py(o.yMin), px(x), py(o.yMin) + 6, black);
    c.text(px(x) - 20, py(o.yMin) + 14, String(Math.round(x)), black);
  }
  c.line(px(0), py(o.yMin), px(xMax), py(o.yMin), black, 2);
  c.line(px(0), py(o.yMin), px(0), py(1), black, 2);
  if (o.floor !== undefined) for (let x = 0; x < xMax; x += xMax / 60) c.line(px(x), py(o.floor), px(Math.min(xMax, x + xMax / 120)), py(o.floor), [120, 120, 120], 2);
  series.forEach((s, i) => {
    const col = COLOURS[i % COLOURS.length];
    const pts = [...s.points].sort((a, b) => a.bytes - b.bytes);
    pts.forEach((p, j) => {
      const y = Math.max(o.yMin, p.top1);
      if (j > 0) c.line(px(pts[j - 1].bytes), py(Math.max(o.yMin, pts[j - 1].top1)), px(p.bytes), py(y), col, 3);
      c.dot(px(p.bytes), py(y), col, 5);
      c.text(px(p.bytes) + 6, py(y) - 18, p.label, col, 1);
    });
    c.line(W - right + 20, top + 20 + i * 30, W - right + 50, top + 20 + i * 30, col, 3);
    c.text(W - right + 58, top + 13 + i * 30, s.name, black);
  });
  c.text(left, 16, o.title, black, 2);
  c.text(px(xMax / 2) - (o.xLabel.length * 12) / 2, H - 36, o.xLabel, black);
  c.text(10, top - 32, o.yLabel, black);
  return c.png();
}
