/**
 * An error meant for the person running mesh-llm: its message names what went wrong
 * and what was expected. The CLI prints it on one line, without a stack trace.
 */
export class MeshLlmError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'MeshLlmError';
  }
}

/**
 * A request the model cannot take as given: a prompt longer than its context, steps beyond it,
 * a value outside its range. The CLI exits with code 2 for it, as for a bad command line, and
 * the HTTP endpoint answers 400.
 */
export class InputError extends MeshLlmError {
  constructor(message: string) {
    super(message);
    this.name = 'InputError';
  }
}
