// Fixed-rate, open-loop API load against the real cloud (its own process, as in production) over a realistic
// data set. `--help` for the options. Prints ONE JSON document on stdout; progress on stderr.
//
//   node --conditions=@vigil/source --import tsx cloud/bench/api-load.bench.ts --help
//
// Scenarios:
//   mix     --mix 'events.get=80,events.list=20' at --rate for --seconds.
//   repro   issue 20: in one cloud process, --cycles times: GET /v1/events/{id} over a small set of ids (--warm-ids,
//           repeated: authorization-decision-cache hits once seen) for --warm-seconds, then over ids never asked
//           for (misses) for --switch-seconds. --runs fresh processes; a run that loses its process is a crash.
//   soak    mixed routes (lists, by id, media, devices, audit, enrollment-token and webhook writes) at --rate, with
//           --subscribers websocket clients on /v1/stream and --ingest-rate events/s published by a device, for
//           --seconds; per-window p99 (--window-seconds), first window against the last; heap and RSS sampled.
// The data set (--events over --days daily partitions, one tenant) is COPYed in once and kept in --database.
// Bounded: requests = rate x seconds per phase, --max-in-flight outstanding (beyond: shed, counted), loopback only.
import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { cpus, loadavg } from 'node:os';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import { jetstream } from '@nats-io/jetstream';
import pg from 'pg';
import WebSocket from 'ws';
import { DetectionEvent, subjectFor, TrackPhase } from '@vigil/proto';
import { ensureDevSigningKey, FleetRegistry, FsMediaStore, mediaKeyFor, mintDevToken } from '../src/index.js';
import {
  CAMERAS_PER_DEVICE,
  DEVICES_PER_SITE,
  LABELS,
  LIVE_DEVICE,
  SITES,
  ensureDataset,
  eventAt,
  type DatasetSpec,
} from './api-load/dataset.js';
import { HttpClient, OutcomeLog, runOpenLoop, type Call, type PhaseResult } from './api-load/openloop.js';
import { ProcessSampler } from './api-load/sampler.js';
import {
  connectAs,
  log,
  startCloudProcess,
  startStack,
  type BenchDevice,
  type CloudProcess,
} from './support.js';

const HELP = `api-load.bench.ts: fixed-rate open-loop load on the cloud API (see the header of this file)
  --scenario mix|repro|soak   (mix)
  --rate N                    requests/s, open loop (100)
  --seconds N                 mix/soak duration (30)
  --mix R=W,...               routes and weights (mix; soak has its own default). Routes: events.get,
                              events.get.warm, events.list, events.list.site, events.list.filter (site, device,
                              camera, label or site+label), events.list.page (a cursor at a random event, filter
                              or not), events.list.range (1-7 days of since/until, filter or not), devices.list,
                              media.get, audit.list, enrollment.create, webhooks.create, webhooks.disable
  --database NAME             keep the data set in this database (created, migrated, loaded once) (vigil_apiload)
  --drop-database             drop --database after the run
  --events N --days N         data set size (2000000 over 39 days, tenant acme)
  --start-day YYYY-MM-DD      first day of the data set (default: the days ending today; a kept data set with
                              another start is reloaded)
  --runs N                    repro: fresh cloud processes, one after the other (1)
  --cycles N                  repro: warm->switch cycles per process (4)
  --warm-ids N                repro: ids in each warm set (1000)
  --warm-seconds N            repro (20)   --switch-seconds N  repro (20)
  --subscribers N             soak: websocket clients (5)   --ingest-rate N  soak: events/s published (20)
  --window-seconds N          soak: p99 window (60)
  --max-in-flight N           outstanding requests at most (256)
  --sample-ms N               process sampling period (2000)
  --node-flags "..."          V8/Node flags for the cloud process (e.g. "--no-maglev")
  --cloud-output FILE         all output of the cloud process (e.g. with --node-flags --trace-deopt)
  --stop-on-crash             repro: stop at the first crashed run
  --help`;

