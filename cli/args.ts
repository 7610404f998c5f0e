/** Option parsing shared by the CLI commands: strict flags, checked numbers, one-line errors. */
import { parseArgs, ParseArgsConfig } from 'node:util';
import { InputError } from '../lib/llm/errors';

/** A bad command line: the CLI prints the message and exits with code 2. */
export class UsageError extends InputError {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

export type OptionSpec = NonNullable<ParseArgsConfig['options']>;

/** A value that reads as a negative number ("-5", "-0.25", "-1e3"), not as a flag. */
const NEGATIVE_NUMBER = /^-(\d|\.\d)/;

/**
 * `--flag -5` as `--flag=-5`: node's parser takes a value that starts with "-" for a flag, so
 * a negative number would otherwise be refused as ambiguous (with "=" it always parses).
 */
function joinNegativeValues(argv: readonly string[], options: OptionSpec): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const name = argv[i].startsWith('--') ? argv[i].slice(2) : '';
    const next = argv[i + 1];
    if (options[name]?.type === 'string' && next !== undefined && NEGATIVE_NUMBER.test(next)) {
      out.push(`${argv[i]}=${next}`);
      i++;
    } else out.push(argv[i]);
  }
  return out;
}

/** Parses argv against the options; unknown flags and stray arguments are usage errors. */
export function parseOptions<O extends OptionSpec>(argv: string[], options: O, command: string) {
  try {
    return parseArgs({ args: joinNegativeValues(argv, options), options, strict: true, allowPositionals: false }).values;
  } catch (e) {
    throw new UsageError(`${command}: ${(e as Error).message.split('\n')[0]}`);
  }
}

function parseNumber(flag: string, text: string | undefined, fallback: number, ok: (n: number) => boolean, expected: string): number {
  if (text === undefined) return fallback;
  const n = Number(text);
  if (text.trim() === '' || !Number.isFinite(n) || !ok(n)) throw new UsageError(`--${flag} ${JSON.stringify(text)}: expected ${expected}`);
  return n;
}

export function intOption(flag: string, text: string | undefined, fallback: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  return parseNumber(flag, text, fallback, (n) => Number.isInteger(n) && n >= min && n <= max, `a whole number from ${min} to ${max}`);
}

export function floatOption(flag: string, text: string | undefined, fallback: number, min: number, max: number): number {
  return parseNumber(flag, text, fallback, (n) => n >= min && n <= max, `a number from ${min} to ${max}`);
}

export function choiceOption<T extends string>(flag: string, text: string | undefined, fallback: T, choices: readonly T[]): T {
  if (text === undefined) return fallback;
  if (!(choices as readonly string[]).includes(text)) throw new UsageError(`--${flag} ${JSON.stringify(text)}: expected one of ${choices.join(', ')}`);
  return text as T;
}

export function seedOption(text: string | undefined): bigint {
  if (text === undefined) return 0n;
  if (!/^\d{1,20}$/.test(text.trim())) throw new UsageError(`--seed ${JSON.stringify(text)}: expected a whole number >= 0 (0 = from the clock)`);
  return BigInt(text.trim());
}
