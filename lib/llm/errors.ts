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
