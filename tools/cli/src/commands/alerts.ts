import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { CliError } from '../errors.js';
import { table } from '../format.js';
import { apiClient, collect, globals, int, withAuth, type AuthOptions, type CliContext } from './common.js';

interface Target {
  id: string;
  name: string;
  url: string | null;
  auth: string;
  format?: string;
  delivery?: string;
  enabled: boolean;
  secret?: string | null;
  feed_token?: string;
}
interface Rule {
  id: string;
  name: string;
  match: Record<string, unknown>;
  cap: Record<string, unknown>;
  target_ids: string[];
  enabled: boolean;
}
interface Incident {
  id: string;
  state: string;
  site_id: string;
  camera_id: string;
  track_id: string;
  seq: number;
  first_seen_at: string;
}
interface Message {
  id: string;
  msg_type: string;
  identifier: string;
  state: string;
  attempts: number;
  http_status: number | null;
  answer: string | null;
  error: string | null;
  sent: string;
}

const readPem = (path: string | undefined, what: string): string | undefined => {
  if (path === undefined) return undefined;
  try {
    return readFileSync(path, 'utf8');
  } catch {
    throw new CliError(`cannot read ${what} ${path}`);
  }
};

/** `vigil alerts`: CAP 1.2 agency alerts (rules, targets, incidents, dead letters) over the REST API. */
export function register(program: Command, ctx: CliContext): void {
  const { io } = ctx;
  const alerts = program
    .command('alerts')
    .description('CAP 1.2 alerts to agencies: rules, targets, incidents, messages and dead letters');
  const call = async <T>(cmd: Command, o: AuthOptions, method: string, path: string, body?: unknown) => {
    const g = globals(cmd);
    return { g, r: await (await apiClient(ctx, g, o)).call<T>(method, path, body) };
  };

  const targets = alerts.command('targets').description('agency endpoints (HTTPS with mTLS or RFC 9421)');
  withAuth(
    targets
      .command('create')
      .description('add a target (POST /v1/alerts/targets); prints its one-time secrets')
      .requiredOption('--name <name>', 'what the agency is')
      .option('--url <url>', 'https endpoint that takes the messages (not with --pull)')
      .option('--format <format>', 'cap (CAP 1.2 XML) or eido (EIDO-style JSON)', 'cap')
      .option('--pull', 'pull-only: no url, the messages are only in the Atom feed (its token is printed)')
      .option('--cert <file>', 'mTLS: client certificate (PEM) the agency trusts')
      .option('--key <file>', 'mTLS: its private key (PEM)')
      .option(
        '--ca <file>',
        "mTLS: the CA of the agency's server certificate (PEM; default the system store)",
      )
      .option('--signature', 'sign requests with RFC 9421 (HMAC) instead of mTLS'),
    'admin',
  ).action(
    async (
      o: AuthOptions & {
        name: string;
        url?: string;
        format: string;
        pull?: boolean;
        cert?: string;
        key?: string;
        ca?: string;
        signature?: boolean;
      },
      cmd: Command,
    ) => {
      if (o.pull && (o.url || o.signature || o.cert || o.key || o.ca))
        throw new CliError('--pull takes no --url, --signature, --cert, --key or --ca');
      if (!o.pull && !o.url) throw new CliError('--url is required (or --pull)');
      const body = o.pull
        ? { name: o.name, format: o.format, delivery: 'pull' }
        : {
            name: o.name,
            format: o.format,
            url: o.url,
            auth: o.signature ? 'signature' : 'mtls',
            ...(o.signature
              ? {}
              : {
                  client_cert_pem: readPem(o.cert, '--cert'),
                  client_key_pem: readPem(o.key, '--key'),
                  ca_pem: readPem(o.ca, '--ca'),
                }),
          };
      const { g, r } = await call<Target>(cmd, o, 'POST', '/v1/alerts/targets', body);
      if (g.json) return io.out(JSON.stringify(r));
      io.out(`target ${r.id} -> ${r.url ?? 'Atom feed only'} (${r.auth}, ${r.format ?? 'cap'})`);
      if (r.secret) io.out(`secret: ${r.secret}`);
      io.out(`feed token: ${r.feed_token ?? '?'}`);
      io.err('the secrets are shown only now');
    },
  );
  withAuth(targets.command('list').description('the tenant’s targets'), 'admin').action(
    async (o: AuthOptions, cmd: Command) => {
      const { g, r } = await call<{ items: Target[] }>(cmd, o, 'GET', '/v1/alerts/targets');
      if (g.json) for (const t of r.items) io.out(JSON.stringify(t));
      else if (r.items.length === 0) io.err('no targets');
      else
        io.out(
          table(
            ['ID', 'NAME', 'FORMAT', 'AUTH', 'STATE', 'URL'],
            r.items.map((t) => [
              t.id,
              t.name,
              t.format ?? 'cap',
              t.auth,
              t.enabled ? 'enabled' : 'disabled',
              t.url ?? '(pull: Atom feed)',
            ]),
          ),
        );
    },
  );
  for (const verb of ['disable', 'enable'] as const)
    withAuth(
      targets.command(verb).description(`${verb} a target`).argument('<id>', 'target id'),
      'admin',
    ).action(async (id: string, o: AuthOptions, cmd: Command) => {
      const { g, r } = await call<Target>(
        cmd,
        o,
        'POST',
        `/v1/alerts/targets/${encodeURIComponent(id)}/${verb}`,
        {},
      );
      io.out(g.json ? JSON.stringify(r) : `target ${r.id} ${verb}d`);
    });

  const rules = alerts
    .command('rules')
    .description('which committed events raise an incident, sent to which targets');
  withAuth(
    rules
      .command('create')
      .description('add a rule (POST /v1/alerts/rules)')
      .requiredOption('--name <name>', 'what it is for')
      .requiredOption('--event <text>', 'CAP info/event, e.g. "Intrusion"')
      .option('--target <id>', 'target id (repeatable, at least one)', collect, [])
      .option('--label <label>', 'only this label (repeatable)', collect, [])
      .option('--zone <zone>', 'only in this zone (repeatable)', collect, [])
      .option('--site <id>', 'only this site (repeatable)', collect, [])
      .option('--camera <id>', 'only this camera (repeatable)', collect, [])
      .option('--days <list>', 'UTC days 0-6 (0 = Sunday), comma separated')
      .option('--from <HH:MM>', 'active from (UTC)')
      .option('--to <HH:MM>', 'active until (UTC)')
      .option('--min-dwell <s>', 'seconds the track must be seen before the Alert', int(0, 86_400))
      .option('--min-score <x>', 'minimum detection score, 0-1')
      .option('--urgency <v>', 'CAP urgency', 'Immediate')
      .option('--severity <v>', 'CAP severity', 'Severe')
      .option('--certainty <v>', 'CAP certainty', 'Observed'),
    'admin',
  ).action(
    async (
      o: AuthOptions & {
        name: string;
        event: string;
        target: string[];
        label: string[];
        zone: string[];
        site: string[];
        camera: string[];
        days?: string;
        from?: string;
        to?: string;
        minDwell?: number;
        minScore?: string;
        urgency: string;
        severity: string;
        certainty: string;
      },
      cmd: Command,
    ) => {
      if (o.target.length === 0) throw new CliError('at least one --target is needed');
      const nonEmpty = (k: string, v: string[]) => (v.length > 0 ? { [k]: v } : {});
      const schedule =
        o.days || o.from || o.to
          ? {
              ...(o.days ? { days: o.days.split(',').map(Number) } : {}),
              ...(o.from ? { from: o.from } : {}),
              ...(o.to ? { to: o.to } : {}),
            }
          : undefined;
      const match = {
        ...nonEmpty('labels', o.label),
        ...nonEmpty('zones', o.zone),
        ...nonEmpty('sites', o.site),
        ...nonEmpty('cameras', o.camera),
        ...(schedule ? { schedule } : {}),
        ...(o.minDwell !== undefined ? { min_dwell_seconds: o.minDwell } : {}),
        ...(o.minScore !== undefined ? { min_score: Number(o.minScore) } : {}),
      };
      const { g, r } = await call<Rule>(cmd, o, 'POST', '/v1/alerts/rules', {
        name: o.name,
        match,
        cap: { event: o.event, urgency: o.urgency, severity: o.severity, certainty: o.certainty },
        target_ids: o.target,
      });
      io.out(g.json ? JSON.stringify(r) : `rule ${r.id} created`);
    },
  );
  withAuth(rules.command('list').description('the tenant’s rules'), 'admin').action(
    async (o: AuthOptions, cmd: Command) => {
      const { g, r } = await call<{ items: Rule[] }>(cmd, o, 'GET', '/v1/alerts/rules');
      if (g.json) for (const x of r.items) io.out(JSON.stringify(x));
      else if (r.items.length === 0) io.err('no rules');
      else
        io.out(
          table(
            ['ID', 'NAME', 'STATE', 'MATCH', 'TARGETS'],
            r.items.map((x) => [
              x.id,
              x.name,
              x.enabled ? 'enabled' : 'disabled',
              JSON.stringify(x.match),
              String(x.target_ids.length),
            ]),
          ),
        );
    },
  );
  for (const verb of ['disable', 'enable'] as const)
    withAuth(rules.command(verb).description(`${verb} a rule`).argument('<id>', 'rule id'), 'admin').action(
      async (id: string, o: AuthOptions, cmd: Command) => {
        const { g, r } = await call<Rule>(cmd, o, 'PATCH', `/v1/alerts/rules/${encodeURIComponent(id)}`, {
          enabled: verb === 'enable',
        });
        io.out(g.json ? JSON.stringify(r) : `rule ${r.id} ${verb}d`);
      },
    );

  withAuth(
    alerts
      .command('list')
      .description('incidents, newest first (GET /v1/alerts/incidents); --messages: CAP messages instead')
      .option(
        '--state <state>',
        'incidents: pending|alerted|cancelled|ended; messages: pending|retrying|delivered|dead',
      )
      .option('--messages', 'list CAP messages and their delivery state (--state dead: the dead letters)')
      .option('--incident <id>', 'messages of this incident')
      .option('--limit <n>', '1-500 (default 50)', int(1, 500)),
    'operator',
  ).action(
    async (
      o: AuthOptions & { state?: string; messages?: boolean; incident?: string; limit?: number },
      cmd: Command,
    ) => {
      const q = new URLSearchParams();
      if (o.state) q.set('state', o.state);
      if (o.limit) q.set('limit', String(o.limit));
      if (o.messages || o.incident) {
        if (o.incident) q.set('incident', o.incident);
        const { g, r } = await call<{ items: Message[] }>(
          cmd,
          o,
          'GET',
          `/v1/alerts/messages?${q.toString()}`,
        );
        if (g.json) for (const m of r.items) io.out(JSON.stringify(m));
        else if (r.items.length === 0) io.err('no messages');
        else
          io.out(
            table(
              ['ID', 'TYPE', 'STATE', 'ATTEMPTS', 'HTTP', 'ANSWER / ERROR'],
              r.items.map((m) => [
                m.id,
                m.msg_type,
                m.state,
                String(m.attempts),
                m.http_status === null ? '-' : String(m.http_status),
                m.error ?? m.answer ?? '',
              ]),
            ),
          );
        return;
      }
      const { g, r } = await call<{ items: Incident[] }>(
        cmd,
        o,
        'GET',
        `/v1/alerts/incidents?${q.toString()}`,
      );
      if (g.json) for (const i of r.items) io.out(JSON.stringify(i));
      else if (r.items.length === 0) io.err('no incidents');
      else
        io.out(
          table(
            ['ID', 'STATE', 'SITE', 'CAMERA', 'TRACK', 'MESSAGES', 'FIRST SEEN'],
            r.items.map((i) => [
              i.id,
              i.state,
              i.site_id,
              i.camera_id,
              i.track_id,
              String(i.seq),
              i.first_seen_at,
            ]),
          ),
        );
    },
  );

  withAuth(
    alerts
      .command('cancel')
      .description('cancel an incident: the agencies get a CAP Cancel; audited')
      .argument('<incident>', 'incident id')
      .requiredOption('--reason <text>', 'why (on the audit log and in the Cancel)'),
    'operator',
  ).action(async (id: string, o: AuthOptions & { reason: string }, cmd: Command) => {
    const { g, r } = await call<Incident>(
      cmd,
      o,
      'POST',
      `/v1/alerts/incidents/${encodeURIComponent(id)}/cancel`,
      { reason: o.reason },
    );
    io.out(g.json ? JSON.stringify(r) : `incident ${r.id} ${r.state}`);
  });

  withAuth(
    alerts
      .command('replay')
      .description(
        'send a dead CAP message again (same identifier); see `alerts list --messages --state dead`',
      )
      .argument('<message>', 'message id (`<target>:<identifier>`)'),
    'admin',
  ).action(async (id: string, o: AuthOptions, cmd: Command) => {
    const { g, r } = await call<Message>(
      cmd,
      o,
      'POST',
      `/v1/alerts/messages/${encodeURIComponent(id)}/replay`,
    );
    io.out(g.json ? JSON.stringify(r) : `message ${r.id} ${r.state}`);
  });
}
