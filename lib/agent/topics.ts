/**
 * The agentic mesh's topics (variant C: nodes hold roles, not heads), defined once beside the
 * head mesh's (lib/mesh/wire.ts): everything lives under mesh-llm/{mesh}/agent/.
 *
 *   orchestrator --query-->   retrieval --passages--> orchestrator
 *   orchestrator --reason-->  reasoning --draft-->    filter --verdict--> orchestrator
 *   sensing      --steering (retained)--> reasoning
 */
import { topicsFor } from '../mesh/wire';

export const ROLES = ['retrieval', 'reasoning', 'filter', 'sensing'] as const;
export type Role = (typeof ROLES)[number];

export function agentTopics(meshId: string) {
  const root = `${topicsFor(meshId).root}/agent`;
  return {
    root,
    /** Prompt and k, orchestrator -> retrieval. */
    query: `${root}/query`,
    /** Best passages for a query, retrieval -> orchestrator. */
    passages: `${root}/passages`,
    /** Prompt, passages and the filter's feedback, orchestrator -> reasoning. */
    reason: `${root}/reason`,
    /** The model's text, reasoning -> filter and orchestrator. */
    draft: `${root}/draft`,
    /** Each check's result, filter -> orchestrator. */
    verdict: `${root}/verdict`,
    /** Normalised readings per node, retained, sensing -> reasoning. */
    steering: `${root}/steering`,
    /** Role status, retained (last will: offline). */
    status: (role: Role) => `${root}/status/${role}`,
    statuses: `${root}/status/+`,
  };
}

export type AgentTopics = ReturnType<typeof agentTopics>;
