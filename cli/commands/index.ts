/** The CLI's subcommands: each module exports run(argv) -> exit code and a usage text. */
export interface Command {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<number>; usage: string }>;
}

export const commands: Record<string, Command> = {
  start: { summary: 'the whole system: broker, head-node processes, Node-RED editor with the flow (npm start)', load: () => import('./start') },
  generate: { summary: 'generate text: in one process, on head-node processes (--mesh N), or over the simulated LoRa radio (--radio sim)', load: () => import('./generate') },
  node: { summary: 'run a head node of the MQTT mesh', load: () => import('./node') },
  broker: { summary: 'run the embedded MQTT broker (aedes)', load: () => import('./broker') },
  bridge: { summary: 'the LoRa-to-MQTT bridge: radio head nodes (simulated, serial modem or Semtech UDP) on the mesh\'s topics', load: () => import('./bridge') },
  plan: { summary: 'LoRa feasibility: memory per ESP32-S3 node, frames and time per token', load: () => import('./plan') },
  agent: { summary: 'one request through the agentic mesh: retrieval, reasoning, filter and sensing roles (docs/AGENTIC.md)', load: () => import('./agent') },
  role: { summary: 'run one role of the agentic mesh (retrieval, reasoning, filter, sensing) on a broker', load: () => import('./role') },
  index: { summary: 'build the retrieval role\'s index of a corpus folder and a sensor history', load: () => import('./index-cmd') },
  synth: { summary: 'a synthetic model of a known geometry (TinyLlama-1.1B\'s) with seeded random weights, as llama2.c, GGUF or Hugging Face files', load: () => import('./synth') },
  runs: { summary: 'recorded runs and durable jobs of a --data folder: list, show ID, export ID --format csv|jsonl', load: () => import('./runs') },
  shard: { summary: 'weight shards: one file per head node with its W_Q/W_K/W_V rows, for the firmware\'s flash', load: () => import('./shard') },
  provision: { summary: 'an ESP32 head node\'s join record (mesh id, address, network key, its radio plan) for its join partition', load: () => import('./provision') },
  credentials: { summary: 'per-client bus credentials and topic ACLs for a mesh (aedes --credentials, Mosquitto files)', load: () => import('./credentials') },
  steer: { summary: 'steering by sensors: recompute directions, measure their effect, readings of a scenario', load: () => import('./steer') },
};
