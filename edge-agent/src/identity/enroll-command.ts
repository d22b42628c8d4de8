import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname } from 'node:path';
import { parseArgs } from 'node:util';
import { loadAgentConfig } from '../config/load.js';
import { AGENT_VERSION } from '../version.js';
import { enroll } from './client.js';
import { DEVICE_ID_RE, IdentityError } from './errors.js';
import { readHardwareId } from './keys.js';
import { defaultIdentityDir, IdentityStore } from './store.js';

export const ENROLL_HELP = `Usage: vigil-agent enroll --cloud <host:port> --token <token> --ca-file <fleet-ca.pem>
                          (--data-dir <dir> | --config <agent.json>) [--device-id <id>] [--force]

Enrolls this gateway with the Vigil cloud: makes its keys here, sends only a CSR and a NATS public key with a
one-time token, and stores the issued identity (certificate, CA chain, NATS credentials) for the agent.
  --cloud        the cloud's DeviceService, host:port (from your admin)
  --token        the one-time enrollment token (pnpm vigil enroll-token create); or env VIGIL_ENROLL_TOKEN,
                 which keeps it out of the process list and shell history
  --ca-file      the fleet CA certificate (PEM) that the cloud's endpoint is checked against
  --device-id    1-63 of a-z, 0-9, "-", "_"; default: the config's device.deviceId, else the host name
  --data-dir     store the identity in <dir>/identity
  --config       the agent config: store it where that agent looks (identity.dir or <dataDir>/identity)
  --force        replace an identity that is already stored (the old one stays valid until revoked)
  --help, -h     show this help
Exit codes: 0 enrolled, 64 usage error, 1 enrollment failed (the message says what to do).`;

export interface CommandIo {
  out(line: string): void;
  err(line: string): void;
}

export interface EnrollCommandDeps {
  hostname?: () => string;
  hardwareId?: () => string;
  env?: NodeJS.ProcessEnv;
  deadlineMs?: number;
}

const consoleIo: CommandIo = { out: (l) => console.log(l), err: (l) => console.error(l) };

class UsageError extends Error {}

/** The host name as a device id: lower case, anything but [a-z0-9_-] as '-' (dots too), alphanumeric first. */
export function deviceIdFromHostname(name: string): string | undefined {
  const id = name
    .toLowerCase()
    .replace(/[^a-z0-9_-]/g, '-')
    .replace(/^[^a-z0-9]+/, '')
    .slice(0, 63);
  return DEVICE_ID_RE.test(id) ? id : undefined;
}

/** `vigil-agent enroll ...`; returns the exit code. */
export async function runEnrollCommand(
  argv: string[],
  io: CommandIo = consoleIo,
  deps: EnrollCommandDeps = {},
): Promise<number> {
  try {
    return await enrollCommand(argv, io, deps);
  } catch (err) {
    if (err instanceof UsageError) {
      io.err(`vigil-agent enroll: ${err.message}\n\n${ENROLL_HELP}`);
      return 64;
    }
    // One line: what failed and what to do (the messages end with the next step, "try again" included).
    io.err(`vigil-agent enroll failed: ${err instanceof Error ? err.message : String(err)}`);
    return 1;
  }
}

async function enrollCommand(argv: string[], io: CommandIo, deps: EnrollCommandDeps): Promise<number> {
  let values;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        cloud: { type: 'string' },
        token: { type: 'string' },
        'ca-file': { type: 'string' },
        'device-id': { type: 'string' },
        'data-dir': { type: 'string' },
        config: { type: 'string', short: 'c' },
        force: { type: 'boolean', default: false },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.help) {
    io.out(ENROLL_HELP);
    return 0;
  }
  const env = deps.env ?? process.env;
  const token = values.token ?? env.VIGIL_ENROLL_TOKEN;
  const missing = [
    values.cloud ? '' : '--cloud',
    token ? '' : '--token',
    values['ca-file'] ? '' : '--ca-file',
  ].filter(Boolean);
  if (missing.length > 0) throw new UsageError(`missing ${missing.join(', ')}`);
  if (!/^(?:\[[0-9a-f:.]+\]|[a-z0-9.-]+):\d{1,5}$/i.test(values.cloud!))
    throw new UsageError(`--cloud must be host:port, got ${JSON.stringify(values.cloud)}`);
  if (!values['data-dir'] === !values.config)
    throw new UsageError('give exactly one of --data-dir and --config');

  let dir: string;
  let configured: string | undefined;
  if (values.config) {
    const cfg = loadAgentConfig(values.config);
    dir = cfg.identity.dir ?? defaultIdentityDir(cfg.dataDir);
    configured = cfg.device?.deviceId;
  } else {
    dir = defaultIdentityDir(values['data-dir']!);
  }
  const fromHost = deviceIdFromHostname((deps.hostname ?? hostname)());
  const deviceId = values['device-id'] ?? configured ?? fromHost;
  if (!deviceId) throw new UsageError('cannot derive a device id from the host name: give --device-id');
  if (!DEVICE_ID_RE.test(deviceId))
    throw new UsageError(
      `invalid device id ${JSON.stringify(deviceId)}: use 1-63 characters of a-z, 0-9, "-" and "_", starting ` +
        'with a letter or digit',
    );

  const store = new IdentityStore(dir, { onWarning: (m) => io.err(`warning: ${m}`) });
  if (store.exists() && !values.force) {
    let what = 'an identity';
    try {
      const old = store.load();
      if (old) what = `the identity of device ${old.deviceId} (${old.tenantId}/${old.siteId})`;
    } catch {
      what = 'an unusable identity';
    }
    throw new IdentityError(
      'IDENTITY_EXISTS',
      `${dir} already holds ${what}: this gateway is enrolled. To replace it, run again with --force ` +
        '(then ask an admin to revoke the old device)',
    );
  }
  let caPem: string;
  try {
    caPem = readFileSync(values['ca-file']!, 'utf8');
  } catch (err) {
    throw new IdentityError(
      'IDENTITY_INVALID',
      `cannot read --ca-file ${values['ca-file']}: ${(err as Error).message}`,
    );
  }

  io.err(`enrolling ${deviceId} with ${values.cloud} ...`);
  const issued = await enroll({
    endpoint: values.cloud!,
    caPem,
    token: token!,
    deviceId,
    hardwareId: (deps.hardwareId ?? readHardwareId)(),
    agentVersion: AGENT_VERSION,
    deadlineMs: deps.deadlineMs,
  });
  const id = store.save(issued.info, issued.material, issued.configJwks);
  const where = dirname(id.files.cert);
  const start = values.config
    ? `vigil-agent --config ${values.config}`
    : `vigil-agent --config <agent.json> with "dataDir": "${values['data-dir']}"`;
  io.out(
    [
      `enrolled device ${id.deviceId} (tenant ${id.tenantId}, site ${id.siteId})`,
      `  certificate  valid until ${id.notAfter.toISOString()}; the agent renews it before then`,
      `  NATS         ${id.natsUrls.length > 0 ? id.natsUrls.join(', ') : '(none given: the agent will run offline)'}`,
      `  files        ${where}/: device.key and nats.creds (0600, secret), device.crt, ca.pem, identity.json`,
      `next: start the agent: ${start}`,
      '      (no "device" or "nats" section needed in the config: both come from this identity)',
    ].join('\n'),
  );
  return 0;
}
