// Media ingest survives kill -9 of the cloud inside a batch. The cloud runs as a real child process; a failpoint
// (VIGIL_FAILPOINTS) kills it (1) after a batch's files are fsync'd and its rows inserted, before the COMMIT,
// then (2) after the COMMIT, before any ack. After a clean restart every object is indexed exactly once, its
// file holds the bytes sent, the store holds no object file that no row names (the redelivery wrote the same
// keys), and the objects of crash (2) come back as duplicates (found indexed, not written again).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { jetstream, jetstreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import type { Kysely } from 'kysely';
import { randomBytes } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { MediaObject, subjectFor } from '@vigil/proto';
import { freePort, natsConfig, printLogsOnFailure, useDatabase, useNats, usePki } from '@vigil/testkit';
import { createDb, FleetRegistry } from '../src/index.js';
import { MEDIA_CONSUMER, MEDIA_STREAM } from '../src/ingest/streams.js';
import type { Database } from '../src/storage/tables.js';
import { spawnCloud, type CloudProcess } from './support/cloud-process.js';
import type { TestDevice } from './support/ingest-stack.js';
import { makeMedia, sha256Hex } from './support/media.js';

const gw: TestDevice = { tenantId: 'acme', siteId: 'hq', deviceId: 'gw-media-crash' };
/** Per crash: more than one fetched batch (32), so the crash hits a batch with more behind it. */
const OBJECTS = 40;
/** Start-up through tsx plus a batch: slow on a loaded machine (30 s and more were seen at load 20). */
const EXIT_MS = 150_000;

/** Every file under `root`, as store keys (temp files included: none may be left behind). */
function files(root: string): string[] {
  return readdirSync(root, { recursive: true, withFileTypes: true })
    .filter((e) => e.isFile())
    .map((e) => relative(root, join(e.parentPath, e.name)))
    .sort();
}

