import { createHash, randomBytes, randomUUID } from 'node:crypto';
import { Metadata, Root } from '@tufjs/models';
import { encodeDeviceCursor } from '../../src/api/devices-query.js';
import { encodeCursor } from '../../src/api/events-query.js';
import { generateKey, publicKeyOf, signWith, TUF_SPEC_VERSION } from '../../src/releases/keys.js';
import { uuidV7 } from '../api-fixtures.js';
import type { Sample } from './api-probe.js';

/*
 * The valid request of every route for the API probe (cloud/test/security-api-probe.test.ts), naming the
 * objects of one tenant (Fx, seeded by the probe). A route of the registry without an entry here fails the
 * probe's first test by name: adding a route means adding its sample, nothing else.
 */

/** Objects of one tenant the samples name. */
export interface Fx {
  tenant: string;
  site: string;
  device: string;
  revokeDevice: string;
  event: string;
  eventAt: string;
  mediaRead: string;
  mediaErase: string;
  rollout: string;
  webhook: string;
  alertTarget: string;
  alertRule: string;
  alertIncident: string;
  alertMessage: string;
  /** An active legal hold (released by the sample) and one placed under the two-admin rule (approved). */
  hold: string;
  holdPending: string;
  /** An erasure request of the tenant (scope: an event id nobody has; seeded by the probe). */
  erasure: string;
  model: Buffer;
}

export const fixture = (tenant: string, site: string, p: string): Fx => {
  const at = new Date(Date.now() - 60_000);
  return {
    tenant,
    site,
    device: `${p}-gw`,
    revokeDevice: `${p}-gw-revoked`,
    event: uuidV7(at.getTime()),
    eventAt: at.toISOString().replace(/\.(\d{3})Z$/, '.$1000Z'),
    mediaRead: uuidV7(at.getTime()),
    mediaErase: uuidV7(at.getTime()),
    rollout: randomUUID(),
    webhook: '',
    alertTarget: '',
    alertRule: '',
    alertIncident: '',
    alertMessage: '',
    hold: randomUUID(),
    holdPending: randomUUID(),
    erasure: '',
    model: randomBytes(1024),
  };
};
export const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

export interface SampleSpec {
  sample: Sample;
  /** Order of the valid requests (state: a document is read after it is written, pause before resume). */
  phase?: number;
  /** Run before each valid request of this route (e.g. end the active rollout so that one can start). */
  before?: (fx: Fx) => Promise<void>;
  /** Why another tenant's values are not refused here (they name nothing the other tenant owns). */
  crossTenantExempt?: string;
  /**
   * Only this tenant's callers may make the valid request (the route acts on something global that one
   * tenant owns, e.g. publishing agent releases); the other tenant's callers must be refused with a 403.
   */
  onlyTenant?: string;
}

/** The agent release publisher tenant of the probe (its cloud's `releases.publisherTenant`). */
export const RELEASE_PUBLISHER = 'initech';

/** One TUF root v1 (the release repository is global: every sample pushes the same one). */
let probeRoot: Record<string, unknown> | undefined;
function releaseRoot(): Record<string, unknown> {
  if (probeRoot) return probeRoot;
  const key = generateKey();
  const signed = new Root({
    version: 1,
    specVersion: TUF_SPEC_VERSION,
    expires: new Date(Date.now() + 30 * 86_400_000).toISOString().replace(/\.\d{3}Z$/, 'Z'),
    consistentSnapshot: true,
  });
  for (const role of ['root', 'targets', 'snapshot', 'timestamp']) signed.addKey(publicKeyOf(key), role);
  const md = new Metadata(signed);
  signWith(md, key);
  probeRoot = md.toJSON();
  return probeRoot;
}
const releaseBundle = randomBytes(2048);