const { values } = parseArgs({
  options: {
    scenario: { type: 'string', default: 'mix' },
    rate: { type: 'string', default: '100' },
    seconds: { type: 'string', default: '30' },
    mix: { type: 'string' },
    database: { type: 'string', default: 'vigil_apiload' },
    'drop-database': { type: 'boolean', default: false },
    events: { type: 'string', default: '2000000' },
    days: { type: 'string', default: '39' },
    'start-day': { type: 'string' },
    runs: { type: 'string', default: '1' },
    cycles: { type: 'string', default: '4' },
    'warm-ids': { type: 'string', default: '1000' },
    'warm-seconds': { type: 'string', default: '20' },
    'switch-seconds': { type: 'string', default: '20' },
    subscribers: { type: 'string', default: '5' },
    'ingest-rate': { type: 'string', default: '20' },
    'window-seconds': { type: 'string', default: '60' },
    'max-in-flight': { type: 'string', default: '256' },
    'sample-ms': { type: 'string', default: '2000' },
    'node-flags': { type: 'string', default: '' },
    'cloud-output': { type: 'string' },
    'stop-on-crash': { type: 'boolean', default: false },
    help: { type: 'boolean', default: false },
  },
});
if (values.help) {
  process.stdout.write(`${HELP}\n`);
  process.exit(0);
}

function num(name: keyof typeof values, min: number, max: number): number {
  const v = Number(values[name]);
  if (!Number.isFinite(v) || v < min || v > max)
    throw new Error(`--${name} must be ${min}..${max}: ${String(values[name])}`);
  return v;
}
const SCENARIO = values.scenario;
if (SCENARIO !== 'mix' && SCENARIO !== 'repro' && SCENARIO !== 'soak')
  throw new Error(`--scenario: ${SCENARIO}`);
const RATE = num('rate', 1, 2000);
const SECONDS = num('seconds', 1, 3600);
const MAX_IN_FLIGHT = num('max-in-flight', 1, 10_000);
const SAMPLE_MS = num('sample-ms', 200, 60_000);
const TENANT = 'acme';
const spec: DatasetSpec = {
  tenant: TENANT,
  events: num('events', 1, 50_000_000),
  days: num('days', 1, 400),
  startMs: startDay(),
  seed: 20,
};
/** --start-day, else the days ending today (UTC), so the newest partitions are the live ones. */
function startDay(): number {
  if (values['start-day'] !== undefined) {
    const ms = Date.parse(`${values['start-day']}T00:00:00Z`);
    if (!Number.isFinite(ms)) throw new Error(`--start-day must be YYYY-MM-DD: ${values['start-day']}`);
    return ms;
  }
  return Math.floor(Date.now() / 86_400_000) * 86_400_000 - (num('days', 1, 400) - 1) * 86_400_000;
}
const NODE_FLAGS = values['node-flags'].split(/\s+/).filter(Boolean);

const SOAK_MIX =
  'events.get=35,events.list=20,events.list.site=10,devices.list=10,media.get=10,audit.list=5,enrollment.create=4,webhooks.create=3,webhooks.disable=3';

// ---- routes ----

/** Media ids seeded for media.get (soak, or a mix naming media.get). */
const mediaIds: string[] = [];
/** Webhooks created by webhooks.create, disabled by webhooks.disable (oldest first). */
const webhookIds: string[] = [];
/** Enabled webhooks this run keeps at most (the tenant limit is 20; in-flight creates stay well below it). */
const WEBHOOKS_HELD = 8;
/** webhooks.create calls not answered yet (they may all succeed: counted against WEBHOOKS_HELD). */
let creating = 0;
const WEBHOOK_URL = 'https://hooks.example.invalid/api-load';

interface Tokens {
  reader: string;
  admin: string;
}

let rnd = 0x2545f491;
function random(): number {
  // xorshift32: reproducible id choices per run
  rnd ^= rnd << 13;
  rnd ^= rnd >>> 17;
  rnd ^= rnd << 5;
  return (rnd >>> 0) / 4294967296;
}
const pickEvent = (): number => Math.floor(random() * spec.events);

