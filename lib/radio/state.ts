/**
 * What a radio keeps across restarts, in one small JSON file under its data folder: the
 * reservation of its own frame counter (so a restarted sender starts above every counter it
 * used) and the floors of its replay window (so a restarted receiver refuses frames it took
 * before). The firmware keeps the same two things through its storage HAL
 * (firmware/core/counter_store.h, radio_frame.h MlReplayWindow::restore).
 *
 * Counters are reserved in blocks of COUNTER_BLOCK, as LoRaWAN devices do: the file holds
 * `reserved`, above every counter used; a restart starts there (up to a block is skipped).
 * Writes are whole-file replacements (a temporary file, then rename), so a crash leaves the
 * old state or the new one.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import { ReplayStore } from './frame';

/** Counters reserved per write of the counter (the firmware's MlCounterStore::BLOCK). */
export const COUNTER_BLOCK = 64;

interface StateData {
  /** Above every counter this radio has used. */
  counter: number;
  /** Per source address: at or above every counter accepted from it. */
  window: Record<string, number>;
}

export class RadioStateFile implements ReplayStore {
  readonly path: string;
  private readonly data: StateData;
  /** The counter the radio starts at: above every one used before. */
  readonly counterStart: number;

  constructor(file: string) {
    this.path = file;
    this.data = readState(file);
    this.counterStart = this.data.counter;
  }

  /** Before a frame under `counter` goes out: extends the reservation when it reaches it. */
  reserve(counter: number): void {
    if (counter < this.data.counter) return;
    if (counter > 0xffffffff - COUNTER_BLOCK) throw new RangeError('the frame counter is exhausted: the mesh needs a new network key');
    this.data.counter = counter + COUNTER_BLOCK;
    this.write();
  }

  floor(source: number): number | undefined {
    return this.data.window[String(source)];
  }

  saveFloor(source: number, floor: number): void {
    this.data.window[String(source)] = floor;
    this.write();
  }

  private write(): void {
    fs.mkdirSync(path.dirname(this.path), { recursive: true });
    const tmp = `${this.path}.tmp`;
    fs.writeFileSync(tmp, JSON.stringify(this.data) + '\n');
    fs.renameSync(tmp, this.path);
  }
}

function isCounter(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0xffffffff;
}

/** The saved state, or a fresh one when there is no file; a file that is not a radio state is an error naming it. */
function readState(file: string): StateData {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'ENOENT') return { counter: 0, window: {} };
    throw e;
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    v = undefined;
  }
  const d = v as Partial<StateData> | undefined;
  const ok = d && isCounter(d.counter) && typeof d.window === 'object' && d.window !== null && Object.values(d.window).every(isCounter);
  if (!ok) throw new Error(`${file} is not a radio state file (counter and window of whole numbers 0..2^32-1)`);
  return { counter: d.counter as number, window: { ...(d.window as Record<string, number>) } };
}
