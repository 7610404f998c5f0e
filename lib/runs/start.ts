/** The run store of `mesh-llm start`: DIR/runs.sqlite in its --data folder, shared with the flow through MESH_LLM_RUNS_DB. */
import * as path from 'node:path';
import { RUNS_DB_ENV, closeSharedRunStore, sharedRunStore } from './shared';
import { RUN_STORE_FILE } from './store';

export function openStartRunStore(dataDir: string): { file: string; close(): void } {
  const file = path.join(dataDir, RUN_STORE_FILE);
  sharedRunStore(file);
  process.env[RUNS_DB_ENV] = file;
  return { file, close: () => closeSharedRunStore(file) };
}
