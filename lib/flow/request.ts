/**
 * A generation request as the Node-RED flow, its HTTP endpoint and MQTT input take it:
 * a prompt string, or {"prompt", "steps", "temperature", "topP", "seed"}, validated by ajv
 * against schemas/generate-request.json. Defaults are the CLI's.
 */
import * as fs from 'node:fs';
import * as path from 'node:path';
import Ajv from 'ajv';
import { GenerateOptions } from '../llm/engine';
import { InputError } from '../llm/errors';
import { packageRoot } from '../llm/resolve';

export interface GenerateRequest {
  prompt?: string;
  steps?: number;
  temperature?: number;
  topP?: number;
  seed?: number;
  job?: string;
}

const schema = JSON.parse(fs.readFileSync(path.join(packageRoot(), 'schemas', 'generate-request.json'), 'utf8'));
const validate = new Ajv({ allErrors: true }).compile<GenerateRequest>(schema);

/** A request that fails validation: the HTTP endpoint answers 400 with its message. */
export class BadRequestError extends InputError {
  readonly statusCode = 400;
  constructor(message: string) {
    super(message);
    this.name = 'BadRequestError';
  }
}

export function parseGenerateRequest(payload: unknown): GenerateOptions {
  const request = typeof payload === 'string' ? { prompt: payload } : payload;
  if (!validate(request)) {
    const why = (validate.errors ?? []).map((e) => `${e.instancePath || 'request'} ${e.message}`).join('; ');
    throw new BadRequestError(`invalid generate request: ${why}`);
  }
  return {
    prompt: request.prompt ?? '',
    steps: request.steps ?? 256,
    temperature: request.temperature ?? 1.0,
    topP: request.topP ?? 0.9,
    seed: BigInt(request.seed ?? 0),
  };
}

/** The job id a request asks for (generate --broker chooses its own, to follow it), if any. */
export function requestedJob(payload: unknown): string | undefined {
  const job = typeof payload === 'object' && payload !== null ? (payload as GenerateRequest).job : undefined;
  return typeof job === 'string' ? job : undefined;
}
