import { parseArgs } from 'node:util';
import { pino } from 'pino';
import { AgentConfigError, loadAgentConfig } from './config/load.js';
import { runEnrollCommand } from './identity/enroll-command.js';
import { versionLine } from '@vigil/proto';
import { registerContextManager, routeDiagToLogger } from './lib/tracing.js';

const HELP = `Usage: vigil-agent --config <agent.json>
       vigil-agent enroll --help      enroll this gateway with the cloud (once, before the first start)

Runs the Vigil edge agent from its local config (it works offline; the cloud adds, never blocks).
  --config, -c   JSON config file (env VIGIL_AGENT_CONFIG)
  --help, -h     show this help
  --version      print the version and the commit it was built from
Exit codes: 0 stopped cleanly, 78 invalid configuration, 1 start-up or runtime failure.`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    console.log(versionLine('vigil-agent'));
    return 0;
  }
  const path = values.config ?? process.env.VIGIL_AGENT_CONFIG;
  if (!path) {
    console.error(`vigil-agent: no config given\n\n${HELP}`);
    return 78;
  }
  const config = loadAgentConfig(path);
  // Loaded here, not at the top: `vigil-agent enroll` needs none of the agent (ONNX runtime, sharp, ffmpeg).
  const { startAgent } = await import('./agent.js');
  // Process-wide, so here and not in startAgent: active spans reach the log lines, SDK warnings the log.
  registerContextManager();
  routeDiagToLogger(pino({ name: 'vigil-agent', level: config.log.level }).child({ component: 'otel' }));
  const agent = await startAgent(config);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await agent.stop();
  return 0;
}

// `enroll` is a subcommand with its own options; everything else runs the agent, as before.
const run = process.argv[2] === 'enroll' ? runEnrollCommand(process.argv.slice(3)) : main();
run.then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`vigil-agent: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof AgentConfigError ? 78 : 1);
  },
);