describe('media ingest: kill -9 inside a batch loses and repeats nothing', () => {
  const pki = usePki({ devices: [gw], services: ['cloud'] });
  const nats = useNats({
    config: (ctx) =>
      natsConfig({
        tls: { caFile: pki().caCert, certFile: pki().natsServer.cert, keyFile: pki().natsServer.key },
      })(ctx),
  });
  const databaseUrl = useDatabase();
  const dir = mkdtempSync(join(tmpdir(), 'vigil-media-crash-'));
  const storeDir = join(dir, 'media');
  let db: Kysely<Database> | undefined;
  let device: NatsConnection | undefined;
  let current: CloudProcess | undefined;
  const outputs: string[] = [];
  printLogsOnFailure('cloud processes', () => [...outputs, current?.output() ?? ''].join('\n----\n'));
  afterAll(async () => {
    await current?.stop();
    await device?.close();
    await db?.destroy();
    rmSync(dir, { recursive: true, force: true });
  });

  const natsUrl = (): string => `tls://localhost:${nats().port}`;
  const start = (failpoints: string[] = [], port = 0): CloudProcess => {
    if (current) outputs.push(current.output());
    const c = pki().services.cloud!;
    current = spawnCloud(
      dir,
      {
        http: { host: '127.0.0.1', port },
        database: { url: databaseUrl() },
        nats: { servers: [natsUrl()], tls: { caFile: pki().caCert, certFile: c.cert, keyFile: c.key } },
        api: { enabled: false },
        tracing: { enabled: false },
        media: { dir: storeDir },
      },
      { failpoints },
    );
    return current;
  };

  /** Publishes `n` objects (distinct random bytes) with msgID = media id, while no cloud consumes. */
  const publish = async (n: number): Promise<MediaObject[]> => {
    const js = jetstream(device!);
    const sent: MediaObject[] = [];
    for (let i = 0; i < n; i++) {
      const data = Buffer.concat([Buffer.from([0xff, 0xd8, 0xff, 0xe0]), randomBytes(2048)]);
      const m = makeMedia(gw, { data, sha256: sha256Hex(data) });
      await js.publish(
        subjectFor(gw.tenantId, gw.deviceId, 'media', 'cam1'),
        MediaObject.encode(m).finish(),
        {
          msgID: m.mediaId,
        },
      );
      sent.push(m);
    }
    return sent;
  };

  it('indexes every object once with its bytes after crashes before and after the COMMIT', async () => {
    const first = start();
    await first.waitForLog('ingest consuming EVENTS');
    db = createDb(databaseUrl(), 2, () => undefined);
    await new FleetRegistry(db).registerDevice(gw);
    await first.stop();

    const paths = pki().devices[`${gw.tenantId}/${gw.deviceId}`]!;
    device = await connect({
      servers: [natsUrl()],
      tls: { caFile: pki().caCert, certFile: paths.cert, keyFile: paths.key },
    });
    const rows = () =>
      db!.selectFrom('media').select(['media_id', 'sha256', 'storage_key']).orderBy('media_id').execute();

    // (1) Files durable and rows inserted, then killed before the COMMIT: nothing indexed.
    const before = await publish(OBJECTS);
    const crashStore = start(['media.after_store']);
    expect(await crashStore.exited(EXIT_MS)).toMatchObject({ signal: 'SIGKILL' });
    expect(await rows()).toEqual([]);
    const orphans = files(storeDir);
    expect(orphans.length).toBeGreaterThan(0); // the killed batch's files, in place and unindexed

    // (2) Restart: everything stored; then killed right after the next batch's COMMIT (nothing acked).
    const after = await publish(OBJECTS);
    const crashCommit = start(['media.after_commit@2']);
    expect(await crashCommit.exited(EXIT_MS)).toMatchObject({ signal: 'SIGKILL' });
    const committed = (await rows()).length;
    expect(committed).toBeGreaterThan(0);

    // (3) A clean start takes what was never acked: the rest is stored, the committed batch found duplicate.
    const port = await freePort();
    const last = start([], port);
    const sent = [...before, ...after];
    await expect
      .poll(async () => (await rows()).length, { timeout: 120_000, interval: 250 })
      .toBe(sent.length);
    const jsm = await jetstreamManager(device);
    await expect
      .poll(
        async () => {
          const info = await jsm.consumers.info(MEDIA_STREAM, MEDIA_CONSUMER);
          return (
            (await jsm.streams.info(MEDIA_STREAM)).state.messages + info.num_ack_pending + info.num_pending
          );
        },
        { timeout: 30_000, interval: 250 },
      )
      .toBe(0);

    const indexed = await rows();
    expect(indexed.map((r) => r.media_id)).toEqual(sent.map((m) => m.mediaId).sort());
    const byId = new Map(sent.map((m) => [m.mediaId, m]));
    for (const r of indexed) {
      const m = byId.get(r.media_id)!;
      expect(r.sha256).toBe(m.sha256);
      expect(sha256Hex(readFileSync(join(storeDir, r.storage_key!)))).toBe(m.sha256);
    }
    // No orphan: the redelivery of batch (1) wrote the very keys its rows now name. A kill while another
    // batch was writing can leave its temp files (`.<uuid>.tmp`, never renamed, never indexed; as before).
    const onDisk = files(storeDir);
    expect(onDisk.filter((k) => !/\/\.[0-9a-f-]{36}\.tmp$/.test(k))).toEqual(
      indexed.map((r) => r.storage_key!).sort(),
    );
    for (const k of orphans.filter((f) => !f.endsWith('.tmp'))) expect(onDisk).toContain(k);
    const metrics = await fetch(`http://127.0.0.1:${port}/metrics`).then((r) => r.text());
    const duplicates = /vigil_cloud_media_received_total\{result="duplicate"\} (\d+)/.exec(metrics)?.[1];
    expect(Number(duplicates)).toBeGreaterThan(0);
    await last.stop();
  }, 480_000);
});
