/**
 * Variant C on top of variant A/B: the reasoning role as the gateway of head nodes on the bus
 * (`mesh-llm role reasoning --head-nodes K`), its model head-sharded and each head node steered
 * over MQTT by the sensing role's readings. Its drafts are token-identical to the model's in one
 * process cut into the same groups and steered by the same readings, on node.js head nodes and
 * on the native ones (the firmware core built for this machine).
 */
import { spawnBroker, spawnHeadNodes, NodeProcesses } from '../lib/mesh/processes';
import { RoleProcess, spawnRole } from '../lib/agent/processes';
import { MqttAgentBus } from '../lib/agent/bus';
import { Orchestrator } from '../lib/agent/orchestrator';
import { Reasoner } from '../lib/agent/reasoning';
import { AgentSteeringMessage } from '../lib/agent/messages';
import { scenarioReadings } from '../lib/steering/readings';
import { DraftMessage } from '../lib/agent/messages';
import { modelPaths } from './support/fixtures';

const PROMPT = 'Tom was playing in the park with his friend. Suddenly,';
const readings = () => JSON.parse(JSON.stringify(scenarioReadings('explosion', Array.from({ length: 8 }, (_, i) => `node-${i + 1}`)).readings));
const request = (id: string) => ({ protocol: 1 as const, id, attempt: 1, prompt: PROMPT, passages: [], feedback: [], tokens: 96, temperature: 0.8, topP: 0.9, seed: 11 });

describe('the reasoning role head-sharded over the mesh', () => {
  let broker: Awaited<ReturnType<typeof spawnBroker>>;
  let heads: NodeProcesses;
  let nativeHeads: NodeProcesses;
  let roles: RoleProcess[] = [];
  let bus: MqttAgentBus;
  let orchestrator: Orchestrator;

  beforeAll(async () => {
    broker = await spawnBroker(0);
    heads = spawnHeadNodes({ count: 4, brokerUrl: broker.url, meshId: 'default', modelPath: modelPaths.model, onLog: () => undefined });
    // a second mesh on the same broker: native head nodes and a reasoning role of their own
    nativeHeads = spawnHeadNodes({ count: 4, native: true, brokerUrl: broker.url, meshId: 'native', modelPath: modelPaths.model, onLog: () => undefined });
    roles = [
      spawnRole('reasoning', broker.url, ['--head-nodes', '4']),
      spawnRole('filter', broker.url),
      spawnRole('sensing', broker.url, ['--scenario', 'explosion']),
      spawnRole('reasoning', broker.url, ['--head-nodes', '4', '--mesh-id', 'native']),
    ];
    await Promise.all(roles.map((r) => r.ready));
    bus = await MqttAgentBus.connect({ url: broker.url, meshId: 'default', clientId: 'agent-sharded-test', log: () => undefined });
    orchestrator = await Orchestrator.connect(bus);
    await orchestrator.waitForRoles(['reasoning', 'filter', 'sensing'], 20000);
  });

  afterAll(async () => {
    await bus?.close();
    await Promise.all(roles.map((r) => r.stop()));
    await heads?.stop();
    await nativeHeads?.stop();
    await broker?.close();
  });

  test('its status names the head nodes; its steered drafts equal the one-process model cut into the same four groups, steered by the same readings', async () => {
    expect(orchestrator.roles().get('reasoning')?.detail).toBe('head-sharded over 4 head nodes (node-1: 0+1, node-2: 2+3, node-3: 4+5, node-4: 6+7), 4 steering nodes');
    const r = await orchestrator.ask(PROMPT, { k: 0, seed: 11 });
    const draft = r.attempts[0].draft;
    expect(draft.steering).toMatchObject({ source: 'scenario explosion', nodes: 4 });
    const local = Reasoner.local({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 4 });
    const steering: AgentSteeringMessage = { protocol: 1, source: 'scenario explosion', at: 0, readings: readings() };
    const same = await local.draft(request(r.id), steering);
    expect(draft.tokens).toEqual(same.tokens);
    expect(draft.text).toBe(same.text);
    const unsteered = await local.draft(request(r.id), null);
    expect(unsteered.tokens).not.toEqual(same.tokens); // the steering changed the draft
  });

  test('on native head nodes the same: the steered draft equals the one-process model\'s', async () => {
    const native = await MqttAgentBus.connect({ url: broker.url, meshId: 'native', clientId: 'agent-sharded-native', log: () => undefined });
    try {
      const drafts: DraftMessage[] = [];
      await native.on('draft', (d) => drafts.push(d));
      await native.publish('steering', { protocol: 1, source: 'test', at: 0, readings: readings() }, true);
      await new Promise((r) => setTimeout(r, 200)); // the retained steering reaches the reasoning role first
      await native.publish('reason', request('native-1'));
      const deadline = Date.now() + 60000;
      while (drafts.length === 0 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
      const local = Reasoner.local({ modelPath: modelPaths.model, tokenizerPath: modelPaths.tokenizer, groups: 4 });
      const same = await local.draft(request('native-1'), { protocol: 1, source: 'test', at: 0, readings: readings() });
      expect(drafts[0]).toMatchObject({ id: 'native-1', steering: { source: 'test', nodes: 4 } });
      expect(drafts[0].tokens).toEqual(same.tokens);
    } finally {
      await native.close();
    }
  });
});
