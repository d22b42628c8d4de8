// Cloud media ingest (MEDIA stream -> validation -> filesystem MediaStore -> PostgreSQL index) against its raw
// baselines, in one run on one machine:
//   node --conditions=@vigil/source --import tsx cloud/bench/media.bench.ts [--objects 2000] [--kib 40]
//        [--repeats 3] [--window 64] [--quick] [--cpu-prof DIR]
// --cpu-prof DIR: the cloud process writes a V8 CPU profile into DIR when it stops (node --cpu-prof).
// --quick: 300 objects, 1 repeat. Env: DATABASE_URL, NATS_SERVER_BIN (as the other benches). Prints ONE JSON
// document on stdout; progress on stderr.
//
// Each repeat makes N snapshot-sized objects (--kib KiB each: a JPEG start-of-image marker then random bytes, so
// they pass validation and do not compress) and runs, in order:
//   fsWrite      the same N byte arrays written as files the way a careful raw writer would: write, fsync, one
//                file per object in one directory (no rename, no directory fsync): objects/s
//   natsPublish  JetStream publish of the N encoded MediaObjects, msgID = media id, from the device's own
//                connection into a scratch stream configured like MEDIA, at most --window awaiting their PubAck
//   mediaIngest  the real cloud as its own process (ingest role, API off, media.dir set), the same publishes into
//                MEDIA; objects/s from the first publish until PostgreSQL indexes N objects; ratios to both.
import { randomBytes, createHash } from 'node:crypto';
import { mkdirSync, openSync, closeSync, writeSync, fsyncSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs } from 'node:util';
import {
  DiscardPolicy,
  RetentionPolicy,
  StorageType,
  jetstreamManager,
  type JetStreamManager,
} from '@nats-io/jetstream';
import { nanos, type NatsConnection } from '@nats-io/transport-node';
import { sql } from 'kysely';
import { MediaObject, subjectFor } from '@vigil/proto';
import { FleetRegistry } from '../src/index.js';
import {
  connectAs,
  cpuProfile,
  cpuWindow,
  deleteStream,
  log,
  machineInfo,
  median,
  publishAll as publishWindowed,
  reportHead,
  round,
  runMain,
  sleep,
  startCloudProcess,
  startStack,
  uuidv7,
  type BenchDevice,
  type Stack,
} from './support.js';

const { values } = parseArgs({
  options: {
    objects: { type: 'string' },
    kib: { type: 'string', default: '40' },
    repeats: { type: 'string' },
    window: { type: 'string', default: '64' },
    quick: { type: 'boolean', default: false },
    'cpu-prof': { type: 'string' },
  },
});
const CLOUD_PROC = cpuProfile(values['cpu-prof']);
const N = Number(values.objects ?? (values.quick ? 300 : 2_000));
const KIB = Number(values.kib);
const REPEATS = Math.max(1, Number(values.repeats ?? (values.quick ? 1 : 3)));
const WINDOW = Math.max(1, Number(values.window));
if (!Number.isInteger(N) || N < 1) throw new Error(`--objects must be a positive integer: ${values.objects}`);
if (!(KIB >= 1 && KIB <= 1000)) throw new Error(`--kib must be 1..1000: ${values.kib}`);

const device: BenchDevice = { tenantId: 'bench', siteId: 'lab', deviceId: 'dev-1' };
const subject = subjectFor(device.tenantId, device.deviceId, 'media', 'cam1');
const RAW_STREAM = 'BENCH_MEDIA_RAW';
const rawSubject = `bench.raw.${device.tenantId}.${device.deviceId}.media.cam1`;

interface Batch {
  ids: string[];
  data: Buffer[];
  payloads: Uint8Array[];
  bytes: number;
}

function makeBatch(n: number): Batch {
  const end = Date.now();
  const out: Batch = { ids: [], data: [], payloads: [], bytes: 0 };
  for (let i = 0; i < n; i++) {
    const at = new Date(end - (n - i) * 5);
    const id = uuidv7(at.getTime());
    const data = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(KIB * 1024 - 4)]);
    const payload = MediaObject.encode(
      MediaObject.fromPartial({
        mediaId: id,
        tenantId: device.tenantId,
        siteId: device.siteId,
        deviceId: device.deviceId,
        cameraId: 'cam1',
        eventId: uuidv7(at.getTime()),
        capturedAt: at,
        contentType: 'image/jpeg',
        sha256: createHash('sha256').update(data).digest('hex'),
        data,
        redacted: true,
      }),
    ).finish();
    out.ids.push(id);
    out.data.push(data);
    out.payloads.push(payload);
    out.bytes += data.length;
  }
  return out;
}

/** Publishes every object with msgID = media id, `WINDOW` outstanding. */
const publishAll = (nc: NatsConnection, subj: string, batch: Batch, onFirst?: () => void) =>
  publishWindowed(nc, subj, batch, { window: WINDOW, timeoutMs: 60_000, onFirst });

