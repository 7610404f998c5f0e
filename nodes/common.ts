/**
 * What every mesh-llm Node-RED node shares: the message shape of the layer loop, access to
 * the mesh config node and its events, throttled status ("idle" once a run ends), and one way
 * to run a step so that an error ends the run and reaches Catch nodes through done(err).
 */
import type { EventEmitter } from 'node:events';
import type { Node, NodeAPI, NodeDef, NodeMessage, NodeMessageInFlow, NodeStatus } from 'node-red';
import type { FlowRuntime, MeshEventMap, MeshEvents, StepState } from '../lib/flow/runtime';
import type { Jobs, ModelIdentity } from '../lib/runs/jobs';

/** A message in the layer loop: the run's step and its hidden state x [dim]. */
export interface LlmMessage extends NodeMessageInFlow {
  llm?: StepState;
  hidden?: Float32Array;
}

export interface MeshConfigNode extends Node {
  /** Resolves once the model is loaded and the head nodes are assigned. */
  runtime(): Promise<FlowRuntime>;
  /** Where the mesh's bus is, for nodes that only listen to or publish on it. */
  bus: { url: string; username?: string; password?: string; meshId: string };
  /** What happens on the mesh, told by its runtime (the same emitter across restarts of the runtime). */
  events: MeshEvents;
  /** Durable jobs and recorded runs (null: no run store, MESH_LLM_RUNS_DB unset). */
  jobs: Jobs | null;
  /** The model the runtime loaded (set once it starts, when there is a run store). */
  model?: ModelIdentity;
  quant: 'f32' | 'int8';
}

/** The status of a layer-loop node between runs. */
export const IDLE: NodeStatus = { fill: 'grey', shape: 'ring', text: 'idle' };

/** Listens to one of the mesh's events for as long as the node lives. */
export function onMeshEvent<K extends keyof MeshEventMap>(node: Node, mesh: MeshConfigNode, event: K, listener: (...args: MeshEventMap[K]) => void): void {
  const events: EventEmitter = mesh.events; // the event map is checked at the call site
  events.on(event, listener);
  node.on('close', () => events.off(event, listener));
}

export type Send = (msg: NodeMessage | (NodeMessage | null)[]) => void;
export type Done = (err?: Error) => void;

/** The config node a node points at, or an error naming what is missing. */
export function meshOf(RED: NodeAPI, node: Node, id: string | undefined): MeshConfigNode {
  const config = id ? (RED.nodes.getNode(id) as MeshConfigNode | null) : null;
  if (!config) {
    node.status({ fill: 'red', shape: 'ring', text: 'no mesh configured' });
    throw new Error(`${node.type} "${node.name ?? node.id}" has no mesh-llm-config node`);
  }
  return config;
}

/** node.status at most every `ms`, so a token loop does not flood the editor. */
export function throttledStatus(node: Node, ms = 250): (s: NodeStatus, force?: boolean) => void {
  let last = 0;
  return (s, force = false) => {
    const now = Date.now();
    if (force || now - last >= ms) {
      last = now;
      node.status(s);
    }
  };
}

/** The step and hidden state of a message, or an error saying what the node expected. */
export function stepOf(node: Node, msg: LlmMessage, needHidden = true): { step: StepState; x: Float32Array } {
  if (!msg.llm || typeof msg.llm.run !== 'string') throw new Error(`${node.type} expects msg.llm from the mesh-llm layer loop (wire it after prompt/embed)`);
  if (needHidden && !(msg.hidden instanceof Float32Array)) throw new Error(`${node.type} expects msg.hidden, the hidden state (Float32Array)`);
  return { step: msg.llm, x: msg.hidden as Float32Array };
}

/**
 * Registers the input handler of a layer-loop node: runs `step` with the mesh runtime; an
 * error aborts the run (its session ends, the next queued run may start) and goes to done(err).
 * Returns the node's mesh config node (null when it has none).
 */
export function onStep(RED: NodeAPI, node: Node, configId: string | undefined, step: (rt: FlowRuntime, msg: LlmMessage, send: Send) => Promise<void> | void): MeshConfigNode | null {
  let mesh: MeshConfigNode | null = null;
  try {
    mesh = meshOf(RED, node, configId);
  } catch (e) {
    node.error((e as Error).message);
  }
  node.on('input', (msg: NodeMessageInFlow, send: Send, done: Done) => {
    const m = msg as LlmMessage;
    if (!mesh) return done(new Error(`${node.type} has no mesh-llm-config node`));
    mesh
      .runtime()
      .then((rt) =>
        Promise.resolve(step(rt, m, send)).catch((e: Error) => {
          if (m.llm?.run) rt.abort(m.llm.run, e);
          throw e;
        }),
      )
      .then(
        () => done(),
        (e: Error) => {
          node.status({ fill: 'red', shape: 'dot', text: e.message.slice(0, 60) });
          done(e);
        },
      );
  });
  return mesh;
}

/** A node constructor as Node-RED calls it: `this` is the new node, `def` its properties from the flow. */
export type NodeConstructorFn<D extends NodeDef> = (this: Node, def: D) => void;

/** Registers a node type (Node-RED's typings want a class-like constructor; ours are plain functions). */
export function registerNode<D extends NodeDef>(RED: NodeAPI, type: string, ctor: NodeConstructorFn<D>, credentials?: Record<string, { type: 'text' | 'password' }>): void {
  const register = RED.nodes.registerType as (type: string, ctor: unknown, opts?: { credentials: typeof credentials }) => void;
  register.call(RED.nodes, type, ctor, credentials ? { credentials } : undefined);
}

/** Properties every layer-loop node has: its name and the mesh config node it uses. */
export interface StepNodeDef extends NodeDef {
  mesh: string;
}

export type StatusFn = (s: NodeStatus, force?: boolean) => void;

/**
 * Registers a layer-loop node type whose whole behaviour is one step on the mesh runtime:
 * `step(rt, msg, send, status)` runs for each message, inside onStep's error handling. The
 * status says "idle" until a run and when it ends (a node that ends it may then say more).
 */
export function registerStepNode(RED: NodeAPI, type: string, step: (this: Node, rt: FlowRuntime, msg: LlmMessage, send: Send, status: StatusFn, mesh: MeshConfigNode) => Promise<void> | void): void {
  registerNode<StepNodeDef>(RED, type, function (this: Node, def: StepNodeDef) {
    RED.nodes.createNode(this, def);
    const status = throttledStatus(this);
    const mesh: MeshConfigNode | null = onStep(RED, this, def.mesh, (rt, msg, send) => step.call(this, rt, msg, send, status, mesh as MeshConfigNode));
    if (!mesh) return;
    status(IDLE, true);
    onMeshEvent(this, mesh, 'run-end', () => status(IDLE, true));
  });
}

/** A number from an editor field (a string), or the fallback when it is empty or not a finite number. */
export function numberOr(text: string | undefined, fallback: number): number {
  const n = Number(text);
  return text !== undefined && text !== '' && Number.isFinite(n) ? n : fallback;
}
