/**
 * The Node-RED editor in a real browser: Debian's chromium (apt-get install chromium, or
 * MESH_LLM_CHROMIUM naming another) driven by playwright-core, which never downloads a
 * browser of its own. What a person sees of the flow is read from the page: where each node
 * and comment is drawn, what covers it, and the status under it.
 */
import * as fs from 'node:fs';
import { Browser, Page, chromium } from 'playwright-core';

/** The little of the browser's DOM the probes below use, run in the page (the project compiles without lib.dom). */
interface El {
  id: string;
  textContent: string | null;
  clientWidth: number;
  clientHeight: number;
  querySelector(selector: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  getBoundingClientRect(): Box;
  getClientRects(): ArrayLike<unknown>;
  contains(other: El | null): boolean;
  getAttribute(name: string): string | null;
}
declare const document: { getElementById(id: string): El | null; querySelectorAll(selector: string): ArrayLike<El>; elementFromPoint(x: number, y: number): El | null };
declare function getComputedStyle(e: El): { visibility: string };

export const chromiumPath = process.env.MESH_LLM_CHROMIUM ?? '/usr/bin/chromium';

/** The viewport the shipped flow is drawn for. */
export const VIEWPORT = { width: 1600, height: 1000 };

export async function launchChromium(): Promise<Browser> {
  if (!fs.existsSync(chromiumPath)) throw new Error(`no chromium at ${chromiumPath}: apt-get install chromium (or set MESH_LLM_CHROMIUM)`);
  // --no-sandbox: the suite runs as root in CI, where chromium's sandbox refuses to start.
  return chromium.launch({ executablePath: chromiumPath, args: ['--no-sandbox'] });
}

export interface Box {
  x: number;
  y: number;
  width: number;
  height: number;
}

/** One node of the flow as drawn: its whole group (body, ports, status) and its body alone. */
export interface DrawnNode {
  id: string;
  /** Body, ports and status label. */
  drawn: Box;
  body: Box;
  /** Whether the element at the centre of the body belongs to the node (nothing covers it). */
  uncovered: boolean;
}

/** The workspace as drawn: the visible chart (without its scroll bars), every node, and the dialogs or tours that are showing. */
export interface DrawnFlow {
  chart: Box;
  nodes: DrawnNode[];
  overlays: number;
}

/** Opens the editor and waits until the flow is drawn. */
export async function openEditor(browser: Browser, url: string): Promise<Page> {
  const page = await browser.newPage({ viewport: VIEWPORT });
  await page.goto(url);
  await page.waitForSelector('#red-ui-workspace-chart .red-ui-flow-node-group');
  return page;
}

/** Waits until the status under a node matches. */
export async function waitForStatus(page: Page, id: string, pattern: RegExp, timeoutMs = 30000): Promise<void> {
  await page.waitForFunction(
    ([nodeId, source]) => new RegExp(source).test(document.getElementById(nodeId)?.querySelector('.red-ui-flow-node-status-label')?.textContent ?? ''),
    [id, pattern.source] as const,
    { timeout: timeoutMs },
  );
}

/** Reads where everything is drawn. */
export function drawnFlow(page: Page): Promise<DrawnFlow> {
  return page.evaluate(() => {
    const box = (r: Box) => ({ x: r.x, y: r.y, width: r.width, height: r.height });
    const chartEl = document.getElementById('red-ui-workspace-chart') as El;
    const c = chartEl.getBoundingClientRect();
    const nodes = Array.from(chartEl.querySelectorAll('.red-ui-flow-node-group')).map((g) => {
      const body = (g.querySelector('.red-ui-flow-node') as El).getBoundingClientRect();
      const atCentre = document.elementFromPoint(body.x + body.width / 2, body.y + body.height / 2);
      return { id: g.id, drawn: box(g.getBoundingClientRect()), body: box(body), uncovered: g.contains(atCentre) };
    });
    const shown = (sel: string) => Array.from(document.querySelectorAll(sel)).filter((e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden').length;
    const overlays = shown('.red-ui-popover') + shown('.red-ui-tourGuide-popover') + shown('.red-ui-tourGuide-shade') + shown('.ui-dialog');
    return { chart: { x: c.x, y: c.y, width: chartEl.clientWidth, height: chartEl.clientHeight }, nodes, overlays };
  });
}

/** The node types the palette offers. */
export function paletteTypes(page: Page): Promise<string[]> {
  return page.evaluate(() => Array.from(document.querySelectorAll('.red-ui-palette-node[data-palette-type]')).map((e) => e.getAttribute('data-palette-type') ?? ''));
}

export function inside(inner: Box, outer: Box): boolean {
  return inner.x >= outer.x && inner.y >= outer.y && inner.x + inner.width <= outer.x + outer.width && inner.y + inner.height <= outer.y + outer.height;
}

export function overlap(a: Box, b: Box): boolean {
  return a.x < b.x + b.width && b.x < a.x + a.width && a.y < b.y + b.height && b.y < a.y + a.height;
}
