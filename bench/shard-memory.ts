/**
 * `npm run bench:shard-memory [-- --model PATH] [--json]`: what a native head node keeps in RAM
 * when its weight shard is used in place (the file mmap'd read-only, the host counterpart of
 * esp_partition_mmap of the ESP32's shard partition) against reading the rows into RAM.
 *
 * A TinyLlama-width synthetic checkpoint of one layer (mesh-llm synth --preset tinyllama
 * --layers 1, 700 MB, written to a temporary folder unless --model names a llama2.c file) is
 * cut into one shard for a one-node mesh (all 32 heads) in f32, int8, int4 and int2; for each
 * shard and each mode (`mesh-llm-node --shard-load map|copy`) a native node is started on a
 * broker, assigned the shard's heads, and once it reports "ready" its /proc/PID/status is read:
 * VmRSS (all resident pages), RssAnon (private memory: the copy lives here) and RssFile
 * (file-backed pages: the mapped shard's rows, clean and shared with the page cache, which the
 * kernel can drop and read again). Every row has been read once by then (the CRC-32 check).
 */
import { ChildProcess, spawn, spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { firmwareBinary } from '../lib/firmware/build';
import { readShardHeader, shardFileName, writeShards } from '../lib/firmware/shard';
import { freePort } from '../lib/mesh/broker';
import { connectMqtt, endClient, subscribe } from '../lib/mesh/mqtt';
import { cliEntry, spawnBroker } from '../lib/mesh/processes';
import { topicsFor } from '../lib/mesh/wire';
import { WeightFormat } from '../lib/llm/quant';

interface Row {
  format: WeightFormat;
  mode: 'map' | 'copy';
  shardBytes: number;
  vmRssBytes: number;
  rssAnonBytes: number;
  rssFileBytes: number;
}

function procStatus(pid: number): { vmRssBytes: number; rssAnonBytes: number; rssFileBytes: number } {
  const text = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kb = (k: string) => 1024 * Number(new RegExp(`^${k}:\\s+(\\d+) kB`, 'm').exec(text)?.[1] ?? NaN);
  return { vmRssBytes: kb('VmRSS'), rssAnonBytes: kb('RssAnon'), rssFileBytes: kb('RssFile') };
}

async function measure(url: string, shard: string, mode: 'map' | 'copy', id: string): Promise<ReturnType<typeof procStatus>> {
  const h = readShardHeader(fs.readFileSync(shard));
  const child: ChildProcess = spawn(firmwareBinary('mesh-llm-node'), ['--id', id, '--mesh', 'bench', '--shard', shard, '--shard-load', mode, '--broker', url, '--heartbeat', '60000'], { stdio: ['pipe', 'ignore', 'inherit'] });
  const t = topicsFor('bench');
  const client = await connectMqtt({ url, clientId: `bench-${id}` });
  try {
    await subscribe(client, [t.status(id)], 1);
    const state = (want: string) =>
      new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`${id}: no "${want}" status within 120 s`)), 120000);
        client.on('message', (_topic, payload) => {
          const s = JSON.parse(payload.toString()) as { state: string; reason?: string };
          if (s.state === want) {
            clearTimeout(timer);
            resolve();
          } else if (s.state === 'failed') reject(new Error(`${id}: ${s.reason}`));
        });
      });
    await state('online');
    const ready = state('ready');
    const model = { dim: h.model.dim, nLayers: h.model.nLayers, nHeads: h.model.nHeads, nKvHeads: h.model.nKvHeads, vocabSize: h.model.vocabSize, seqLen: h.model.seqLen };
    client.publish(t.assign(id), JSON.stringify({ protocol: 1, assignment: `bench-${id}`, slot: 1, heads: h.heads, weights: h.format, transport: 'int8', model }), { qos: 1 });
    await ready;
    return procStatus(child.pid as number);
  } finally {
    await endClient(client);
    child.kill('SIGTERM');
    await new Promise((r) => child.once('exit', r));
  }
}

async function main(): Promise<void> {
  const args = process.argv.slice(2);
  const json = args.includes('--json');
  const at = args.indexOf('--model');
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'mesh-llm-bench-shard-memory-'));
  try {
    let model = at >= 0 ? args[at + 1] : path.join(dir, 'tinyllama-1-layer.bin');
    if (at < 0) {
      process.stderr.write('bench: writing a one-layer TinyLlama-width checkpoint (700 MB)...\n');
      const r = spawnSync(process.execPath, [cliEntry(), 'synth', '--preset', 'tinyllama', '--format', 'llama2c', '--layers', '1', '--context', '64', '--out', model], { stdio: ['ignore', 'ignore', 'inherit'] });
      if (r.status !== 0) throw new Error('mesh-llm synth failed');
    }
    model = path.resolve(model);
    const broker = await spawnBroker(await freePort());
    const rows: Row[] = [];
    try {
      for (const format of ['f32', 'int8', 'int4', 'int2'] as const) {
        const out = path.join(dir, format);
        writeShards(model, 1, format, out);
        const shard = path.join(out, shardFileName(1));
        for (const mode of ['copy', 'map'] as const) {
          const m = await measure(broker.url, shard, mode, `${format}-${mode}`);
          rows.push({ format, mode, shardBytes: fs.statSync(shard).size, ...m });
        }
      }
    } finally {
      await broker.close();
    }
    const mib = (n: number) => (n / 1048576).toFixed(1);
    console.log('weights  mode   shard MiB   VmRSS MiB   RssAnon MiB   RssFile MiB');
    for (const r of rows) console.log(`${r.format.padEnd(8)} ${r.mode.padEnd(6)} ${mib(r.shardBytes).padStart(9)}   ${mib(r.vmRssBytes).padStart(9)}   ${mib(r.rssAnonBytes).padStart(11)}   ${mib(r.rssFileBytes).padStart(11)}`);
    const summary = (['f32', 'int8', 'int4', 'int2'] as const).map((f) => {
      const copy = rows.find((r) => r.format === f && r.mode === 'copy') as Row;
      const map = rows.find((r) => r.format === f && r.mode === 'map') as Row;
      return { format: f, shardBytes: copy.shardBytes, privateBytesSaved: copy.rssAnonBytes - map.rssAnonBytes, anonRatio: Number((map.rssAnonBytes / copy.rssAnonBytes).toFixed(3)) };
    });
    if (!json) for (const s of summary) console.log(`${s.format}: in place the node's private memory is ${mib(s.privateBytesSaved)} MiB smaller (${s.anonRatio}x the copy's) for a ${mib(s.shardBytes)} MiB shard`);
    console.log(JSON.stringify({ bench: 'shard-memory', model: path.basename(model), rows, summary }));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

main().catch((e: Error) => {
  process.stderr.write(`bench:shard-memory: ${e.message}\n`);
  process.exit(1);
});
