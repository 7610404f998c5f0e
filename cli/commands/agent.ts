/**
 * `mesh-llm agent`: one request through the agentic mesh's roles (retrieval, reasoning,
 * filter, sensing): in this process, or through roles running on a broker (--broker). Prints
 * the passages used, each draft's verdict and the final text with its sources.
 */
import { UsageError, floatOption, intOption, parseOptions } from '../args';
import { printJson } from '../output';
import { MqttAgentBus } from '../../lib/agent/bus';
import { startLocalAgent } from '../../lib/agent/local';
import { AgentResult, ASK_DEFAULTS, AskOptions, Orchestrator } from '../../lib/agent/orchestrator';
import { TEMPERATURE_RANGE } from '../../lib/llm/engine';
import { resolveOrFetchModelPaths } from '../../lib/llm/provide';
import { DEFAULT_MESH_ID } from '../../lib/mesh/run';
import { stderrLogger } from '../../lib/mesh/mqtt';
import { filterOf, filterOptionSpec, filterUsage, indexOf, indexOptionSpec, indexUsage, sensingOf, sensingOptionSpec, sensingUsage } from './agent-options';

export const usage = `mesh-llm agent --prompt TEXT [--corpus DIR | --index FILE] [--k N] [--attempts N] [--tokens N]
               [--temperature T] [--top-p P] [--seed S] [--scenario NAME | --sensors FILE] [--alpha A]
               [--lexicon FILE] [--max-repeated4 R] [--max-perplexity P] [--model PATH] [--tokenizer PATH]
               [--broker URL [--username U --password P] [--mesh-id ID] [--wait MS]] [--json]

  --prompt TEXT      the request: the text the answer continues
  --k N              passages to retrieve (default ${ASK_DEFAULTS.k}; 0 = none)
  --attempts N       drafts at most before giving up (default ${ASK_DEFAULTS.maxAttempts})
  --tokens N         tokens per draft (default ${ASK_DEFAULTS.tokens})
  --temperature T    first draft's temperature, 0 = greedy (default ${ASK_DEFAULTS.temperature})
  --top-p P          nucleus threshold (default ${ASK_DEFAULTS.topP})
  --seed S           first draft's sampling seed (default ${ASK_DEFAULTS.seed})${indexUsage}${sensingUsage}${filterUsage}
  --model PATH       llama2.c checkpoint (default: the model resolution order)
  --tokenizer PATH   llama2.c tokenizer (default: beside the model)
  --broker URL       use the roles running on this broker (mesh-llm role ...) instead of running them here;
                     --corpus/--index, the sensing and filter options then belong to the roles
  --username U       with --broker: broker username (or in the URL)
  --password P       with --broker: broker password
  --mesh-id ID       the mesh's topic tree mesh-llm/ID/agent/... (default ${DEFAULT_MESH_ID})
  --wait MS          with --broker: how long to wait for the roles to be ready (default 10000)
  --json             print the whole result (passages, every draft and verdict, the answer) as one JSON object`;

export const agentOptionSpec = {
  prompt: { type: 'string' },
  k: { type: 'string' },
  attempts: { type: 'string' },
  tokens: { type: 'string' },
  temperature: { type: 'string' },
  'top-p': { type: 'string' },
  seed: { type: 'string' },
  model: { type: 'string' },
  tokenizer: { type: 'string' },
  broker: { type: 'string' },
  username: { type: 'string' },
  password: { type: 'string' },
  'mesh-id': { type: 'string' },
  wait: { type: 'string' },
  json: { type: 'boolean' },
  ...indexOptionSpec,
  ...filterOptionSpec,
  ...sensingOptionSpec,
} as const;

const oneLine = (s: string, max = 100) => {
  const t = s.replace(/\s+/g, ' ').trim();
  return t.length > max ? `${t.slice(0, max - 1)}…` : t;
};

