/** The CLI's subcommands: each module exports run(argv) -> exit code and a usage text. */
export interface Command {
  summary: string;
  load: () => Promise<{ run(argv: string[]): Promise<number>; usage: string }>;
}

export const commands: Record<string, Command> = {
  generate: { summary: 'generate text (monolithic engine)', load: () => import('./generate') },
};
