import { spawnSync } from 'node:child_process';
import {
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';

// infra/nats/cluster/: each node's file is a valid nats-server configuration (`nats-server -t`), with its paths
// pointed at a scratch directory holding a throwaway CA (openssl) and a stand-in for the generated auth.conf.
// The 3-node cluster itself runs in tools/testkit/test/nats-cluster.test.ts and cloud/test/cluster-*.test.ts.

const clusterDir = fileURLToPath(new URL('../nats/cluster', import.meta.url));
const scratch = mkdtempSync(join(tmpdir(), 'vigil-nats-cluster-conf-'));
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('infra/nats/cluster', () => {
  it('has three nodes with distinct server names over one common file, each valid for nats-server', () => {
    const nodes = readdirSync(clusterDir)
      .filter((f) => /^n\d\.conf$/.test(f))
      .sort();
    expect(nodes).toEqual(['n1.conf', 'n2.conf', 'n3.conf']);
    const names = nodes.map(
      (f) => /server_name: "([^"]+)"/.exec(readFileSync(join(clusterDir, f), 'utf8'))?.[1],
    );
    expect(new Set(names).size).toBe(3);
    const common = readFileSync(join(clusterDir, 'common.conf'), 'utf8');
    // Routes over mutual TLS, every node listed, the JWT fragment included.
    expect(common).toMatch(/cluster \{[\s\S]*tls \{[\s\S]*verify: true/);
    expect(common.match(/nats-route:\/\//g)).toHaveLength(3);
    expect(common).toContain('include "auth.conf"');

    const pki = join(scratch, 'pki');
    mkdirSync(pki);
    const made = spawnSync(
      'openssl',
      ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-days', '1', '-subj', '/CN=test-ca'].concat([
        '-keyout',
        join(pki, 'ca.key'),
        '-out',
        join(pki, 'ca.crt'),
      ]),
      { encoding: 'utf8' },
    );
    expect(made.status, made.stderr).toBe(0);
    for (const n of ['nats-server', 'nats-route']) {
      copyFileSync(join(pki, 'ca.crt'), join(pki, `${n}.crt`));
      copyFileSync(join(pki, 'ca.key'), join(pki, `${n}.key`));
    }
    writeFileSync(
      join(scratch, 'common.conf'),
      common.replaceAll('/etc/vigil/pki/', `${pki}/`).replaceAll('/var/lib/vigil-nats', join(scratch, 'js')),
    );
    writeFileSync(join(scratch, 'auth.conf'), 'accounts { SYS {} }\nsystem_account: SYS\n');
    for (const f of nodes) {
      copyFileSync(join(clusterDir, f), join(scratch, f));
      const r = spawnSync(process.env.NATS_SERVER_BIN ?? 'nats-server', ['-t', '-c', join(scratch, f)], {
        encoding: 'utf8',
      });
      expect([f, r.status, r.stdout + r.stderr]).toEqual([f, 0, expect.stringContaining('is valid')]);
    }
  });
});
