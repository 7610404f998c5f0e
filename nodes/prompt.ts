/**
 * mesh-llm-prompt: starts a generation. msg.payload is a prompt string, or a request object
 * {"prompt", "steps", "temperature", "topP", "seed"} validated against schemas/generate-request.json.
 * Requests wait their turn: one generation at a time per mesh; the status says "idle" (or how
 * many are queued) when a run ends. With a run store each request is a durable job, committed
 * before it is acknowledged (output 2, and msg.job); unfinished jobs of an earlier gateway are
 * resumed when the mesh starts. msg.async (POST /jobs in the shipped flow): output 2 takes
 * msg.res too, so the client is answered 202 {job} at once instead of at the end of the run.
 */
import type { Node, NodeAPI, NodeMessage } from 'node-red';
import { parseGenerateRequest, requestedJob } from '../lib/flow/request';
import type { FlowRuntime } from '../lib/flow/runtime';
import type { GenerateOptions } from '../lib/llm/engine';
import { optionsOf } from '../lib/runs/jobs';
import { IDLE, LlmMessage, MeshConfigNode, Send, StepNodeDef, onMeshEvent, onStep, registerNode, throttledStatus } from './common';

/** Where a request came from, as its job records it. */
function sourceOf(msg: LlmMessage & { req?: unknown; topic?: string }): string {
  if (msg.req) return 'http';
  if (typeof msg.topic === 'string' && msg.topic.endsWith('/generate')) return 'mqtt';
  return 'flow';
}

export = function register(RED: NodeAPI): void {
  registerNode<StepNodeDef>(RED, 'mesh-llm-prompt', function (this: Node, def: StepNodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const status = throttledStatus(node);
    let waiting = 0;
    const queued = () => status(waiting ? { fill: 'yellow', shape: 'ring', text: `queued (${waiting})` } : IDLE, true);

    /** Waits for the mesh, starts the run (of job `jobId`, if any) and sends its first step. */
    const run = async (mesh: MeshConfigNode, rt: FlowRuntime, options: GenerateOptions, m: LlmMessage & { job?: string }, send: Send, jobId?: string, resume?: number[]) => {
      waiting++;
      queued();
      try {
        const step = await rt.begin(options, resume);
        if (jobId) mesh.jobs?.begun(jobId, step.run, { kind: 'mqtt', nodes: rt.assignment.map((a) => ({ node: a.node, heads: a.heads })), quant: mesh.quant }, rt.tokenizer.encode(options.prompt, true, false).length);
        m.llm = step;
        (m as Record<string, unknown>).request = { prompt: options.prompt, steps: options.steps, temperature: options.temperature };
        status({ fill: 'green', shape: 'dot', text: `${resume?.length ? 'resumed' : 'running'}: ${JSON.stringify(options.prompt).slice(0, 30)}` }, true);
        send(m);
      } catch (e) {
        if (jobId) mesh.jobs?.refusedAtStart(jobId, e as Error);
        throw e;
      } finally {
        waiting--;
      }
    };

    const mesh = onStep(RED, node, def.mesh, async (rt, msg, send) => {
      const options = parseGenerateRequest(msg.payload);
      const jobs = config?.jobs;
      const m = msg as LlmMessage & { job?: string };
      if (jobs && config?.model) {
        const wanted = requestedJob(msg.payload);
        if (wanted && jobs.store.job(wanted)) {
          jobs.tellState(wanted); // a request delivered again (MQTT QoS 1): the job exists, it is not run twice
          return;
        }
        const job = jobs.accept(options, sourceOf(msg), config.model, wanted);
        m.job = job.id;
        const accepted: NodeMessage & Record<string, unknown> = { payload: { job: job.id, state: job.state }, job: job.id };
        const http = m as LlmMessage & { async?: boolean; res?: unknown };
        if (http.async && http.res) {
          // answered at once (202, the job); the client asks GET /jobs/:id later
          accepted.res = http.res;
          accepted.statusCode = 202;
          delete http.res;
        }
        send([null, accepted]);
      }
      await run(config as MeshConfigNode, rt, options, m, (out) => send([out as NodeMessage, null]), m.job);
    });
    const config = mesh;
    if (!mesh) return;
    queued();
    onMeshEvent(node, mesh, 'run-end', queued);

    // a gateway restarted mid-generation: every unfinished job goes on from its last committed token
    const jobs = mesh.jobs;
    if (jobs) {
      mesh.runtime().then(
        (rt) => {
          for (const job of jobs.store.unfinished()) {
            if (!jobs.claim(job.id) || !mesh.model) continue;
            const resume = jobs.resumeOf(job, mesh.model);
            if ('refused' in resume) {
              node.warn(resume.refused);
              continue;
            }
            node.log(`resuming job ${job.id} from position ${resume.tokens.length}`);
            const m: LlmMessage & { job?: string } = { _msgid: RED.util.generateId(), job: job.id, payload: job.settings };
            run(mesh, rt, optionsOf(job.settings), m, (out) => node.send([out as NodeMessage, null]), job.id, resume.tokens).catch((e: Error) => node.error(`job ${job.id} could not resume: ${e.message}`, m));
          }
        },
        () => undefined, // the config node reports why the mesh did not start
      );
    }
  });
};