function routeCall(route: string, tokens: Tokens, warm: readonly number[]): Call {
  switch (route) {
    case 'events.get':
      return {
        route,
        method: 'GET',
        path: `/v1/events/${eventAt(spec, pickEvent()).id}`,
        token: tokens.reader,
      };
    case 'events.get.warm': {
      const i = warm[Math.floor(random() * warm.length)] ?? 0;
      return { route, method: 'GET', path: `/v1/events/${eventAt(spec, i).id}`, token: tokens.reader };
    }
    case 'events.list':
      return { route, method: 'GET', path: '/v1/events?limit=50', token: tokens.reader };
    case 'events.list.site': {
      const site = SITES[Math.floor(random() * SITES.length)]!;
      return { route, method: 'GET', path: `/v1/events?limit=50&site=${site}`, token: tokens.reader };
    }
    case 'events.list.filter':
      return { route, method: 'GET', path: `/v1/events?limit=50${listFilter()}`, token: tokens.reader };
    case 'events.list.page': {
      // The page after a random event: a cursor anywhere in the year, with or without a filter.
      const e = eventAt(spec, pickEvent());
      const cursor = Buffer.from(
        JSON.stringify({
          occurred_at: new Date(e.occurredMs).toISOString().replace('Z', '000Z'),
          event_id: e.id,
        }),
      ).toString('base64url');
      return {
        route,
        method: 'GET',
        path: `/v1/events?limit=50&cursor=${cursor}${random() < 0.4 ? '' : listFilter()}`,
        token: tokens.reader,
      };
    }
    case 'events.list.range': {
      // since/until: 1 to 7 days anywhere in the data set, with or without a filter.
      const from = spec.startMs + Math.floor(random() * spec.days * 86_400_000);
      const to = from + (1 + Math.floor(random() * 7)) * 86_400_000;
      const q = `since=${new Date(from).toISOString()}&until=${new Date(to).toISOString()}`;
      return {
        route,
        method: 'GET',
        path: `/v1/events?limit=50&${q}${random() < 0.4 ? '' : listFilter()}`,
        token: tokens.reader,
      };
    }
    case 'devices.list':
      return { route, method: 'GET', path: '/v1/devices', token: tokens.reader };
    case 'media.get': {
      // A seeded snapshot (redacted: the operator may see it) when there are any, else an unknown id (404).
      const id = mediaIds.length > 0 ? mediaIds[Math.floor(random() * mediaIds.length)]! : randomUUID();
      return { route, method: 'GET', path: `/v1/media/${id}`, token: tokens.reader };
    }
    case 'audit.list':
      return { route, method: 'GET', path: '/v1/audit-log?limit=50', token: tokens.admin };
    case 'enrollment.create':
      return {
        route,
        method: 'POST',
        path: '/v1/enrollment-tokens',
        body: { site_id: SITES[Math.floor(random() * SITES.length)], ttl_seconds: 3600, note: 'api-load' },
        token: tokens.admin,
      };
    case 'webhooks.create':
    case 'webhooks.disable': {
      // Writes that succeed: create while this run holds fewer than WEBHOOKS_HELD enabled webhooks (a tenant may
      // have 20), else disable the oldest it created; either route name does whichever keeps the count in range,
      // and the call is reported under what it did. A 4xx here is a defect, not the limit.
      const id = webhookIds[0];
      const held = webhookIds.length + creating;
      const create = id === undefined || (route === 'webhooks.create' && held < WEBHOOKS_HELD);
      if (create && held >= WEBHOOKS_HELD)
        return { route: 'webhooks.list', method: 'GET', path: '/v1/webhooks', token: tokens.admin };
      if (create) {
        creating++;
        return {
          route: 'webhooks.create',
          method: 'POST',
          path: '/v1/webhooks',
          // A label no event has: created and listed, never delivered to (no outgoing traffic).
          body: { url: WEBHOOK_URL, filter: { labels: ['api-load-none'] } },
          token: tokens.admin,
          onBody: (status, body) => {
            creating--;
            if (status === 201) webhookIds.push((JSON.parse(body) as { id: string }).id);
          },
        };
      }
      webhookIds.shift();
      return {
        route: 'webhooks.disable',
        method: 'POST',
        path: `/v1/webhooks/${id}/disable`,
        body: { reason: 'api-load' },
        token: tokens.admin,
      };
    }
    default:
      throw new Error(`unknown route ${route}`);
  }
}

