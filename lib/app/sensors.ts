/**
 * Simulated sensors for the simulated head nodes: a scenario's trace (lib/steering/sensors.ts:
 * a calm minute for calibration, then the event) published in real time on each node's
 * sensors topic, then calm again, over and over.
 */
import type { MqttClient } from 'mqtt';
import { connectMqtt, endClient } from '../mesh/mqtt';
import { topicsFor } from '../mesh/wire';
import { ScenarioName, simulate } from '../steering/sensors';

export interface SensorSimulationOptions {
  brokerUrl: string;
  meshId: string;
  nodes: readonly string[];
  scenario: ScenarioName;
  /** Seconds of calm before each event (the calibration window). */
  calmSeconds?: number;
  /** Seconds of the event before the trace starts over. */
  eventSeconds?: number;
  /** Simulated seconds per wall second (1 = real time). */
  timeScale?: number;
}

export interface RunningSensors {
  published(): number;
  stop(): Promise<void>;
}

export async function startSensorSimulation(o: SensorSimulationOptions): Promise<RunningSensors> {
  const client: MqttClient = await connectMqtt({ url: o.brokerUrl, clientId: `mesh-llm-${o.meshId}-sensors-${process.pid}`.slice(0, 64) });
  const t = topicsFor(o.meshId);
  const scale = o.timeScale ?? 1;
  let round = 0;
  let count = 0;
  let timer: NodeJS.Timeout | null = null;
  let trace = simulate({ scenario: o.scenario, nodes: o.nodes, calmSeconds: o.calmSeconds ?? 60, eventSeconds: o.eventSeconds ?? 30, seed: 1 });
  let index = 0;
  let start = Date.now();
  const tick = () => {
    const now = (Date.now() - start) * scale;
    while (index < trace.length && trace[index].at <= now) {
      const m = { ...trace[index], at: start + trace[index].at / scale };
      client.publish(t.sensors(m.node), JSON.stringify(m), { qos: 0 });
      index++;
      count++;
    }
    if (index >= trace.length) {
      round++;
      trace = simulate({ scenario: o.scenario, nodes: o.nodes, calmSeconds: o.calmSeconds ?? 60, eventSeconds: o.eventSeconds ?? 30, seed: 1 + round });
      index = 0;
      start = Date.now();
    }
    timer = setTimeout(tick, Math.max(10, 250 / scale));
  };
  tick();
  return {
    published: () => count,
    stop: async () => {
      if (timer) clearTimeout(timer);
      await endClient(client);
    },
  };
}