/** A valid request per operationId, for tenant `fx`. */
export function samples(fx: Fx, endRollouts: (tenant: string) => Promise<void>): Record<string, SampleSpec> {
  const since = new Date(Date.now() - 86_400_000).toISOString();
  const until = new Date(Date.now() + 3_600_000).toISOString();
  const config = {
    cameras: [
      {
        id: 'cam1',
        url: 'rtsp://10.0.0.5/stream',
        enabled: true,
        detectFps: 5,
        modelName: 'yolo',
        zones: [
          {
            id: 'door',
            name: 'Door',
            polygon: {
              points: [
                { x: 0, y: 0 },
                { x: 1, y: 0 },
                { x: 1, y: 1 },
              ],
            },
          },
        ],
        classThresholds: { person: 0.5 },
        labels: ['person'],
      },
    ],
    models: [{ name: 'yolo', type: 'onnx', sha256: 'ab'.repeat(32), version: '1' }],
    buffer: { maxEvents: 1000 },
    privacy: { redactFaces: true },
    attributes: { region: 'eu' },
  };
  const reason = { reason: 'probe' };
  return {
    listEvents: {
      sample: {
        query: {
          site: 'hq',
          device: fx.device,
          camera: 'cam1',
          label: 'person',
          since,
          until,
          limit: '10',
          cursor: encodeCursor({ occurredAt: '2099-01-01T00:00:00.000000Z', eventId: fx.event }),
        },
      },
    },
    getEvent: { sample: { params: { id: fx.event } } },
    getEventReview: { sample: { params: { id: fx.event } } },
    reviewEvent: { sample: { params: { id: fx.event } } },
    unreviewEvent: { sample: { params: { id: fx.event } } },
    getMedia: { sample: { params: { id: fx.mediaRead } } },
    eraseMedia: { sample: { params: { id: fx.mediaErase }, body: reason } },
    listAuditLog: {
      sample: {
        query: {
          action: 'media.read',
          actor: `user@${fx.tenant}`,
          outcome: 'allowed',
          since,
          until,
          limit: '10',
          cursor: '9000000000000000000',
        },
      },
    },
    listDevices: {
      sample: { query: { site: fx.site, status: 'offline', limit: '10', cursor: encodeDeviceCursor('a') } },
    },
    getDevice: { sample: { params: { id: fx.device } } },
    revokeDevice: { sample: { params: { id: fx.revokeDevice }, body: reason } },
    putConfigDocument: {
      sample: { params: { scope: 'site', scopeId: fx.site }, body: config },
      crossTenantExempt: 'writes the caller’s own document for a site of that name',
    },
    getConfigDocument: { sample: { params: { scope: 'site', scopeId: fx.site } }, phase: 1 },
    getDeviceConfig: { sample: { params: { id: fx.device } }, phase: 1 },
    issueDeviceConfig: { sample: { params: { id: fx.device } }, phase: 1 },
    uploadModel: {
      sample: {
        params: { sha256: sha(fx.model) },
        raw: { bytes: fx.model, contentType: 'application/octet-stream' },
      },
      crossTenantExempt: 'content-addressed: the bytes name themselves',
    },
    listModels: { sample: {} },
    createEnrollmentToken: { sample: { body: { site_id: fx.site, ttl_seconds: 3600, note: 'probe' } } },
    listEnrollmentTokens: { sample: { query: { include_used: 'true' } } },
    createRollout: {
      sample: {
        body: {
          target: { scope: 'site', id: fx.site },
          body: { attributes: { region: 'eu' } },
          spec: {
            canary: 1,
            waves: [50, 100],
            gate_window_seconds: 60,
            soak_seconds: 0,
            gates: {
              applied_ratio: 0.9,
              allow_degraded: true,
              min_fps_ratio: 0.5,
              max_inference_ratio: 2,
              event_rate: { min: 0, max: 10 },
            },
            abort: { failure_ratio: 0.2, min_reported: 2 },
          },
        },
      },
      phase: 3,
      before: (f) => endRollouts(f.tenant),
    },
    listRollouts: { sample: { query: { limit: '10' } } },
    getRollout: { sample: { params: { id: fx.rollout } } },
    listRolloutDevices: { sample: { params: { id: fx.rollout }, query: { limit: '10', after: '-1' } } },
    pauseRollout: { sample: { params: { id: fx.rollout }, body: reason }, phase: 0 },
    resumeRollout: { sample: { params: { id: fx.rollout }, body: reason }, phase: 1 },
    abortRollout: { sample: { params: { id: fx.rollout }, body: reason }, phase: 2 },
    createWebhook: {
      sample: {
        body: {
          url: 'https://hooks.example.com/vigil',
          filter: { labels: ['person'], sites: [fx.site], cameras: ['cam1'] },
          description: 'probe',
        },
      },
    },
    listWebhooks: { sample: {} },
    disableWebhook: { sample: { params: { id: fx.webhook }, body: reason } },
    listWebhookDeliveries: { sample: { params: { id: fx.webhook }, query: { limit: '10' } } },
    createAlertTarget: {
      sample: { body: { name: 'probe', url: 'https://agency.example.com/cap', auth: 'signature' } },
    },
    listAlertTargets: { sample: {} },
    disableAlertTarget: { sample: { params: { id: fx.alertTarget } } },
    enableAlertTarget: { sample: { params: { id: fx.alertTarget } }, phase: 1 },
    createAlertRule: {
      sample: {
        body: {
          name: 'probe',
          match: { labels: ['person'] },
          cap: { event: 'Intrusion' },
          target_ids: [fx.alertTarget],
        },
      },
    },
    listAlertRules: { sample: {} },
    updateAlertRule: { sample: { params: { id: fx.alertRule }, body: { name: 'probe' } } },
    listAlertIncidents: { sample: { query: { state: 'alerted', limit: '10' } } },
    cancelAlertIncident: { sample: { params: { id: fx.alertIncident }, body: reason } },
    listAlertMessages: {
      sample: { query: { incident: fx.alertIncident, target: fx.alertTarget, state: 'dead', limit: '10' } },
    },
    replayAlertMessage: { sample: { params: { id: fx.alertMessage } } },
    setSiteLocation: {
      sample: { params: { id: fx.site }, body: { circle: { lat: 48.8, lon: 2.3, radius_km: 1 } } },
    },
    publishReleaseMetadata: {
      sample: { params: { role: 'root' }, body: releaseRoot() },
      onlyTenant: RELEASE_PUBLISHER,
      crossTenantExempt: 'one release repository for every tenant; its publisher is a configured tenant',
    },
    uploadReleaseBundle: {
      sample: {
        params: { sha256: sha(releaseBundle) },
        raw: { bytes: releaseBundle, contentType: 'application/octet-stream' },
      },
      phase: 1,
      onlyTenant: RELEASE_PUBLISHER,
      crossTenantExempt: 'content-addressed: the bytes name themselves',
    },
    getReleaseRepositoryFile: {
      sample: { params: { dir: 'metadata', file: '1.root.json' } },
      phase: 1,
      crossTenantExempt: 'one release repository, read by every tenant (the agent is not tenant data)',
    },
    listRetentionPolicies: { sample: {} },
    setRetentionPolicy: {
      sample: {
        body: {
          scope: 'site',
          site_id: fx.site,
          data_class: 'redacted_media',
          max_age_days: 30,
          max_bytes: 1e9,
        },
      },
    },
    deleteRetentionPolicy: {
      sample: { body: { scope: 'site', site_id: fx.site, data_class: 'redacted_media' } },
      phase: 1,
    },
    checkRetention: { sample: { query: { limit: '10' } } },
    placeHold: {
      sample: {
        body: {
          kind: 'camera_range',
          device_id: fx.device,
          camera_id: 'cam1',
          from: since,
          to: until,
          reason: 'probe',
        },
      },
    },
    listHolds: { sample: { query: { state: 'all', limit: '10' } } },
    getHold: { sample: { params: { id: fx.hold } } },
    releaseHold: { sample: { params: { id: fx.hold }, body: reason } },
    approveHold: { sample: { params: { id: fx.holdPending }, body: { note: 'probe' } } },
    getPrivacySettings: { sample: {} },
    setPrivacySettings: { sample: { body: { holds_two_admin: true } } },
    // Erasure of an event id nobody has: a valid request that erases nothing of the probe's fixtures.
    createErasure: {
      sample: { body: { scope: { kind: 'event', event_ids: [randomUUID()] }, reason: 'probe' } },
    },
    getErasure: { sample: { params: { id: fx.erasure } } },
    createExport: { sample: { body: { scope: { kind: 'event', event_ids: [fx.event] }, reason: 'probe' } } },
    getExportPublicKey: { sample: {} },
    getOpenApiDocument: { sample: {} },
    getApiDocs: { sample: {} },
    getHealth: { sample: {} },
    getReadiness: { sample: {} },
    getMetrics: { sample: {} },
  };
}