/** A random filter of GET /v1/events as query text (`&site=...`): site, device, camera, label, site+label. */
function listFilter(): string {
  const site = SITES[Math.floor(random() * SITES.length)]!;
  const label = LABELS[Math.floor(random() * LABELS.length)]!;
  const device = `gw-${1 + Math.floor(random() * SITES.length * DEVICES_PER_SITE)}`;
  const camera = `cam-${1 + Math.floor(random() * CAMERAS_PER_DEVICE)}`;
  const all = [
    `&site=${site}`,
    `&device=${device}`,
    `&camera=${camera}`,
    `&label=${label}`,
    `&site=${site}&label=${label}`,
  ];
  return all[Math.floor(random() * all.length)]!;
}

function parseMix(text: string): Array<[string, number]> {
  const mix = text.split(',').map((part) => {
    const [route, w] = part.split('=');
    const weight = Number(w ?? '1');
    if (!route || !(weight > 0)) throw new Error(`--mix: bad entry ${part}`);
    return [route.trim(), weight] as [string, number];
  });
  for (const [route] of mix) routeCall(route, { reader: '', admin: '' }, [0]); // unknown routes fail now
  return mix;
}

function mixPicker(mix: Array<[string, number]>): () => string {
  const total = mix.reduce((a, [, w]) => a + w, 0);
  return () => {
    let x = random() * total;
    for (const [route, w] of mix) if ((x -= w) < 0) return route;
    return mix[mix.length - 1]![0];
  };
}

// ---- one cloud process ----

interface Running {
  cloud: CloudProcess;
  exited: { code: number | null; signal: string | null } | null;
  sampler: ProcessSampler;
  client: HttpClient;
}

async function startCloud(
  stack: Awaited<ReturnType<typeof startStack>>,
  jwksFile: string,
  n: number,
): Promise<Running> {
  const outputFile = values['cloud-output'] === undefined ? undefined : `${values['cloud-output']}.${n}`;
  const cloud = await startCloudProcess(
    stack,
    {},
    `cloud-${n}`,
    {
      api: { enabled: true },
      auth: { jwksFile },
      media: { dir: join(stack.dir, 'media') },
      // The data set may span more days (--days up to 400) than the default retention (365): the process under
      // test must not drop its oldest partitions during the run (and force a reload of the set at the next).
      events: { retentionDays: 0 },
    },
    { nodeFlags: NODE_FLAGS, outputFile },
  );
  const running: Running = {
    cloud,
    exited: null,
    sampler: new ProcessSampler(cloud.pid!, `http://127.0.0.1:${cloud.httpPort}/metrics`, SAMPLE_MS),
    client: new HttpClient(cloud.httpPort),
  };
  cloud.child.on('exit', (code, signal) => (running.exited = { code, signal }));
  running.sampler.start();
  return running;
}

/** What the process printed when it died: the V8 fatal error block, if any. */
function deathNote(r: Running): string[] {
  const lines = r.cloud.logs().split('\n');
  const at = lines.findIndex((l) => l.includes('Fatal error') || l.includes('FATAL ERROR'));
  return (at >= 0 ? lines.slice(at, at + 14) : lines.slice(-10)).map((l) => l.slice(0, 200));
}

function logTail(r: Running): string[] {
  return r.cloud
    .logs()
    .split('\n')
    .slice(-15)
    .map((l) => l.slice(0, 300));
}

async function stopCloud(r: Running): Promise<void> {
  r.sampler.stop();
  r.client.close();
  if (r.exited === null) await r.cloud.stop();
}

// ---- main ----

