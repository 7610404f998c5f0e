/** The JSON Schemas of the steering messages (schemas/sensors.json, schemas/attribution.json), compiled once by ajv. */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv, { ValidateFunction } from 'ajv';
import { MeshLlmError } from '../llm/errors';
import { packageRoot } from '../llm/resolve';

const ajv = new Ajv({ strict: true });
const validators = new Map<string, ValidateFunction>();

/** Parses a JSON payload and checks it against schemas/{name}.json; the error names the schema and the failing place. */
export function parseWithSchema<T>(name: 'sensors' | 'attribution', payload: Buffer | string): T {
  let v = validators.get(name);
  if (!v) validators.set(name, (v = ajv.compile(JSON.parse(fs.readFileSync(path.join(packageRoot(), 'schemas', `${name}.json`), 'utf8')))));
  let value: unknown;
  try {
    value = JSON.parse(payload.toString());
  } catch (e) {
    throw new MeshLlmError(`${name} message is not JSON: ${(e as Error).message}`);
  }
  if (!v(value)) {
    const first = v.errors?.[0];
    throw new MeshLlmError(`${name} message fails schemas/${name}.json: ${first?.instancePath || '(root)'} ${first?.message ?? 'is invalid'}`);
  }
  return value as T;
}
