import { parseArgs } from 'node:util';
import { versionLine } from '@vigil/proto';
import { startCloud } from './app.js';
import { loadCloudConfig } from './config/load.js';
import { CLOUD_ROLES, roleOverride } from './config/roles.js';
import { VigilError } from './lib/errors.js';
import { createLogger } from './lib/observability.js';
import { registerContextManager, routeDiagToLogger } from './lib/tracing.js';

const HELP = `Usage: vigil-cloud --config <file.json> [--role <name>]...

Runs the Vigil cloud control plane: the roles the config's \`roles\` names (default all in one process).
  --config, -c   JSON config file (env VIGIL_CLOUD_CONFIG). DATABASE_URL overrides database.url.
  --role, -r     run this role (repeatable, or a comma list; env VIGIL_CLOUD_ROLES=api,ingest); overrides
                 the config's roles. Roles: ${CLOUD_ROLES.join(', ')}
  --help, -h     show this help
  --version      print the version and the commit it was built from
Exit codes: 0 stopped cleanly, 78 invalid configuration, 1 start-up or runtime failure.`;

async function main(): Promise<number> {
  const { values } = parseArgs({
    options: {
      config: { type: 'string', short: 'c' },
      role: { type: 'string', short: 'r', multiple: true },
      help: { type: 'boolean', short: 'h' },
      version: { type: 'boolean' },
    },
  });
  if (values.help) {
    console.log(HELP);
    return 0;
  }
  if (values.version) {
    console.log(versionLine('vigil-cloud'));
    return 0;
  }
  const path = values.config ?? process.env.VIGIL_CLOUD_CONFIG;
  if (!path) {
    console.error(`vigil-cloud: no config given\n\n${HELP}`);
    return 78;
  }
  const config = loadCloudConfig(path, process.env, roleOverride(values.role, process.env.VIGIL_CLOUD_ROLES));
  // Process-wide, so here and not in startCloud: active spans reach the log lines, SDK warnings the log.
  registerContextManager();
  const log = createLogger(config.log.level, 'vigil-cloud');
  routeDiagToLogger(log.child({ component: 'otel' }));
  const app = await startCloud(config, { logger: log });
  await new Promise<void>((resolve) => {
    process.once('SIGINT', resolve);
    process.once('SIGTERM', resolve);
  });
  await app.stop();
  return 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    const code = err instanceof VigilError && err.code === 'CONFIG_INVALID' ? 78 : 1;
    console.error(`vigil-cloud: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(code);
  },
);
