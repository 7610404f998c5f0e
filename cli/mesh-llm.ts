/**
 * The `mesh-llm` command line. Errors meant for the user (MeshLlmError) print as one line
 * and exit non-zero (2 for a bad command line or an input the model cannot take, InputError;
 * 1 for the rest); anything else is a bug and shows its stack.
 */
import { InputError, MeshLlmError } from '../lib/llm/errors';
import { commands } from './commands/index';

function help(): string {
  const width = Math.max(...Object.keys(commands).map((c) => c.length));
  const lines = Object.entries(commands).map(([name, c]) => `  ${name.padEnd(width)}  ${c.summary}`);
  return `usage: mesh-llm <command> [options]\n\ncommands:\n${lines.join('\n')}\n\n\`mesh-llm <command> --help\` shows a command's options.\n`;
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(help());
    return name === undefined ? 2 : 0;
  }
  const command = commands[name];
  if (!command) {
    process.stderr.write(`mesh-llm: error: unknown command ${JSON.stringify(name)}\n\n${help()}`);
    return 2;
  }
  const mod = await command.load();
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`usage: ${mod.usage}\n`);
    return 0;
  }
  try {
    return await mod.run(rest);
  } catch (e) {
    if (e instanceof MeshLlmError) {
      process.stderr.write(`mesh-llm: error: ${e.message}\n`);
      if (e instanceof InputError) process.stderr.write(`(see \`mesh-llm ${name} --help\`)\n`);
      return e instanceof InputError ? 2 : 1;
    }
    throw e;
  }
}

if (require.main === module) {
  main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
  });
}
