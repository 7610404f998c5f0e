/**
 * The steering-calibration step as one object, for the Node-RED steering-calibration node and
 * any other host: sensor messages in, baselines out (to publish or save), and per node the
 * normalised readings, the vector it adds, and the steering message to send it on
 * mesh-llm/{mesh}/steer/{node}.
 */
import { Checkpoint } from '../llm/checkpoint';
import { Geometry, geometry } from '../llm/config';
import { Gateway } from '../llm/gateway';
import { HeadSteering } from '../llm/head';
import { SteeringMessage } from '../mesh/wire';
import { Baseline, Calibrator, CalibratorOptions } from './calibration';
import { loadSteering, steeringDir } from './directions';
import { steeringMessage } from './mesh';
import { SensorMessage, parseSensorMessage } from './sensors';
import { NodeHeads } from './shares';
import { NodeReadings, Steering } from './steer';

export { Calibrator, CHANNELS, DEFAULT_CALIBRATOR } from './calibration';
export type { Baseline, CalibratorOptions } from './calibration';
export { SCENARIOS, parseSensorCsv, parseSensorMessage, simulate } from './sensors';
export type { SensorMessage, ScenarioName } from './sensors';
export { Steering } from './steer';
export type { NodeReadings } from './steer';
export { MeshSteering, generateSteeredOnMesh, steeringMessage } from './mesh';

export interface SteeringStepOptions {
  modelPath: string;
  /** Which heads each node computes (the mesh's assignment). */
  nodes: NodeHeads[];
  /** Default: the settings' alpha. */
  alpha?: number;
  /** Default: steering/ of the package. */
  dir?: string;
  calibrator?: Partial<CalibratorOptions>;
}

export class SteeringStep {
  readonly calibrator: Calibrator;
  readonly steering: Steering;
  readonly g: Geometry;
  alpha: number;
  private messages = 0;

  constructor(o: SteeringStepOptions) {
    const ckpt = Checkpoint.open(o.modelPath);
    let gateway: Gateway;
    try {
      this.g = geometry(ckpt.info.config);
      gateway = Gateway.load(ckpt);
    } finally {
      ckpt.close();
    }
    const data = loadSteering(this.g.dim, this.g.nLayers, o.dir ?? steeringDir());
    this.steering = new Steering(this.g, gateway, data, o.nodes);
    this.alpha = o.alpha ?? data.settings.alpha;
    this.calibrator = new Calibrator(o.calibrator);
  }

  /** A sensor message (object, or a payload checked against schemas/sensors.json); returns the readings refused, with reasons. */
  ingest(message: SensorMessage | Buffer | string): { channel: string; reason: string }[] {
    const m = typeof message === 'string' || Buffer.isBuffer(message) ? parseSensorMessage(message) : message;
    return this.calibrator.addMessage(m);
  }

  /** Recomputes every baseline from its window; the result is what to publish or save. */
  calibrate(): Record<string, Record<string, Baseline>> {
    return this.calibrator.calibrate();
  }

  restore(baselines: Record<string, Record<string, Baseline>>): void {
    this.calibrator.restore(baselines);
  }

  /** Every node's normalised readings at `now` (ms). */
  readings(now: number): NodeReadings {
    return this.calibrator.allNormalised(now);
  }

  /** What each node adds to its head outputs at `now`. */
  vectors(now: number): Map<string, HeadSteering> {
    return this.steering.vectors(this.readings(now), this.alpha);
  }

  /** The steering message for every node at `now`, to publish on mesh-llm/{mesh}/steer/{node}. */
  steeringMessages(now: number): Map<string, SteeringMessage> {
    const readings = this.readings(now);
    const id = `s${++this.messages}-${now.toString(36)}`;
    const alpha = this.steering.alphaFor(readings, this.alpha); // inside the norm budget, the same for every node
    return new Map(this.steering.shares.map((s) => [s.node, steeringMessage(id, s, readings[s.node] ?? {}, alpha)]));
  }
}