const machine = {
  cpus: cpus().length,
  node: process.version,
  loadavgBefore: loadavg().map((x) => Math.round(x * 100) / 100),
};
const device: BenchDevice = { tenantId: TENANT, siteId: 'hq', deviceId: LIVE_DEVICE };
const stack = await startStack([device], 'apiload', { keepDatabase: values.database });
const report: Record<string, unknown> = {
  scenario: SCENARIO,
  command: process.argv.slice(2).join(' '),
  machine,
  cloudNodeFlags: NODE_FLAGS,
};
try {
  const loaded = await ensureDataset(stack.databaseUrl, spec, log);
  report.dataset = { ...spec, startDay: new Date(spec.startMs).toISOString().slice(0, 10), ...loaded };
  const registry = new FleetRegistry(stack.db);
  await registry.registerDevice(device).catch(() => undefined);
  for (let d = 0; d < SITES.length * DEVICES_PER_SITE; d++)
    await registry
      .registerDevice({
        tenantId: TENANT,
        siteId: SITES[Math.floor(d / DEVICES_PER_SITE)]!,
        deviceId: `gw-${d + 1}`,
      })
      .catch(() => undefined); // already registered in a kept database
  const key = ensureDevSigningKey(join(stack.dir, 'pki'));
  const mint = (roles: string[], sub: string): Promise<string> =>
    mintDevToken({
      key,
      issuer: 'vigil-dev',
      audience: 'vigil-api',
      sub,
      tenant: TENANT,
      roles,
      ttlSeconds: 4 * 3600,
    });
  const tokens: Tokens = {
    reader: await mint(['operator'], 'api-load-operator'),
    admin: await mint(['admin'], 'api-load-admin'),
  };

  // Webhooks an interrupted earlier run left enabled in a kept database would count against the tenant's 20.
  await stack.db
    .updateTable('webhooks')
    .set({ enabled: false, disabled_at: new Date(), disabled_reason: 'api-load: left by an earlier run' })
    .where('tenant_id', '=', TENANT)
    .where('url', '=', WEBHOOK_URL)
    .where('enabled', '=', true)
    .execute();
  if (SCENARIO === 'soak' || (values.mix ?? '').includes('media.get')) await seedMedia(stack, 200);
  if (SCENARIO === 'repro') report.repro = await repro(stack, key.jwksFile, tokens);
  else report.load = await steady(stack, key.jwksFile, tokens);
} finally {
  await stack.dispose();
  if (values['drop-database']) {
    const admin = new pg.Client({ connectionString: stack.pgAdminUrl });
    await admin.connect();
    await admin.query(`DROP DATABASE IF EXISTS "${values.database}" WITH (FORCE)`);
    await admin.end();
    log(`dropped database ${values.database}`);
  }
}
report.loadavgAfter = loadavg().map((x) => Math.round(x * 100) / 100);
process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);

async function repro(s: typeof stack, jwksFile: string, tokens: Tokens): Promise<unknown> {
  const runs = num('runs', 1, 100);
  const cycles = num('cycles', 1, 100);
  const warmIds = num('warm-ids', 1, 1_000_000);
  const warmSeconds = num('warm-seconds', 1, 600);
  const switchSeconds = num('switch-seconds', 1, 600);
  const results: unknown[] = [];
  let crashes = 0;
  for (let run = 1; run <= runs; run++) {
    const r = await startCloud(s, jwksFile, run);
    const out = new OutcomeLog();
    const phases: Array<PhaseResult & { name: string }> = [];
    let crashedIn: string | null = null;
    try {
      for (let c = 1; c <= cycles && crashedIn === null; c++) {
        const warm = Array.from({ length: warmIds }, pickEvent);
        for (const [name, route, seconds] of [
          [`c${c}.warm`, 'events.get.warm', warmSeconds],
          [`c${c}.switch`, 'events.get', switchSeconds],
        ] as const) {
          const res = await runOpenLoop({
            rate: RATE,
            seconds,
            maxInFlight: MAX_IN_FLIGHT,
            client: r.client,
            next: () => routeCall(route, tokens, warm),
            recorder: { record: (_route, o, at) => out.record(name, o, at) },
            stop: () => r.exited !== null,
            drainMs: 10_000,
          });
          phases.push({ name, ...res });
          if (r.exited !== null) {
            crashedIn = name;
            break;
          }
        }
      }
    } finally {
      await stopCloud(r);
    }
    if (crashedIn !== null) crashes++;
    const result = {
      run,
      crashed: crashedIn !== null,
      crashedIn,
      exit: r.exited,
      death: crashedIn === null ? undefined : deathNote(r),
      // Transport errors without a crash: what the process logged (e.g. a shutdown someone else asked for).
      logTail: crashedIn === null && out.rows.some((x) => x.o.status === 0) ? logTail(r) : undefined,
      phases: phases.map((p) => ({
        ...p,
        seconds: Math.round(p.seconds * 10) / 10,
        ...out.summary((row) => row.route === p.name),
      })),
      cloud: r.sampler.stats(),
    };
    results.push(result);
    log(
      `run ${run}: ${crashedIn === null ? 'clean' : `CRASHED in ${crashedIn} (${JSON.stringify(r.exited)})`}`,
    );
    if (crashedIn !== null && values['stop-on-crash']) break;
  }
  return { rate: RATE, runs: results.length, cycles, warmIds, warmSeconds, switchSeconds, crashes, results };
}

