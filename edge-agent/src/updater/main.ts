import { parseArgs } from 'node:util';
import { versionLine } from '@vigil/proto';
import { loadUpdaterConfig } from './config.js';
import { UpdaterError } from './errors.js';

const HELP = `Usage: vigil-updater --config <updater.json>

Installs the agent version the fleet asks for (<stateDir>/update/request.json, written by vigil-agent):
downloads and verifies it (TUF), unpacks it into releases/<version>, switches releases/current, restarts the
agent and watches its /healthz through a bake time, then commits or switches back. Progress is in
<stateDir>/update/status.json. A separate process, so that a broken agent cannot block its own rollback.
  --config, -c   JSON config file (env VIGIL_UPDATER_CONFIG)
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
    console.log(versionLine('vigil-updater'));
    return 0;
  }
  const path = values.config ?? process.env.VIGIL_UPDATER_CONFIG;
  if (!path) {
    console.error(`vigil-updater: no config given\n\n${HELP}`);
    return 78;
  }
  const config = loadUpdaterConfig(path);
  const { startUpdater } = await import('./run.js');
  const running = await startUpdater(config);
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await running.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    console.error(`vigil-updater: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(err instanceof UpdaterError && err.code === 'CONFIG_INVALID' ? 78 : 1);
  },
);
