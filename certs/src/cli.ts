// vigil-certs: the development PKI (CA, nats-server/cloud-api server certs, service and device client certs).
// Run from the repo root with `pnpm certs <command>`.
import { resolve } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { ensureDevPkiWithReport, type DevPkiReport } from './dev-pki.js';
import { PkiError } from './errors.js';
import { assertId } from './identity.js';
import { listCerts } from './inspect.js';
import { defaultPkiDir } from './paths.js';

// pnpm runs package scripts inside the package directory; INIT_CWD is where the user typed the command,
// so relative paths mean what the user expects.
const baseCwd = process.env.INIT_CWD ?? process.cwd();

function pkiDir(dir: string | undefined): string {
  return dir ? resolve(baseCwd, dir) : defaultPkiDir(process.env, baseCwd);
}

interface DeviceRef {
  tenantId: string;
  deviceId: string;
}

function parseDeviceRef(value: string): DeviceRef {
  const m = /^([^/]+)\/([^/]+)$/.exec(value);
  if (!m) throw new InvalidArgumentError(`expected <tenant>/<device>, got ${JSON.stringify(value)}`);
  try {
    assertId('tenant id', m[1]!);
    assertId('device id', m[2]!);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return { tenantId: m[1]!, deviceId: m[2]! };
}

function collectDevice(value: string, previous: DeviceRef[] | undefined): DeviceRef[] {
  return [...(previous ?? []), parseDeviceRef(value)];
}

function collectService(value: string, previous: string[] | undefined): string[] {
  try {
    assertId('service name', value);
  } catch (e) {
    throw new InvalidArgumentError((e as Error).message);
  }
  return [...(previous ?? []), value];
}

function printReport(report: DevPkiReport, onlyChangedAnd?: (name: string) => boolean): void {
  const entries = report.entries.filter(
    (e) => !onlyChangedAnd || e.action !== 'kept' || onlyChangedAnd(e.name),
  );
  const width = Math.max(...entries.map((e) => e.name.length));
  for (const e of entries) {
    const reason = e.reason ? `  (${e.reason})` : '';
    console.log(`${e.action.padEnd(8)} ${e.name.padEnd(width)}  ${e.cert}  ${e.key}${reason}`);
  }
  const count = (a: string) => report.entries.filter((e) => e.action === a).length;
  console.log(
    `\n${count('created')} created, ${count('reissued')} reissued, ${count('kept')} kept in ${report.paths.dir}`,
  );
  console.log(`trust anchor (CA certificate): ${report.paths.caCert}`);
}

const dirOption = () =>
  new Option('--dir <path>', 'PKI directory (default: $VIGIL_PKI_DIR, else <repo root>/.vigil/pki)');

const program = new Command('vigil-certs')
  .description(
    'Development PKI for Vigil: one RSA-2048 CA, server certs for nats-server and cloud-api ' +
      '(SAN localhost + 127.0.0.1), and mTLS client certs for cloud services and devices. ' +
      'Idempotent: valid certificates are kept byte for byte; missing, expiring (< 7 days), foreign or ' +
      'mismatched ones are reissued with a new key. The CA is never replaced automatically.',
  )
  .showHelpAfterError()
  .addHelpText(
    'after',
    `
Layout of the PKI directory (mode 0700; keys 0600, certs 0644):
  ca.crt ca.key  nats-server.crt/.key  cloud-api.crt/.key
  services/<name>.crt/.key                 URI SAN spiffe://vigil/service/<name>
  devices/<tenant>/<device>.crt/.key       URI SAN spiffe://vigil/tenant/<tenant>/device/<device>

Environment:
  VIGIL_PKI_DIR   default PKI directory (relative paths are resolved against the directory you ran pnpm in)

Examples (from the repo root):
  pnpm certs init
  pnpm certs init --device acme/cam-01 --device acme/cam-02 --service cloud
  pnpm certs device acme/cam-03
  pnpm certs show --dir /tmp/pki`,
  );

program
  .command('init')
  .description('create or complete the dev PKI, then print what was created, reissued or kept')
  .addOption(dirOption())
  .option(
    '--device <tenant/device>',
    'device client cert to ensure; repeatable (default: dev/dev-001 when no --device is given)',
    collectDevice,
  )
  .option(
    '--service <name>',
    'cloud service client cert to ensure; repeatable (default: cloud when no --service is given)',
    collectService,
  )
  .action((opts: { dir?: string; device?: DeviceRef[]; service?: string[] }) => {
    const report = ensureDevPkiWithReport(pkiDir(opts.dir), {
      ...(opts.device ? { devices: opts.device } : {}),
      ...(opts.service ? { services: opts.service } : {}),
    });
    printReport(report);
  });

program
  .command('device')
  .description('ensure the client cert of one device (creating the CA and server certs first if missing)')
  .argument('<tenant/device>', 'tenant id and device id, e.g. acme/cam-01', parseDeviceRef)
  .addOption(dirOption())
  .action((device: DeviceRef, opts: { dir?: string }) => {
    const report = ensureDevPkiWithReport(pkiDir(opts.dir), { devices: [device] });
    const id = `device ${device.tenantId}/${device.deviceId}`;
    printReport(report, (name) => name === id);
  });

program
  .command('show')
  .description('list the certificates in the PKI directory with CN, SANs, expiry and status')
  .addOption(dirOption())
  .action((opts: { dir?: string }) => {
    const dir = pkiDir(opts.dir);
    const certs = listCerts(dir);
    if (certs.length === 0) {
      console.log(`no certificates in ${dir} (run: pnpm certs init)`);
      process.exitCode = 1;
      return;
    }
    const rows = certs.map((c) => [
      c.file,
      c.commonName ?? '?',
      Number.isNaN(c.notAfter.getTime()) ? '?' : c.notAfter.toISOString().replace(/\.000Z$/, 'Z'),
      c.status + (c.keyPresent ? '' : ' (no key)'),
      c.isCa ? 'CA' : c.sans.join(', '),
    ]);
    const header = ['FILE', 'CN', 'NOT AFTER', 'STATUS', 'SANS'];
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i]!.length)));
    for (const r of [header, ...rows]) {
      console.log(r.map((v, i) => (i === r.length - 1 ? v : v.padEnd(widths[i]!))).join('  '));
    }
    console.log(`\n${dir}`);
  });

try {
  // pnpm forwards a literal `--` in some versions (`pnpm certs -- init`); drop it so it is not an operand.
  const argv = process.argv.slice(2);
  if (argv[0] === '--') argv.shift();
  program.parse(argv, { from: 'user' });
} catch (e) {
  if (e instanceof PkiError) {
    console.error(`vigil-certs: ${e.message} [${e.code}]`);
    process.exit(1);
  }
  throw e;
}