async function steady(s: typeof stack, jwksFile: string, tokens: Tokens): Promise<unknown> {
  const mix = parseMix(values.mix ?? (SCENARIO === 'soak' ? SOAK_MIX : 'events.get=80,events.list=20'));
  const pick = mixPicker(mix);
  const warm = Array.from({ length: num('warm-ids', 1, 1_000_000) }, pickEvent);
  const r = await startCloud(s, jwksFile, 1);
  const out = new OutcomeLog();
  const extras: Record<string, unknown> = {};
  const stops: Array<() => Promise<void>> = [];
  try {
    if (SCENARIO === 'soak') {
      stops.push(await subscribers(r, tokens, num('subscribers', 0, 500), extras));
      stops.push(await ingest(s, num('ingest-rate', 0, 2000), extras));
    }
    const t0 = performance.now();
    const s0 = r.sampler.elapsedS();
    const res = await runOpenLoop({
      rate: RATE,
      seconds: SECONDS,
      maxInFlight: MAX_IN_FLIGHT,
      client: r.client,
      next: () => routeCall(pick(), tokens, warm),
      recorder: out,
      stop: () => r.exited !== null,
    });
    for (const stop of stops) await stop();
    await r.sampler.sample();
    const win = num('window-seconds', 5, 3600) * 1000;
    const inWindow = (a: number, b: number) => (row: { atMs: number }) =>
      row.atMs - t0 >= a && row.atMs - t0 < b;
    const end = res.seconds * 1000;
    const lastFrom = Math.max(0, end - win);
    const sampleStats = (a: number, b: number) => r.sampler.stats(s0 + a / 1000, s0 + b / 1000);
    return {
      rate: RATE,
      plannedSeconds: SECONDS,
      mix: Object.fromEntries(mix),
      ...res,
      crashed: r.exited !== null,
      exit: r.exited,
      death: r.exited === null ? undefined : deathNote(r),
      all: out.summary(),
      byRoute: out.byRoute(),
      windows: out.windows(t0, win),
      firstWindow: { fromS: 0, toS: win / 1000, ...out.summary(inWindow(0, win)) },
      lastWindow: {
        fromS: Math.round(lastFrom / 1000),
        toS: Math.round(end / 1000),
        ...out.summary(inWindow(lastFrom, end + 60_000)),
      },
      cloud: {
        all: r.sampler.stats(),
        firstWindow: sampleStats(0, win),
        lastWindow: sampleStats(lastFrom, Infinity),
        samples: r.sampler.samples,
      },
      ...extras,
    };
  } finally {
    for (const stop of stops) await stop().catch(() => undefined);
    await stopCloud(r);
  }
}

/** `n` redacted 20 KiB snapshots of device gw-1 in the MediaStore and the media table (this run's stack dir). */
async function seedMedia(s: typeof stack, n: number): Promise<void> {
  const store = new FsMediaStore(join(s.dir, 'media'));
  await s.db.deleteFrom('media').where('tenant_id', '=', TENANT).execute();
  const now = Date.now();
  for (let i = 0; i < n; i++) {
    const data = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff]), randomBytes(20 * 1024)]);
    const sha256 = createHash('sha256').update(data).digest('hex');
    const mediaId = uuidV7Now();
    const capturedAt = new Date(now - 3_600_000 + i);
    const key = mediaKeyFor({ tenantId: TENANT, mediaId, capturedAt, contentType: 'image/jpeg', sha256 });
    await store.put(key, data);
    await s.db
      .insertInto('media')
      .values({
        tenant_id: TENANT,
        media_id: mediaId,
        site_id: 'hq',
        device_id: 'gw-1',
        camera_id: 'cam-1',
        event_id: randomUUID(),
        content_type: 'image/jpeg',
        sha256,
        size_bytes: data.length,
        redacted: true,
        captured_at: capturedAt,
        stored_at: new Date(now),
        storage_key: key,
      })
      .execute();
    mediaIds.push(mediaId);
  }
}

