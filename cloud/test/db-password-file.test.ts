import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { parseCloudConfig, readPasswordFile } from '../src/index.js';

// database.passwordFile: the file a Kubernetes Secret or systemd credential mounts, read at each new connection.
describe('database.passwordFile', () => {
  const dir = mkdtempSync(join(tmpdir(), 'vigil-dbpw-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const file = (name: string, text: string): string => {
    writeFileSync(join(dir, name), text, { mode: 0o600 });
    return join(dir, name);
  };

  it('reads the password without the trailing newline `echo` adds, and only that one', () => {
    expect(readPasswordFile(file('a', 's3cret\n'))).toBe('s3cret');
    expect(readPasswordFile(file('b', 's3cret'))).toBe('s3cret');
    expect(readPasswordFile(file('c', ' two words \n\n'))).toBe(' two words \n');
  });

  it('refuses an empty or missing file with a configuration error', () => {
    const error = (f: () => unknown): { code?: string; message?: string } => {
      try {
        f();
      } catch (err) {
        return err as { code?: string; message?: string };
      }
      return {};
    };
    expect(error(() => readPasswordFile(file('empty', '\n')))).toMatchObject({ code: 'CONFIG_INVALID' });
    expect(error(() => readPasswordFile(file('empty', '\n'))).message).toMatch(/is empty/);
    expect(error(() => readPasswordFile(join(dir, 'missing'))).message).toMatch(/cannot be read/);
  });

  it('the replica keys are checked like the primary URL', () => {
    const base = {
      nats: { servers: ['tls://localhost:4222'], tls: { caFile: 'a', certFile: 'b', keyFile: 'c' } },
      api: { enabled: false },
    };
    expect(() =>
      parseCloudConfig({ ...base, database: { url: 'postgres://x@h/db', replicaUrl: 'mysql://x@h/db' } }),
    ).toThrow(/database\.replicaUrl: must be a postgres:\/\/ URL/);
    expect(() =>
      parseCloudConfig({ ...base, database: { url: 'postgres://x@h/db', replicaMaxLagSeconds: 0 } }),
    ).toThrow(/database\.replicaMaxLagSeconds/);
    expect(() =>
      parseCloudConfig({ ...base, database: { url: 'postgres://x@h/db', replicaURL: 'x' } }),
    ).toThrow(/replicaURL/);
  });
});
