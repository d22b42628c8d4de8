import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { InvalidArgumentError, Option, type Command } from 'commander';
import { ApiError } from '../adapters/api.js';
import { CliError } from '../errors.js';
import { table } from '../format.js';
import { apiClient, globals, withAuth, type AuthOptions, type CliContext } from './common.js';

const SCOPES = ['tenant', 'site', 'device'] as const;

interface ConfigDocument {
  scope: string;
  scope_id: string;
  revision: number;
  body: unknown;
  created_by: string;
  created_at: string;
}

interface DeviceConfig {
  device_id: string;
  effective_body: unknown;
  desired_version: string;
  reported_version: string | null;
  applied_version: string | null;
  state: string;
  reason: string;
  health: string;
  reported_at: string | null;
}

interface StoredModel {
  sha256: string;
  size: number;
  stored_at: string;
}

const enc = encodeURIComponent;

function readJsonFile(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (err) {
    throw new CliError(`cannot read ${path}: ${(err as Error).message}`, 1, { cause: err });
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new CliError(`${path} is not JSON: ${(err as Error).message}`, 1, { cause: err });
  }
}

/** A 404 said plainly. */
async function found<T>(what: string, call: () => Promise<T>): Promise<T> {
  try {
    return await call();
  } catch (err) {
    if (err instanceof ApiError && err.status === 404)
      throw new CliError(`no ${what} (API answered 404)`, 1, { cause: err });
    throw err;
  }
}

/**
 * `vigil config`: desired-state documents per scope (set, get), a device's effective config and state, issuing
 * it now; `vigil models`: upload and list model files. All through the REST API.
 */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const config = program
    .command('config')
    .description('desired device configuration: documents per scope, device state, issue (REST API)');
  const scopeOption = (): Option =>
    new Option('--scope <scope>', 'tenant, site or device').choices([...SCOPES]).makeOptionMandatory();

  withAuth(
    config
      .command('set')
      .description('store a new revision of a scope’s document (PUT /v1/configs/<scope>/<id>)')
      .addOption(scopeOption())
      .requiredOption('--id <id>', 'the scope’s id: the tenant, a site or a device id')
      .requiredOption('--file <path>', 'the body (JSON, ConfigBody)'),
    'admin',
  )
    .addHelpText(
      'after',
      `
Nothing is sent to devices: a rollout, or \`vigil config issue <device>\`, does that.

Example:
  pnpm vigil config set --scope site --id hq --file body.json --tenant dev`,
    )
    .action(async (o: AuthOptions & { scope: string; id: string; file: string }, cmd: Command) => {
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      const body = readJsonFile(o.file);
      const doc = await client.call<ConfigDocument>('PUT', `/v1/configs/${enc(o.scope)}/${enc(o.id)}`, body);
      io.out(g.json ? JSON.stringify(doc) : `${doc.scope} ${doc.scope_id}: revision ${doc.revision} stored`);
    });

  withAuth(
    config
      .command('get')
      .description('show the latest revision of a scope’s document (GET /v1/configs/<scope>/<id>)')
      .addOption(scopeOption())
      .requiredOption('--id <id>', 'the scope’s id'),
  ).action(async (o: AuthOptions & { scope: string; id: string }, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const doc = await found(`${o.scope} document ${o.id}`, () =>
      client.call<ConfigDocument>('GET', `/v1/configs/${enc(o.scope)}/${enc(o.id)}`),
    );
    if (g.json) io.out(JSON.stringify(doc));
    else
      io.out(
        `${doc.scope} ${doc.scope_id} revision ${doc.revision} by ${doc.created_by} at ${doc.created_at}\n` +
          JSON.stringify(doc.body, null, 2),
      );
  });

  withAuth(
    config
      .command('device')
      .description('a device’s effective config, versions and reported state (GET /v1/devices/<id>/config)')
      .argument('<id>', 'device id'),
  ).action(async (id: string, o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const d = await found(`device ${id}`, () =>
      client.call<DeviceConfig>('GET', `/v1/devices/${enc(id)}/config`),
    );
    if (g.json) {
      io.out(JSON.stringify(d));
      return;
    }
    const fields: Array<[string, string | null]> = [
      ['device', d.device_id],
      ['desired version', d.desired_version],
      ['reported version', d.reported_version],
      ['applied version', d.applied_version],
      ['state', d.state],
      ['reason', d.reason || null],
      ['health', d.health],
      ['reported at', d.reported_at],
    ];
    io.out(
      fields.map(([k, v]) => `${`${k}:`.padEnd(18)}${v ?? '-'}`).join('\n') +
        `\neffective body:\n${JSON.stringify(d.effective_body, null, 2)}`,
    );
  });

  withAuth(
    config
      .command('issue')
      .description('sign and send a device’s effective config now (POST /v1/devices/<id>/config/issue)')
      .argument('<id>', 'device id'),
    'admin',
  ).action(async (id: string, o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    const client = await apiClient(ctx, g, o);
    const r = await found(`device ${id}`, () =>
      client.call<{ device_id: string; version: string }>('POST', `/v1/devices/${enc(id)}/config/issue`, {}),
    );
    io.out(g.json ? JSON.stringify(r) : `device ${r.device_id}: version ${r.version} issued`);
  });

  const models = program
    .command('models')
    .description('model files that devices fetch by SHA-256 (REST API)');
  withAuth(
    models
      .command('upload')
      .description('upload a model file (PUT /v1/models/<sha256>)')
      .argument('<file>', 'the model file'),
    'admin',
  ).action(async (file: string, o: AuthOptions, cmd: Command) => {
    const g = globals(cmd);
    let bytes: Buffer;
    try {
      bytes = readFileSync(file);
    } catch (err) {
      throw new InvalidArgumentError(`cannot read ${file}: ${(err as Error).message}`);
    }
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const client = await apiClient(ctx, g, o);
    const m = await client.upload<StoredModel>(`/v1/models/${sha256}`, bytes);
    io.out(g.json ? JSON.stringify(m) : `${m.sha256} (${m.size} bytes) stored`);
  });

  withAuth(models.command('list').description('list stored models (GET /v1/models)')).action(
    async (o: AuthOptions, cmd: Command) => {
      const g = globals(cmd);
      const client = await apiClient(ctx, g, o);
      const { items } = await client.call<{ items: StoredModel[] }>('GET', '/v1/models');
      if (g.json) for (const m of items) io.out(JSON.stringify(m));
      else if (items.length === 0) io.err('no models');
      else
        io.out(
          table(
            ['SHA256', 'SIZE', 'STORED'],
            items.map((m) => [m.sha256, String(m.size), m.stored_at]),
          ),
        );
    },
  );
}