/** Websocket clients on /v1/stream that count what they receive. */
async function subscribers(
  r: Running,
  tokens: Tokens,
  n: number,
  into: Record<string, unknown>,
): Promise<() => Promise<void>> {
  const stats = {
    subscribers: n,
    opened: 0,
    messages: 0,
    closes: {} as Record<string, number>,
    errors: 0,
    lastError: undefined as string | undefined,
  };
  into.websocket = stats;
  const sockets: WebSocket[] = [];
  for (let i = 0; i < n; i++) {
    // The token in the Authorization header, as the CLI sends it (`bearer.<jwt>` as a subprotocol was refused
    // with 401 in this bench: see the issue 20 note).
    const ws = new WebSocket(`ws://127.0.0.1:${r.cloud.httpPort}/v1/stream`, ['vigil.v1'], {
      headers: { authorization: `Bearer ${tokens.reader}` },
    });
    ws.on('open', () => stats.opened++);
    ws.on('message', () => stats.messages++);
    ws.on('close', (code) => (stats.closes[code] = (stats.closes[code] ?? 0) + 1));
    ws.on('error', (err) => {
      stats.errors++;
      stats.lastError = err.message;
    });
    sockets.push(ws);
  }
  // Bounded wait for the upgrades (refusals are counted as closes and errors).
  const deadline = Date.now() + 10_000;
  while (stats.opened + stats.errors < n && Date.now() < deadline)
    await new Promise((res) => setTimeout(res, 50));
  return async () => {
    for (const ws of sockets) ws.close();
    await new Promise((res) => setTimeout(res, 200));
  };
}

/** One device publishing detection events at `rate`/s into EVENTS (ingest running while the API is loaded). */
async function ingest(
  s: typeof stack,
  rate: number,
  into: Record<string, unknown>,
): Promise<() => Promise<void>> {
  const stats = { rate, published: 0, failed: 0 };
  into.ingest = stats;
  if (rate <= 0) return () => Promise.resolve();
  const nc = await connectAs(s, { device }, 'api-load-ingest');
  const js = jetstream(nc);
  let k = 0;
  const t0 = performance.now();
  const timer = setInterval(() => {
    const due = Math.floor(((performance.now() - t0) / 1000) * rate);
    for (; k < due; k++) {
      const id = uuidV7Now();
      const ev = DetectionEvent.fromPartial({
        eventId: id,
        tenantId: TENANT,
        siteId: device.siteId,
        deviceId: device.deviceId,
        cameraId: 'cam-1',
        occurredAt: new Date(),
        trackId: `t${k % 100}`,
        phase: TrackPhase.TRACK_PHASE_START,
        label: 'person',
        score: 0.8,
        box: { x: 0.1, y: 0.1, w: 0.2, h: 0.2 },
      });
      js.publish(subjectFor(TENANT, device.deviceId, 'evt', 'cam-1'), DetectionEvent.encode(ev).finish(), {
        msgID: id,
      })
        .then(() => stats.published++)
        .catch(() => stats.failed++);
    }
  }, 50);
  return async () => {
    clearInterval(timer);
    await nc.drain().catch(() => undefined);
  };
}

function uuidV7Now(): string {
  const h = randomUUID().replace(/-/g, '');
  const ms = Date.now().toString(16).padStart(12, '0');
  const v = `${ms}7${h.slice(13, 16)}${((parseInt(h[16]!, 16) & 3) | 8).toString(16)}${h.slice(17, 32)}`;
  return `${v.slice(0, 8)}-${v.slice(8, 12)}-${v.slice(12, 16)}-${v.slice(16, 20)}-${v.slice(20)}`;
}
