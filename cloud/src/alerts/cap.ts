import type { AlertMessageInfo, SiteLocation } from '../storage/tables.js';

/*
 * The CAP 1.2 producer, pure: one message (Alert, Update or Cancel) as XML text. Element order follows the
 * schema (../shared/standards/cap/CAP-v1.2.xsd); every message is validated against it before it leaves
 * (xsd.ts). Values are escaped, never trusted: labels, zones and ids come from devices.
 */

export const CAP_NS = 'urn:oasis:names:tc:emergency:cap:1.2';

/** `sent` in the schema's format: seconds, explicit offset, never `Z` (2026-01-01T10:00:00+00:00). */
export function capTime(d: Date): string {
  return `${d.toISOString().slice(0, 19)}+00:00`;
}

/** A CAP reference: `sender,identifier,sent`. */
export function capReference(sender: string, identifier: string, sent: Date): string {
  return `${sender},${identifier},${capTime(sent)}`;
}

/** The identifier of message `seq` of an incident: the same on every retry and at every target. */
export function capIdentifier(incidentId: string, seq: number): string {
  return `vigil-${incidentId}-${seq}`;
}

export function xmlEscape(s: string): string {
  return s
    .replace(/[<>&"']/g, (c) => `&#${c.charCodeAt(0)};`)
    .replace(
      // Characters XML 1.0 cannot carry at all (controls other than tab, LF, CR; lone surrogates).
      // eslint-disable-next-line no-control-regex
      /[\u0000-\u0008\u000b\u000c\u000e-\u001f\ud800-\udfff\ufffe\uffff]/g,
      '\ufffd',
    );
}

const el = (name: string, value: string | number): string => `<${name}>${xmlEscape(String(value))}</${name}>`;

const coord = (n: number): string => Number(n.toFixed(6)).toString();

/** CAP `area` content for a site location: a closed polygon ("lat,lon" pairs) or a circle ("lat,lon radius"). */
export function areaXml(siteId: string, loc: SiteLocation | null): string {
  if (!loc) return '';
  let shape: string;
  if ('circle' in loc) {
    const c = loc.circle;
    shape = el('circle', `${coord(c.lat)},${coord(c.lon)} ${coord(c.radius_km)}`);
  } else {
    const pts = [...loc.polygon];
    const first = pts[0];
    const last = pts[pts.length - 1];
    if (first && last && (first[0] !== last[0] || first[1] !== last[1])) pts.push(first);
    shape = el('polygon', pts.map(([lat, lon]) => `${coord(lat)},${coord(lon)}`).join(' '));
  }
  return `<area>${el('areaDesc', `Site ${siteId}`)}${shape}</area>`;
}

export interface CapMessageInput {
  identifier: string;
  sender: string;
  sent: Date;
  msgType: 'Alert' | 'Update' | 'Cancel';
  /** `sender,identifier,sent` of the message this one follows (Update, Cancel). */
  references: string | null;
  info: AlertMessageInfo;
  location: SiteLocation | null;
  /** The snapshot: a signed, expiring URL and the digest of its bytes. */
  resource: { uri: string; mimeType: string; size: number | null; digest: string | null } | null;
}

/** The headline and description of a message (shared by CAP and the EIDO-style document). */
export function messageTexts(m: Pick<CapMessageInput, 'msgType' | 'info'>): {
  headline: string;
  description: string;
} {
  const i = m.info;
  const headline =
    i.rule.headline ??
    (m.msgType === 'Cancel'
      ? `${i.rule.event} ended: ${i.label} at site ${i.site_id}`
      : `${i.rule.event}: ${i.label} at site ${i.site_id}, camera ${i.camera_id}`);
  const zones = i.zones.length > 0 ? ` in zone(s) ${i.zones.join(', ')}` : '';
  const description =
    m.msgType === 'Cancel'
      ? `Incident closed (${i.reason ?? 'track ended'}). Rule "${i.rule_name}".`
      : `${i.label} (score ${i.score.toFixed(2)}) seen by camera ${i.camera_id} of site ${i.site_id}${zones} at ` +
        `${capTime(new Date(i.occurred_at))}, track ${i.track_id}. Rule "${i.rule_name}".`;
  return { headline: headline.slice(0, 160), description };
}

export function buildCap(m: CapMessageInput): string {
  const i = m.info;
  const { headline, description } = messageTexts(m);
  const resource = m.resource
    ? '<resource>' +
      el('resourceDesc', 'Snapshot') +
      el('mimeType', m.resource.mimeType) +
      (m.resource.size !== null ? el('size', m.resource.size) : '') +
      el('uri', m.resource.uri) +
      (m.resource.digest !== null ? el('digest', m.resource.digest) : '') +
      '</resource>'
    : '';
  return (
    `<?xml version="1.0" encoding="UTF-8"?>\n<alert xmlns="${CAP_NS}">` +
    el('identifier', m.identifier) +
    el('sender', m.sender) +
    el('sent', capTime(m.sent)) +
    el('status', 'Actual') +
    el('msgType', m.msgType) +
    el('scope', 'Private') +
    el('addresses', 'agency') +
    (m.references ? el('references', m.references) : '') +
    '<info>' +
    el('language', 'en-US') +
    el('category', 'Security') +
    el('event', i.rule.event) +
    el('urgency', m.msgType === 'Cancel' ? 'Past' : i.rule.urgency) +
    el('severity', i.rule.severity) +
    el('certainty', i.rule.certainty) +
    el('senderName', 'Vigil') +
    el('headline', headline) +
    el('description', description) +
    `<parameter>${el('valueName', 'vigil:track')}${el('value', `${i.device_id}/${i.camera_id}/${i.track_id}`)}</parameter>` +
    // CAP 1.2 says `digest` is SHA-1; ours is SHA-256 (README, agency alerts): said in the message itself too.
    (m.resource?.digest != null
      ? `<parameter>${el('valueName', 'vigil:resourceDigestAlgorithm')}${el('value', 'SHA-256')}</parameter>`
      : '') +
    resource +
    areaXml(i.site_id, m.location) +
    '</info></alert>'
  );
}
