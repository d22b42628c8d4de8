import { createHash, createPrivateKey, generateKeyPairSync, sign, type KeyObject } from 'node:crypto';
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import {
  Key,
  Metadata,
  MetaFile,
  Root,
  Signature,
  Snapshot,
  TargetFile,
  Targets,
  Timestamp,
} from '@tufjs/models';
import { bundleName } from '@vigil/proto';

/*
 * A real TUF repository on disk, laid out as the cloud serves it (consistent snapshots: metadata/<N>.root.json,
 * <N>.targets.json, <N>.snapshot.json, timestamp.json, targets/<sha256>.<name>), signed with ed25519 keys made
 * here. The updater reads it through its directory source and verifies it with tuf-js like any repository.
 */

interface TestKey {
  id: string;
  pub: Key;
  priv: KeyObject;
}

function newKey(): TestKey {
  const { publicKey, privateKey } = generateKeyPairSync('ed25519');
  const hex = publicKey.export({ format: 'der', type: 'spki' }).subarray(12).toString('hex');
  const id = createHash('sha256')
    .update(`{"keytype":"ed25519","keyval":{"public":"${hex}"},"scheme":"ed25519"}`)
    .digest('hex');
  return {
    id,
    pub: new Key({ keyID: id, keyType: 'ed25519', scheme: 'ed25519', keyVal: { public: hex } }),
    priv: createPrivateKey(privateKey.export({ format: 'pem', type: 'pkcs8' })),
  };
}

function signed(md: Metadata<Root | Targets | Snapshot | Timestamp>, key: TestKey): Buffer {
  md.sign((bytes) => new Signature({ keyID: key.id, sig: sign(null, bytes, key.priv).toString('hex') }));
  return Buffer.from(JSON.stringify(md.toJSON()));
}

const inDays = (days: number): string =>
  new Date(Math.floor(Date.now() / 1000) * 1000 + days * 86_400_000).toISOString().replace('.000Z', 'Z');

export class TestTufRepo {
  private readonly keys = { root: newKey(), targets: newKey(), online: newKey() };
  private targets: Record<string, TargetFile> = {};
  private version = 0;
  readonly rootFile: string;

  constructor(readonly dir: string) {
    mkdirSync(join(dir, 'metadata'), { recursive: true });
    mkdirSync(join(dir, 'targets'), { recursive: true });
    const root = new Root({
      version: 1,
      specVersion: '1.0.31',
      expires: inDays(365),
      consistentSnapshot: true,
    });
    root.addKey(this.keys.root.pub, 'root');
    root.addKey(this.keys.targets.pub, 'targets');
    root.addKey(this.keys.online.pub, 'snapshot');
    root.addKey(this.keys.online.pub, 'timestamp');
    this.rootFile = join(dir, 'metadata', '1.root.json');
    writeFileSync(this.rootFile, signed(new Metadata(root), this.keys.root));
  }

  /** Signs `bundle` as release `version` (targets N+1, snapshot N+1, timestamp N+1). Returns its target path. */
  publish(bundle: string, version: string, channel = 'stable', minVersion = '0.1.0'): string {
    const bytes = readFileSync(bundle);
    const sha256 = createHash('sha256').update(bytes).digest('hex');
    const name = bundleName(version);
    this.targets[name] = new TargetFile({
      path: name,
      length: bytes.length,
      hashes: { sha256 },
      unrecognizedFields: { custom: { version, channel, minVersion } },
    });
    const file = join(this.dir, 'targets', `${sha256}.${name}`);
    copyFileSync(bundle, file);
    const n = ++this.version;
    const t = new Targets({
      version: n,
      specVersion: '1.0.31',
      expires: inDays(30),
      targets: { ...this.targets },
    });
    writeFileSync(
      join(this.dir, 'metadata', `${n}.targets.json`),
      signed(new Metadata(t), this.keys.targets),
    );
    const s = new Snapshot({
      version: n,
      specVersion: '1.0.31',
      expires: inDays(7),
      meta: { 'targets.json': new MetaFile({ version: n }) },
    });
    writeFileSync(
      join(this.dir, 'metadata', `${n}.snapshot.json`),
      signed(new Metadata(s), this.keys.online),
    );
    const ts = new Timestamp({
      version: n,
      specVersion: '1.0.31',
      expires: inDays(1),
      snapshotMeta: new MetaFile({ version: n }),
    });
    writeFileSync(join(this.dir, 'metadata', 'timestamp.json'), signed(new Metadata(ts), this.keys.online));
    return file;
  }
}
