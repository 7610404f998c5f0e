/** Shared by the radio and bridge tests: a broker process, a simulated radio mesh of the real model, the golden run. */
import { freePort } from '../../lib/mesh/broker';
import { spawnBroker } from '../../lib/mesh/processes';
import { GenerateOptions } from '../../lib/llm/engine';
import { RadioSettings, SimulatedRadioMesh } from '../../gateway-bridge/radio-mesh';
import { GOLDEN_RUNS, modelPaths } from './fixtures';

export const ONCE = GOLDEN_RUNS[0];
export const ONCE_OPTIONS: GenerateOptions = { prompt: ONCE.prompt, steps: ONCE.steps, temperature: 0, topP: 0.9, seed: 1n };
export const quiet = () => undefined;

/** `mesh-llm broker` as a child process (jest cannot load the aedes ES module in-process). */
export async function brokerProcess(cleanups: (() => Promise<unknown>)[]): Promise<string> {
  const b = await spawnBroker(await freePort());
  cleanups.push(() => b.close());
  return b.url;
}

/** Radio head nodes of the real model (stories260K) on a simulated channel, virtual clock. */
export function radioMesh(nodes: number, settings: Partial<RadioSettings> = {}): SimulatedRadioMesh {
  return new SimulatedRadioMesh({ modelPath: modelPaths.model, nodes, quant: 'f32', region: 'US915', sf: 7, bandwidthKHz: 125, channels: 8, loss: 0, seed: 1, ...settings });
}

export const bridgePaths = { modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer };
