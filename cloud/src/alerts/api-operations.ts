import type { ApiOperation } from '../api/openapi.js';
import {
  cancelBody,
  createRuleBody,
  createTargetBody,
  idParams,
  incidentsQuery,
  messagesQuery,
  siteLocationBody,
  siteParams,
  updateRuleBody,
} from './routes.js';
import {
  createdTargetSchema,
  incidentViewSchema,
  listOf,
  messageViewSchema,
  ruleViewSchema,
  targetViewSchema,
} from './views.js';
import { z } from 'zod';

const READERS = ['admin', 'auditor', 'operator'] as const;
const tenantWide = ({ tenant }: { tenant: string }) => ({ type: 'alerts' as const, tenant });
const write = { action: 'alerts:write' as const, roles: ['admin'], resource: tenantWide };
const read = { action: 'alerts:read' as const, roles: READERS };
const tag = 'Agency alerts';

/** The alert routes for the registry (api/openapi.ts). */
export function alertOperations(): ApiOperation[] {
  const op = (o: Omit<ApiOperation, 'mount' | 'tag'>): ApiOperation => ({ mount: '/v1', tag, ...o });
  return [
    op({
      method: 'post',
      path: '/alerts/targets',
      operationId: 'createAlertTarget',
      summary: 'Create an agency target',
      description:
        'Messages (format `cap`: CAP 1.2 XML, the default; `eido`: the EIDO-style JSON incident document) are ' +
        'POSTed to `url` (https) with a client certificate (auth `mtls`: client_cert_pem, client_key_pem, ' +
        'optionally the agency CA) or signed with RFC 9421 (auth `signature`: the secret in this response). ' +
        'delivery `pull`: no url and no auth, the messages are only in the Atom feed. The Atom feed token is in ' +
        'this response only.',
      authorization: write,
      body: createTargetBody,
      success: {
        status: 201,
        description: 'The target with its one-time secrets.',
        schema: createdTargetSchema,
      },
      withholdSuccessBody: 'the response holds the signing secret and the feed token, shown once only',
    }),
    op({
      method: 'get',
      path: '/alerts/targets',
      operationId: 'listAlertTargets',
      summary: 'List agency targets',
      authorization: read,
      success: {
        status: 200,
        description: 'The targets.',
        schema: listOf(targetViewSchema, 'AlertTargetList'),
      },
    }),
    ...(['disable', 'enable'] as const).map((verb) =>
      op({
        method: 'post',
        path: `/alerts/targets/:id/${verb}`,
        operationId: `${verb}AlertTarget`,
        summary: `${verb === 'disable' ? 'Disable' : 'Enable'} an agency target`,
        authorization: write,
        params: idParams,
        success: { status: 200, description: 'The target.', schema: targetViewSchema },
        errors: [404],
      }),
    ),
    op({
      method: 'post',
      path: '/alerts/rules',
      operationId: 'createAlertRule',
      summary: 'Create an alert rule',
      description:
        'Committed events that match (labels, zones, sites, cameras, UTC schedule, minimum score) open one incident ' +
        'per track; after min_dwell_seconds it is sent as a CAP Alert to the targets, then Update when its label or ' +
        'zones change and Cancel when the track ends.',
      authorization: write,
      body: createRuleBody,
      success: { status: 201, description: 'The rule.', schema: ruleViewSchema },
    }),
    op({
      method: 'get',
      path: '/alerts/rules',
      operationId: 'listAlertRules',
      summary: 'List alert rules',
      authorization: read,
      success: { status: 200, description: 'The rules.', schema: listOf(ruleViewSchema, 'AlertRuleList') },
    }),
    op({
      method: 'patch',
      path: '/alerts/rules/:id',
      operationId: 'updateAlertRule',
      summary: 'Change or disable an alert rule',
      authorization: write,
      params: idParams,
      body: updateRuleBody,
      success: { status: 200, description: 'The rule.', schema: ruleViewSchema },
      errors: [404],
    }),
    op({
      method: 'get',
      path: '/alerts/incidents',
      operationId: 'listAlertIncidents',
      summary: 'List incidents, newest first',
      authorization: read,
      query: incidentsQuery,
      queryDocs: {
        state: 'Only incidents in this state.',
        limit: 'At most this many (1 to 500, default 50).',
      },
      success: {
        status: 200,
        description: 'The incidents.',
        schema: listOf(incidentViewSchema, 'AlertIncidentList'),
      },
    }),
    op({
      method: 'post',
      path: '/alerts/incidents/:id/cancel',
      operationId: 'cancelAlertIncident',
      summary: 'Cancel an incident (sends CAP Cancel)',
      authorization: { action: 'alerts:cancel', roles: ['admin', 'operator'], resource: tenantWide },
      params: idParams,
      body: cancelBody,
      success: { status: 200, description: 'The incident.', schema: incidentViewSchema },
      errors: [404],
    }),
    op({
      method: 'get',
      path: '/alerts/messages',
      operationId: 'listAlertMessages',
      summary: 'List CAP messages and their delivery state',
      authorization: read,
      query: messagesQuery,
      queryDocs: {
        incident: 'Only this incident.',
        target: 'Only this target.',
        state: 'Only this state (dead: the dead letters).',
        limit: 'At most this many (1 to 500, default 50).',
      },
      success: {
        status: 200,
        description: 'The messages.',
        schema: listOf(messageViewSchema, 'AlertMessageList'),
      },
    }),
    op({
      method: 'post',
      path: '/alerts/messages/:id/replay',
      operationId: 'replayAlertMessage',
      summary: 'Replay a dead CAP message',
      authorization: write,
      params: z.strictObject({ id: z.string().min(1).max(300) }),
      success: { status: 200, description: 'The message, pending again.', schema: messageViewSchema },
      errors: [404],
    }),
    op({
      method: 'put',
      path: '/sites/:id/location',
      operationId: 'setSiteLocation',
      summary: 'Set a site’s location (CAP area)',
      authorization: write,
      params: siteParams,
      body: siteLocationBody,
      success: {
        status: 200,
        description: 'The location.',
        schema: z.object({ site_id: z.string(), location: z.unknown() }).meta({ id: 'SiteLocation' }),
      },
      errors: [404],
    }),
  ];
}
