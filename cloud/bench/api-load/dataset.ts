// A realistic, deterministic events data set for the API load generator: N events of one tenant spread evenly
// over D daily partitions, on a few sites, devices and cameras. Event i's id, time and attributes are a pure
// function of (seed, i), so the generator picks any event by its index without holding 2,000,000 ids, and a
// data set loaded once serves every later run. Loaded with PostgreSQL COPY (psql reading our stdin: no extra
// npm dependency).
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import pg from 'pg';

export interface DatasetSpec {
  tenant: string;
  events: number;
  days: number;
  /** The first day (UTC midnight, ms). */
  startMs: number;
  seed: number;
}

export const SITES = ['hq', 'lab', 'depot', 'store'] as const;
export const DEVICES_PER_SITE = 4;
export const CAMERAS_PER_DEVICE = 4;
export const LABELS = ['person', 'car', 'truck', 'bicycle', 'dog'] as const;
/** The device a soak publishes live events as: never one of the data set's devices. */
export const LIVE_DEVICE = 'gw-live';

/** splitmix32: a tiny, good-enough mixer; deterministic per (seed, i, lane). */
function mix(seed: number, i: number, lane: number): number {
  let z =
    (Math.imul(seed ^ 0x9e3779b9, 0x85ebca6b) + Math.imul(i, 0xc2b2ae35) + Math.imul(lane, 0x27d4eb2f)) | 0;
  z = Math.imul(z ^ (z >>> 16), 0x85ebca6b);
  z = Math.imul(z ^ (z >>> 13), 0xc2b2ae35);
  return (z ^ (z >>> 16)) >>> 0;
}

const hex8 = (n: number): string => n.toString(16).padStart(8, '0');

export interface DatasetEvent {
  id: string;
  occurredMs: number;
  site: string;
  device: string;
  camera: string;
  label: string;
  score: number;
}

/** Event i of the data set (0 <= i < spec.events). */
export function eventAt(spec: DatasetSpec, i: number): DatasetEvent {
  const spanMs = spec.days * 86_400_000;
  const occurredMs = spec.startMs + Math.floor((i * spanMs) / spec.events);
  const r1 = mix(spec.seed, i, 1);
  const r2 = mix(spec.seed, i, 2);
  const r3 = mix(spec.seed, i, 3);
  // UUIDv7: 48-bit ms, version 7, 12 random bits, variant 10, 62 random bits.
  const ms = occurredMs.toString(16).padStart(12, '0');
  const a = hex8(r1);
  const b = hex8(r2);
  const c = hex8(r3);
  const id =
    `${ms.slice(0, 8)}-${ms.slice(8, 12)}-7${a.slice(0, 3)}-` +
    `${(8 | (r2 >>> 30)).toString(16)}${b.slice(1, 4)}-${b.slice(4, 8)}${c}`;
  const d = r1 % (SITES.length * DEVICES_PER_SITE);
  const site = SITES[Math.floor(d / DEVICES_PER_SITE)]!;
  return {
    id,
    occurredMs,
    site,
    device: `gw-${d + 1}`,
    camera: `cam-${(r2 % CAMERAS_PER_DEVICE) + 1}`,
    label: LABELS[r3 % LABELS.length]!,
    score: 0.5 + (r3 % 500) / 1000,
  };
}

const COLUMNS =
  'event_id, occurred_at, tenant_id, site_id, device_id, camera_id, track_id, phase, label, score, box_x, box_y, box_w, box_h, payload';

function copyLine(spec: DatasetSpec, i: number): string {
  const e = eventAt(spec, i);
  const at = new Date(e.occurredMs).toISOString();
  return (
    `${e.id}\t${at}\t${spec.tenant}\t${e.site}\t${e.device}\t${e.camera}\tt-${i % 5000}\tstart\t${e.label}\t` +
    `${e.score}\t0.1\t0.2\t0.3\t0.4\t\\\\x0a10${hex8(i)}\n`
  );
}

export interface LoadResult {
  loaded: boolean;
  rows: number;
  seconds: number;
}

/**
 * Makes sure `databaseUrl` (already migrated) holds exactly this data set: when the tenant's event count is
 * spec.events it does nothing; otherwise it deletes the tenant's events and COPYs the set in (partitions first).
 */
export async function ensureDataset(
  databaseUrl: string,
  spec: DatasetSpec,
  progress: (line: string) => void,
): Promise<LoadResult> {
  const client = new pg.Client({ connectionString: databaseUrl });
  await client.connect();
  try {
    // Events a soak published live (device LIVE_DEVICE) are not part of the data set.
    await client.query('delete from events where tenant_id = $1 and device_id = $2', [
      spec.tenant,
      LIVE_DEVICE,
    ]);
    const { rows } = await client.query<{ n: string }>(
      'select count(*) as n from events where tenant_id = $1',
      [spec.tenant],
    );
    const have = Number(rows[0]?.n ?? 0);
    // Same count and the first and last events where this spec puts them: the same data set.
    const probe = await client.query<{ n: string }>(
      'select count(*) as n from events where tenant_id = $1 and event_id = any($2::uuid[])',
      [spec.tenant, [eventAt(spec, 0).id, eventAt(spec, spec.events - 1).id]],
    );
    if (have === spec.events && Number(probe.rows[0]?.n) === 2)
      return { loaded: false, rows: have, seconds: 0 };
    progress(`data set: ${have} events of ${spec.tenant} present, loading ${spec.events} (COPY)`);
    await client.query('delete from events where tenant_id = $1', [spec.tenant]);
    for (let d = 0; d < spec.days; d++) {
      const day = new Date(spec.startMs + d * 86_400_000).toISOString().slice(0, 10);
      await client.query('select vigil_ensure_event_partition($1::date)', [day]);
    }
  } finally {
    await client.end();
  }
  const t0 = performance.now();
  const psql = spawn(
    'psql',
    [databaseUrl, '-v', 'ON_ERROR_STOP=1', '-q', '-c', `COPY events (${COLUMNS}) FROM STDIN`],
    {
      stdio: ['pipe', 'inherit', 'inherit'],
      env: { ...process.env, PGOPTIONS: '-c synchronous_commit=off' },
    },
  );
  const exited = once(psql, 'exit');
  const stdin = psql.stdin;
  const CHUNK = 2000;
  for (let i = 0; i < spec.events; i += CHUNK) {
    let text = '';
    for (let j = i; j < Math.min(spec.events, i + CHUNK); j++) text += copyLine(spec, j);
    if (!stdin.write(text)) await once(stdin, 'drain');
    if (i % 200_000 === 0 && i > 0) progress(`data set: ${i} rows sent`);
  }
  stdin.end();
  const [code] = (await exited) as [number | null];
  if (code !== 0) throw new Error(`psql COPY exited with ${String(code)}`);
  const check = new pg.Client({ connectionString: databaseUrl });
  await check.connect();
  try {
    await check.query('analyze events');
  } finally {
    await check.end();
  }
  return { loaded: true, rows: spec.events, seconds: (performance.now() - t0) / 1000 };
}
