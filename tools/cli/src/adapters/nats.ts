import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { jetstream, jetstreamManager, type JetStreamClient, type JetStreamManager } from '@nats-io/jetstream';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { connectWithAuthority, loadNatsAuthority } from '@vigil/cloud';
import { CliError } from '../errors.js';

export interface NatsHandle {
  nc: NatsConnection;
  js: JetStreamClient;
  jsm: JetStreamManager;
  close(): Promise<void>;
}

/** TLS files of the `cloud` service identity in a dev PKI dir (as `pnpm certs init` lays it out). */
export function cloudServiceTls(pkiDir: string): { caFile: string; certFile: string; keyFile: string } {
  const tls = {
    caFile: join(pkiDir, 'ca.crt'),
    certFile: join(pkiDir, 'services', 'cloud.crt'),
    keyFile: join(pkiDir, 'services', 'cloud.key'),
  };
  const missing = Object.values(tls).filter((f) => !existsSync(f));
  if (missing.length > 0)
    throw new CliError(
      `missing ${missing.join(', ')}: \`pnpm certs init\` creates the dev PKI; --pki <dir> points elsewhere`,
    );
  return tls;
}

/**
 * Connects with the cloud's service certificate (mutual TLS); fails fast instead of reconnecting forever.
 * When the NATS operator of the dev stack is next to the PKI (`.vigil/nats-auth/authority.json`, JWT mode),
 * the CLI also mints itself a short-lived service user from it, as the cloud does.
 */
export async function connectNats(url: string, pkiDir: string): Promise<NatsHandle> {
  const tls = cloudServiceTls(pkiDir);
  const authorityFile = join(pkiDir, '..', 'nats-auth', 'authority.json');
  let nc: NatsConnection;
  try {
    const options = { servers: url, tls, name: 'vigil-cli', timeout: 5_000, reconnect: false };
    nc = existsSync(authorityFile)
      ? await connectWithAuthority(loadNatsAuthority(authorityFile), 'service', 'cli', options)
      : await connect(options);
  } catch (err) {
    throw new CliError(
      `cannot connect to NATS at ${url} (${(err as Error).message}); is it running (\`./dev up\`)? --nats <url> points elsewhere`,
      1,
      { cause: err },
    );
  }
  const jsm = await jetstreamManager(nc, { timeout: 10_000 });
  return { nc, js: jetstream(nc, { timeout: 10_000 }), jsm, close: () => nc.close() };
}
