import { readFileSync } from 'node:fs';
import { Ajv2020, type ValidateFunction } from 'ajv/dist/2020.js';
import addFormatsModule from 'ajv-formats';
import { capTime, messageTexts, type CapMessageInput } from './cap.js';

/*
 * The EIDO-style JSON incident document (target format `eido`), pure: the same message as the CAP producer
 * (identifier, sent, references, the rule's urgency/severity/certainty, area, snapshot) as JSON, validated
 * against the repository's versioned JSON Schema (eido-v1.schema.json, draft 2020-12) before it leaves.
 */

export const EIDO_SCHEMA_FILE = new URL('./eido-v1.schema.json', import.meta.url);
export const EIDO_VERSION = 'vigil-eido/1';
export const EIDO_CONTENT_TYPE = 'application/json';

export type EidoMessageInput = CapMessageInput & { incidentId: string };

/** `sender,identifier,sent` (a CAP reference, as stored) as the document's reference object. */
function referenceOf(ref: string | null): { sender: string; messageId: string; sent: string } | null {
  if (!ref) return null;
  const [sender = '', messageId = '', sent = ''] = ref.split(',');
  return { sender, messageId, sent };
}

export function buildEido(m: EidoMessageInput): Record<string, unknown> {
  const i = m.info;
  const { headline, description } = messageTexts(m);
  const loc = m.location;
  const where = `Site ${i.site_id}`;
  let location: Record<string, unknown> | null = null;
  if (loc && 'circle' in loc)
    location = {
      description: where,
      circle: { lat: loc.circle.lat, lon: loc.circle.lon, radiusKm: loc.circle.radius_km },
    };
  else if (loc) {
    const pts = [...loc.polygon];
    const first = pts[0];
    const last = pts[pts.length - 1];
    if (first && last && (first[0] !== last[0] || first[1] !== last[1])) pts.push(first);
    location = { description: where, polygon: pts };
  }
  return {
    eidoVersion: EIDO_VERSION,
    messageId: m.identifier,
    messageType: m.msgType,
    sender: m.sender,
    sent: capTime(m.sent),
    references: referenceOf(m.references),
    incident: {
      id: m.incidentId,
      status: m.msgType === 'Cancel' ? 'Closed' : 'Active',
      category: 'Security',
      event: i.rule.event,
      urgency: m.msgType === 'Cancel' ? 'Past' : i.rule.urgency,
      severity: i.rule.severity,
      certainty: i.rule.certainty,
      headline,
      description,
      ...(m.msgType === 'Cancel' ? { closureReason: i.reason ?? 'track ended' } : {}),
    },
    observation: {
      label: i.label,
      score: i.score,
      zones: i.zones,
      occurredAt: i.occurred_at,
      siteId: i.site_id,
      deviceId: i.device_id,
      cameraId: i.camera_id,
      trackId: i.track_id,
      rule: i.rule_name,
    },
    location,
    attachments: m.resource
      ? [
          {
            description: 'Snapshot',
            mimeType: m.resource.mimeType,
            ...(m.resource.size !== null ? { sizeBytes: m.resource.size } : {}),
            uri: m.resource.uri,
            ...(m.resource.digest !== null ? { sha256: m.resource.digest } : {}),
          },
        ]
      : [],
  };
}

// ajv-formats is CommonJS: its default export arrives wrapped under NodeNext.
const addFormats = ((addFormatsModule as unknown as { default?: typeof addFormatsModule }).default ??
  addFormatsModule) as unknown as (ajv: Ajv2020) => Ajv2020;

/** The compiled schema: `check` returns null when a document is valid, else the validator's messages. */
export class EidoSchema {
  private constructor(private readonly validate: ValidateFunction) {}

  static fromFile(file: URL | string = EIDO_SCHEMA_FILE): EidoSchema {
    const ajv = new Ajv2020({ allErrors: true, strict: true });
    addFormats(ajv);
    return new EidoSchema(ajv.compile(JSON.parse(readFileSync(file, 'utf8')) as object));
  }

  check(doc: unknown): string | null {
    if (this.validate(doc)) return null;
    return (this.validate.errors ?? [])
      .slice(0, 5)
      .map(
        (e) =>
          `${e.instancePath || '/'} ${e.message ?? 'is invalid'}${e.params ? ` ${JSON.stringify(e.params)}` : ''}`,
      )
      .join('; ');
  }
}
