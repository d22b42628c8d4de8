// A local agency for the alert tests: an outside party on 127.0.0.1 speaking HTTPS with mutual TLS (its own CA,
// a server certificate, a client certificate it trusts for Vigil), recording every request and answering what
// the test says. CAP bodies are read and validated against the OASIS XSD with the agency's own libxml2
// validator (not the cloud's), so a message the cloud gets wrong fails here. Shared by alerts-cap, alerts-eido,
// alerts-outbox-crash and the devstack pipeline test (tools/devstack/test/agency-pipeline.test.ts).
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { createCa, issueClientCert, issueServerCert, type CertKeyPem } from '@vigil/certs';
import { capSchemaFile } from '@vigil/testkit';
import { XmlDocument, XsdValidator } from 'libxml2-wasm';
import { expect } from 'vitest';

/** OASIS's CAP 1.2 schema in the shared standards (never copied into the repository). */
export const CAP_XSD = capSchemaFile();
export const CAP_NS = 'urn:oasis:names:tc:emergency:cap:1.2';

/** One request as the agency saw it. */
export interface AgencyRequest {
  path: string;
  /** The CN of the client certificate the TLS handshake verified. */
  client: string | undefined;
  contentType: string | undefined;
  body: string;
}

export interface AgencyAnswer {
  status: number;
  body?: string;
  contentType?: string;
}

export interface Agency {
  /** https://127.0.0.1:<port> */
  url: string;
  ca: CertKeyPem;
  /** The client certificate the agency trusts (CN `clientName`). */
  client: CertKeyPem;
  /** The body of POST /v1/alerts/targets for an mTLS push target at `path` (another client certificate: one the agency does not trust). */
  mtlsTarget(name: string, path: string, client?: CertKeyPem): Record<string, unknown>;
  close(): Promise<void>;
}

/** Starts the agency; `handle` answers each request (synchronously, after the whole body arrived). */
export async function startAgency(
  handle: (req: AgencyRequest) => AgencyAnswer,
  opts: { clientName?: string; caName?: string } = {},
): Promise<Agency> {
  const ca = createCa({ commonName: opts.caName ?? 'Agency test CA' });
  const serverCert = issueServerCert(ca, {
    commonName: 'agency',
    dnsNames: ['localhost'],
    ipAddresses: ['127.0.0.1'],
  });
  const client = issueClientCert(ca, { commonName: opts.clientName ?? 'vigil-acme' });
  const server: Server = createServer(
    {
      cert: serverCert.certPem,
      key: serverCert.keyPem,
      ca: ca.certPem,
      requestCert: true,
      rejectUnauthorized: true,
    },
    (req, res) => {
      const chunks: Buffer[] = [];
      req.on('data', (c: Buffer) => chunks.push(c));
      req.on('end', () => {
        const a = handle({
          path: req.url ?? '',
          client: [(req.socket as TLSSocket).getPeerCertificate().subject?.CN].flat()[0],
          contentType: req.headers['content-type'],
          body: Buffer.concat(chunks).toString('utf8'),
        });
        res.statusCode = a.status;
        if (a.contentType) res.setHeader('content-type', a.contentType);
        res.end(a.body ?? '');
      });
    },
  );
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
  return {
    url,
    ca,
    client,
    mtlsTarget: (name, path, c = client) => ({
      name,
      url: `${url}${path}`,
      auth: 'mtls',
      client_cert_pem: c.certPem,
      client_key_pem: c.keyPem,
      ca_pem: ca.certPem,
    }),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** What the agency read from a CAP message; `valid` is null when the XSD accepted it, else the validator's message. */
export interface CapSeen {
  valid: string | null;
  identifier: string;
  sender: string;
  sent: string;
  msgType: string;
  references: string | null;
}

/** A reader of CAP bodies that validates each against the XSD (one compiled schema per reader). */
export function capReader(xsdFile = CAP_XSD): (body: string) => CapSeen {
  const validator = XsdValidator.fromDoc(XmlDocument.fromString(readFileSync(xsdFile, 'utf8')));
  return (body) => {
    let valid: string | null = null;
    let doc: XmlDocument | undefined;
    try {
      doc = XmlDocument.fromString(body);
      validator.validate(doc);
    } catch (err) {
      valid = (err as Error).message;
    }
    const text = (name: string): string => doc?.get(`/cap:alert/cap:${name}`, { cap: CAP_NS })?.content ?? '';
    const seen: CapSeen = {
      valid,
      identifier: text('identifier'),
      sender: text('sender'),
      sent: text('sent'),
      msgType: text('msgType'),
      references: text('references') || null,
    };
    doc?.dispose();
    return seen;
  };
}

/** The site location every alert test sets on site `hq` (PUT /v1/sites/hq/location), and its CAP polygon. */
export const HQ_LOCATION: { polygon: Array<[number, number]> } = {
  polygon: [
    [48.85, 2.35],
    [48.86, 2.35],
    [48.86, 2.36],
  ],
};
export const HQ_CAP_POLYGON = '<polygon>48.85,2.35 48.86,2.35 48.86,2.36 48.85,2.35</polygon>';

export { INTRUSION } from './alert-events.js';

/**
 * Messages of one incident as the agency accepted them: the msgTypes in order, each valid, sent by `sender`
 * over the trusted client certificate, each referencing the one before (CAP `sender,identifier,sent`), no
 * identifier twice.
 */
export function expectCapChain(
  got: ReadonlyArray<CapSeen & { client?: string | undefined }>,
  types: readonly string[] = ['Alert', 'Update', 'Cancel'],
  who: { sender?: string; client?: string } = {},
): void {
  expect(got.map((r) => r.msgType)).toEqual(types);
  for (const r of got) {
    expect(r.valid).toBeNull();
    if (who.client !== undefined) expect(r.client).toBe(who.client);
    if (who.sender !== undefined) expect(r.sender).toBe(who.sender);
    expect(r.sent).toMatch(/^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\+00:00$/);
  }
  expect(got[0]!.references).toBeNull();
  for (let i = 1; i < got.length; i++)
    expect(got[i]!.references).toBe(`${got[i - 1]!.sender},${got[i - 1]!.identifier},${got[i - 1]!.sent}`);
  expect(new Set(got.map((r) => r.identifier)).size).toBe(got.length);
}
