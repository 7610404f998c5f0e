/**
 * mesh-llm-heads: the head nodes, drawn where they work (between broadcast and aggregate).
 * The message passes through unchanged (the gather runs in the mesh runtime while it moves);
 * the status is the live mesh: how many nodes are assigned, the layer in flight, who is late,
 * and how the last run ended. The mesh is started when the node is deployed, so the status
 * shows the assigned nodes before the first request.
 */
import type { Node, NodeAPI, NodeStatus } from 'node-red';
import type { GatherEvent } from '../lib/flow/runtime';
import { StepNodeDef, onMeshEvent, onStep, registerNode, stepOf, throttledStatus } from './common';

/** What the status shows: the assigned nodes and, during a run, the gather in flight and the late nodes. */
interface MeshView {
  nodes: string[];
  gather: GatherEvent | null;
  late: string[];
  /** The error that ended the last run, if one did. */
  failed?: string;
  /** Failovers of the current or last run: heads moved off lost nodes, and the replay's time. */
  moved: { lost: string[]; replayMs: number }[];
}

const nodesText = (n: number) => `${n} node${n === 1 ? '' : 's'}`;

/** The heads node's status for a view of the mesh. */
function meshStatus(v: MeshView): NodeStatus {
  const moved = v.moved.length ? ` · degraded: ${v.moved.flatMap((m) => m.lost).join(', ')} lost, replay ${Math.round(v.moved.reduce((t, m) => t + m.replayMs, 0))} ms` : '';
  const late = (v.late.length ? ` · late: ${v.late.join(', ')}` : '') + moved;
  if (v.gather) return { fill: v.late.length || v.moved.length ? 'yellow' : 'blue', shape: 'dot', text: `${nodesText(v.nodes.length)} · pos ${v.gather.pos} layer ${v.gather.layer}${late}` };
  if (v.failed) return { fill: 'red', shape: 'ring', text: `${nodesText(v.nodes.length)} · failed: ${v.failed}`.slice(0, 80) };
  return { fill: 'green', shape: 'ring', text: `${nodesText(v.nodes.length)} · idle${late}` };
}

export = function register(RED: NodeAPI): void {
  registerNode<StepNodeDef>(RED, 'mesh-llm-heads', function (this: Node, def: StepNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node);
    const mesh = onStep(RED, node, def.mesh, (_rt, msg, send) => {
      stepOf(node, msg);
      send(msg);
    });
    if (!mesh) return;
    const view: MeshView = { nodes: [], gather: null, late: [], moved: [] };
    const show = (force: boolean) => status(meshStatus(view), force);
    onMeshEvent(node, mesh, 'assigned', (nodes) => {
      view.nodes = nodes;
      show(true);
    });
    onMeshEvent(node, mesh, 'gather-start', (g) => {
      if (!view.gather) {
        view.late = []; // the first gather of a run
        view.moved = [];
      }
      view.gather = g;
      view.failed = undefined;
      show(false);
    });
    onMeshEvent(node, mesh, 'gather-late', (g) => {
      view.late = [...new Set([...view.late, ...(g.late ?? [])])];
      show(true);
    });
    onMeshEvent(node, mesh, 'failover', (e) => {
      view.moved.push({ lost: e.lost, replayMs: e.replayMs });
      view.late = view.late.filter((n) => !e.lost.includes(n));
      show(true);
    });
    onMeshEvent(node, mesh, 'run-end', ({ error }) => {
      view.gather = null;
      view.failed = error;
      show(true);
    });
    status({ fill: 'yellow', shape: 'ring', text: 'finding head nodes…' }, true);
    mesh.runtime().catch((e: Error) => status({ fill: 'red', shape: 'ring', text: `no mesh: ${e.message}`.slice(0, 80) }, true));
  });
};