/** The result as a person reads it: the passages, each verdict, the answer. */
export function formatResult(r: AgentResult): string {
  const lines: string[] = [];
  lines.push(r.passages.length ? `passages (${r.passages.length}):` : 'passages: none');
  r.passages.forEach((p, i) => lines.push(`  [${i + 1}] ${p.source} (${p.kind}, score ${p.score.toFixed(2)}): ${oneLine(p.text)}`));
  lines.push('verdicts:');
  for (const a of r.attempts) {
    const s = a.draft.steering ? `, steered by ${a.draft.steering.source} on ${a.draft.steering.nodes} nodes` : '';
    lines.push(`  draft ${a.attempt} (temperature ${a.draft.temperature}, seed ${a.draft.seed}${s}): ${a.verdict.accepted ? 'accepted' : 'rejected'}`);
    for (const c of a.verdict.checks) lines.push(`    ${c.ok ? 'ok  ' : 'FAIL'} ${c.check}: ${c.reason}`);
    if (!a.verdict.accepted) lines.push(`    text: ${oneLine(a.draft.text)}`);
  }
  lines.push(r.accepted ? 'answer:' : `answer (no draft accepted in ${r.attempts.length}; the last one):`);
  lines.push(r.answer);
  return `${lines.join('\n')}\n`;
}

export async function run(argv: string[]): Promise<number> {
  const v = parseOptions(argv, agentOptionSpec, 'agent');
  if (v.prompt === undefined) throw new UsageError('agent: --prompt TEXT is required');
  const ask: AskOptions = {
    k: intOption('k', v.k, ASK_DEFAULTS.k, 0, 50),
    maxAttempts: intOption('attempts', v.attempts, ASK_DEFAULTS.maxAttempts, 1, 100),
    tokens: intOption('tokens', v.tokens, ASK_DEFAULTS.tokens, 1, 4096),
    temperature: floatOption('temperature', v.temperature, ASK_DEFAULTS.temperature, TEMPERATURE_RANGE.min, TEMPERATURE_RANGE.max),
    topP: floatOption('top-p', v['top-p'], ASK_DEFAULTS.topP, 0, 1),
    seed: intOption('seed', v.seed, ASK_DEFAULTS.seed, 1),
  };
  const log = stderrLogger('agent');
  if (!v.json) ask.onEvent = (e) => e.kind === 'draft' && process.stderr.write(`draft ${e.draft.attempt} written (${e.draft.tokens.length} tokens), filtering...\n`);
  let result: AgentResult;
  if (v.broker) {
    for (const k of ['corpus', 'index', 'scenario', 'sensors', 'alpha', 'lexicon', 'max-repeated4', 'max-perplexity', 'model', 'tokenizer'] as const) {
      if (v[k] !== undefined) throw new UsageError(`agent: --${k} belongs to the roles when --broker is given (mesh-llm role ... --${k})`);
    }
    const bus = await MqttAgentBus.connect({ url: v.broker, username: v.username, password: v.password, meshId: v['mesh-id'] ?? DEFAULT_MESH_ID, clientId: `mesh-llm-agent-${process.pid}`, log });
    try {
      const orchestrator = await Orchestrator.connect(bus);
      await orchestrator.waitForRoles(ask.k === 0 ? ['reasoning', 'filter'] : ['retrieval', 'reasoning', 'filter'], intOption('wait', v.wait, 10000, 0, 600000));
      result = await orchestrator.ask(v.prompt, ask);
    } finally {
      await bus.close();
    }
  } else {
    const paths = await resolveOrFetchModelPaths({ model: v.model, tokenizer: v.tokenizer });
    const agent = await startLocalAgent({ modelPath: paths.model, tokenizerPath: paths.tokenizer, index: indexOf(v), sensing: sensingOf(v), ...filterOf(v), log, meshId: v['mesh-id'] });
    try {
      result = await agent.orchestrator.ask(v.prompt, ask);
    } finally {
      await agent.close();
    }
  }
  if (v.json) printJson(result);
  else process.stdout.write(formatResult(result));
  return 0;
}
