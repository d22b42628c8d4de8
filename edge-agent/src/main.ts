import { parseArgs } from 'node:util';
import { startAgent } from './agent.js';
import { AgentConfigError, loadAgentConfig } from './config/load.js';

const HELP = `Usage: vigil-agent --config <agent.json>

Runs the Vigil edge agent from its local config (it works offline; the cloud adds, never blocks).
  --config, -c   JSON config file (env VIGIL_AGENT_CONFIG)
  --help, -h     show this help
Exit codes: 0 stopped cleanly, 78 invalid configuration, 1 start-up or runtime failure.`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  const path = values.config ?? process.env.VIGIL_AGENT_CONFIG;
  if (!path) {
    console.error(`vigil-agent: no config given\n\n${HELP}`);
    return 78;
  }
  const agent = await startAgent(loadAgentConfig(path));
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await agent.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`vigil-agent: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof AgentConfigError ? 78 : 1);
  },
);