function phaseFs(stack: Stack, batch: Batch, repeat: number) {
  const dir = join(stack.dir, `fs-${repeat}`);
  mkdirSync(dir, { recursive: true });
  const stopCpu = cpuWindow({});
  const t0 = performance.now();
  batch.data.forEach((d, i) => {
    const fd = openSync(join(dir, `${batch.ids[i]}.jpg`), 'wx', 0o600);
    try {
      writeSync(fd, d);
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  });
  const seconds = (performance.now() - t0) / 1000;
  const cpu = stopCpu();
  rmSync(dir, { recursive: true, force: true });
  return {
    name: 'fsWrite',
    repeat,
    objects: N,
    seconds: round(seconds, 3),
    objectsPerSec: Math.round(N / seconds),
    cpu,
  };
}

async function phaseNats(stack: Stack, batch: Batch, repeat: number, jsm: JetStreamManager) {
  await deleteStream(jsm, RAW_STREAM);
  await jsm.streams.add({
    name: RAW_STREAM,
    subjects: ['bench.raw.>'],
    storage: StorageType.File,
    retention: RetentionPolicy.Workqueue,
    discard: DiscardPolicy.New,
    max_bytes: 512 * 1024 * 1024,
    max_msg_size: 1024 * 1024 + 4096,
    duplicate_window: nanos(600_000),
  });
  const nc = await connectAs(stack, { device }, 'bench-device-raw');
  try {
    const stopCpu = cpuWindow({ natsServer: [stack.natsPid] });
    const r = await publishAll(nc, rawSubject, batch);
    const cpu = stopCpu();
    return {
      name: 'natsPublish',
      repeat,
      objects: N,
      seconds: round(r.seconds, 3),
      objectsPerSec: Math.round(N / r.seconds),
      cpu,
    };
  } finally {
    await nc.close();
    await deleteStream(jsm, RAW_STREAM);
  }
}

async function phaseIngest(
  stack: Stack,
  batch: Batch,
  repeat: number,
  jsm: JetStreamManager,
  baseline: { fs: number; nats: number },
) {
  await sql`truncate media`.execute(stack.db);
  await deleteStream(jsm, 'MEDIA');
  const mediaDir = join(stack.dir, `media-${repeat}`);
  const cloud = await startCloudProcess(
    stack,
    {},
    `cloud-media-${repeat}`,
    { media: { dir: mediaDir } },
    CLOUD_PROC,
  );
  const nc = await connectAs(stack, { device }, 'bench-device');
  try {
    await new FleetRegistry(stack.db).registerDevice(device);
    log(`  mediaIngest: ${N} objects through the cloud (pid ${cloud.pid})`);
    let stopCpu: (() => ReturnType<ReturnType<typeof cpuWindow>>) | undefined;
    const pub = publishAll(nc, subject, batch, () => {
      stopCpu = cpuWindow({ cloud: [cloud.pid], natsServer: [stack.natsPid] });
    });
    let publishError: unknown;
    pub.catch((err: unknown) => (publishError = err));
    const deadline = Date.now() + 600_000;
    for (;;) {
      const { rows } = await sql<{ n: string }>`select count(*) as n from media`.execute(stack.db);
      if (Number(rows[0]?.n ?? 0) >= N) break;
      if (publishError !== undefined) throw new Error('publishing failed', { cause: publishError });
      if (Date.now() > deadline) throw new Error(`media ingest timed out\n${cloud.logs()}`);
      // 20 ms, not 100: a --quick run on an idle machine ingests for ~0.6 s, and a 100 ms poll added up to
      // 100 ms (~15 %) to it. The count runs over a table of at most N rows.
      await sleep(20);
    }
    const tEnd = performance.now();
    const cpu = stopCpu!();
    const r = await pub;
    const seconds = (tEnd - r.t0) / 1000;
    const perSec = N / seconds;
    return {
      name: 'mediaIngest',
      repeat,
      objects: N,
      seconds: round(seconds, 3),
      objectsPerSec: Math.round(perSec),
      mibPerSec: round(batch.bytes / 1024 / 1024 / seconds, 1),
      ratioToFsWrite: round(perSec / baseline.fs, 3),
      ratioToNatsPublish: round(perSec / baseline.nats, 3),
      publishSeconds: round(r.seconds, 3),
      cpu,
    };
  } finally {
    await nc.close();
    await cloud.stop();
    await deleteStream(jsm, 'MEDIA');
    rmSync(mediaDir, { recursive: true, force: true });
  }
}

async function main(): Promise<void> {
  const stack = await startStack([device], 'media');
  const inspector = await connectAs(stack, { service: 'bench' }, 'bench-inspector');
  try {
    const machine = await machineInfo(stack);
    const jsm = await jetstreamManager(inspector);
    const results: Array<Record<string, unknown>> = [];
    for (let repeat = 1; repeat <= REPEATS; repeat++) {
      log(`repeat ${repeat}/${REPEATS}: making ${N} objects of ${KIB} KiB`);
      const batch = makeBatch(N);
      const fs = phaseFs(stack, batch, repeat);
      const nats = await phaseNats(stack, batch, repeat, jsm);
      const ingest = await phaseIngest(stack, batch, repeat, jsm, {
        fs: fs.objectsPerSec,
        nats: nats.objectsPerSec,
      });
      results.push(fs, nats, ingest);
      log(
        `  -> fs ${fs.objectsPerSec}/s, nats ${nats.objectsPerSec}/s, media ingest ${ingest.objectsPerSec}/s`,
      );
    }
    const of = (name: string): number =>
      median(results.filter((r) => r.name === name).map((r) => r.objectsPerSec as number));
    const fsMed = of('fsWrite');
    const natsMed = of('natsPublish');
    const ingestMed = of('mediaIngest');
    process.stdout.write(
      JSON.stringify(
        {
          ...reportHead('cloud media ingest throughput', 'media.bench.ts', machine),
          config: { objects: N, kib: KIB, repeats: REPEATS, window: WINDOW },
          summary: {
            medianOf: REPEATS,
            fsWriteObjectsPerSec: fsMed,
            natsPublishObjectsPerSec: natsMed,
            mediaIngestObjectsPerSec: ingestMed,
            mediaIngestMiBPerSec: round((ingestMed * KIB) / 1024, 1),
            ratioIngestToFsWrite: round(ingestMed / fsMed, 3),
            ratioIngestToNatsPublish: round(ingestMed / natsMed, 3),
          },
          results,
        },
        null,
        2,
      ) + '\n',
    );
  } finally {
    await inspector.close();
    await stack.dispose();
  }
}

runMain(main);
