/**
 * The run store a process shares: `mesh-llm start` opens it (so a corrupt or locked database
 * stops start with a clear error) and names it in MESH_LLM_RUNS_DB; the flow's config nodes
 * use the same open store. Without MESH_LLM_RUNS_DB (Node-RED run some other way) runs are
 * not recorded and jobs are not durable; nothing falls back to memory.
 */
import * as path from 'node:path';
import { RunStore } from './store';

export const RUNS_DB_ENV = 'MESH_LLM_RUNS_DB';

const open = new Map<string, RunStore>();

/** The store at `file`, opened once per process. */
export function sharedRunStore(file: string): RunStore {
  const abs = path.resolve(file);
  let store = open.get(abs);
  if (!store) {
    store = RunStore.open(abs);
    open.set(abs, store);
  }
  return store;
}

/** The store MESH_LLM_RUNS_DB names, or null when it names none. */
export function runStoreFromEnv(env: NodeJS.ProcessEnv = process.env): RunStore | null {
  const file = env[RUNS_DB_ENV];
  return file ? sharedRunStore(file) : null;
}

/** Closes the shared store at `file` (start's stop). */
export function closeSharedRunStore(file: string): void {
  const abs = path.resolve(file);
  open.get(abs)?.close();
  open.delete(abs);
}
