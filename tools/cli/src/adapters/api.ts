import { CliError } from '../errors.js';

/** An event as GET /v1/events returns it (the fields the CLI shows; the rest passes through). */
export interface ApiEvent {
  event_id: string;
  tenant_id: string;
  site_id: string;
  device_id: string;
  camera_id: string;
  occurred_at: string;
  received_at: string;
  track_id: string;
  phase: string;
  label: string;
  score: number;
  trigger_zone: string | null;
  zones: string[];
  [key: string]: unknown;
}

export interface EventPage {
  items: ApiEvent[];
  next_cursor: string | null;
}

export interface EventQuery {
  device?: string | undefined;
  camera?: string | undefined;
  label?: string | undefined;
  since?: string | undefined;
  until?: string | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

/** An enrollment token as the API lists it (never the secret). */
export interface ApiEnrollmentToken {
  id: string;
  tenant_id: string;
  site_id: string;
  created_by: string;
  created_at: string;
  expires_at: string;
  used_at: string | null;
  used_by_device: string | null;
  note: string | null;
}

/** POST /v1/enrollment-tokens: the token plus its secret, shown this once. */
export interface CreatedEnrollmentToken extends ApiEnrollmentToken {
  token: string;
}

export interface CreateEnrollmentToken {
  site_id: string;
  ttl_seconds?: number | undefined;
  note?: string | undefined;
}

export const DEVICE_STATUSES = ['online', 'offline', 'never', 'revoked'] as const;
export type DeviceStatus = (typeof DEVICE_STATUSES)[number];

/** A device as GET /v1/devices returns it (cloud api/device-store.ts DeviceView). */
export interface ApiDevice {
  id: string;
  tenant_id: string;
  site_id: string | null;
  /** Derived by the cloud at read time from the last heartbeat (and revocation). */
  status: DeviceStatus;
  last_seen_at: string | null;
  agent_version: string | null;
  /** A uint64 as a decimal string. */
  config_version: string | null;
  heartbeats: number;
  created_at: string;
  enrolled_at: string | null;
  hardware_id: string | null;
  revoked_at: string | null;
  revoked_by: string | null;
  revoke_reason: string | null;
  /** The agent updater's last status from heartbeats; null/absent: none reported. */
  update?: {
    state: string;
    current: string | null;
    previous: string | null;
    target: string | null;
    reason: string | null;
    updated_at: string | null;
  } | null;
  [key: string]: unknown;
}

export interface DevicePage {
  items: ApiDevice[];
  next_cursor: string | null;
}

export interface DeviceQuery {
  site?: string | undefined;
  status?: DeviceStatus | undefined;
  limit?: number | undefined;
  cursor?: string | undefined;
}

/**
 * POST /v1/devices/{id}/revoke. `nats`: `cut` = the device's NATS connections were closed now; `pending` =
 * the cloud could not push the NATS account yet and retries; `tls_only` = NATS runs without per-device
 * credentials, so NATS access ends when the device's certificate expires.
 */
export interface DeviceRevocation {
  device_id: string;
  result: 'revoked' | 'already_revoked';
  revoked_at: string;
  revoked_by: string;
  reason: string | null;
  certificates_revoked: number;
  nats: 'cut' | 'pending' | 'tls_only';
}

interface Problem {
  title?: string;
  status?: number;
  detail?: string;
  errors?: Array<{ path: string; message: string }>;
}

/** A problem+json answer from the API, as one readable message. */
export class ApiError extends CliError {
  constructor(
    readonly status: number,
    readonly problem: Problem,
  ) {
    const lines = [
      `API answered ${status} ${problem.title ?? ''}${problem.detail ? `: ${problem.detail}` : ''}`,
    ];
    for (const e of problem.errors ?? []) lines.push(`  ${e.path}: ${e.message}`);
    super(lines.join('\n'));
  }
}

/** The Vigil REST API over fetch; one bearer token per client. */
export class ApiClient {
  constructor(
    private readonly baseUrl: string,
    private readonly token: string,
    private readonly timeoutMs = 15_000,
  ) {}

  listEvents(q: EventQuery): Promise<EventPage> {
    return this.get<EventPage>(`/v1/events${query(q)}`);
  }

  getEvent(id: string): Promise<ApiEvent> {
    return this.get<ApiEvent>(`/v1/events/${encodeURIComponent(id)}`);
  }

  createEnrollmentToken(body: CreateEnrollmentToken): Promise<CreatedEnrollmentToken> {
    return this.send<CreatedEnrollmentToken>('POST', '/v1/enrollment-tokens', body);
  }

  listEnrollmentTokens(includeUsed: boolean): Promise<{ items: ApiEnrollmentToken[] }> {
    return this.get(`/v1/enrollment-tokens${includeUsed ? '?include_used=true' : ''}`);
  }

  listDevices(q: DeviceQuery): Promise<DevicePage> {
    return this.get<DevicePage>(`/v1/devices${query(q)}`);
  }

  getDevice(id: string): Promise<ApiDevice> {
    return this.get<ApiDevice>(`/v1/devices/${encodeURIComponent(id)}`);
  }

  revokeDevice(id: string, reason: string): Promise<DeviceRevocation> {
    return this.send<DeviceRevocation>('POST', `/v1/devices/${encodeURIComponent(id)}/revoke`, { reason });
  }

  /** A JSON call of a route without a typed method here (config OTA, models). */
  call<T>(method: string, path: string, body?: unknown): Promise<T> {
    return this.send<T>(method, path, body);
  }

  /** PUT of raw bytes (application/octet-stream), e.g. a model file. */
  upload<T>(path: string, bytes: Uint8Array): Promise<T> {
    return this.send<T>('PUT', path, bytes);
  }

  /** GET of raw bytes (e.g. a snapshot): the body and the response headers. */
  async download(path: string): Promise<{ bytes: Buffer; headers: Headers }> {
    const res = await this.fetch('GET', path, undefined, '*/*');
    if (!res.ok) throw await apiErrorOf(res);
    return { bytes: Buffer.from(await res.arrayBuffer()), headers: res.headers };
  }

  /**
   * POST with a JSON body whose answer is a byte stream (an evidence archive): the open response, for the
   * caller to stream to a file. A problem answer throws ApiError.
   */
  async postForStream(path: string, body: unknown): Promise<Response> {
    const res = await this.fetch('POST', path, body, 'application/x-tar, application/problem+json');
    if (!res.ok) throw await apiErrorOf(res);
    return res;
  }

  private get<T>(path: string): Promise<T> {
    return this.send<T>('GET', path);
  }

  private async send<T>(method: string, path: string, body?: unknown): Promise<T> {
    const res = await this.fetch(method, path, body, 'application/json');
    if (!res.ok) throw await apiErrorOf(res);
    return JSON.parse(await res.text()) as T;
  }

  private async fetch(method: string, path: string, body: unknown, accept: string): Promise<Response> {
    const url = new URL(path, this.baseUrl);
    let res: Response;
    try {
      res = await fetch(url, {
        method,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept,
          ...(body === undefined
            ? {}
            : {
                'content-type': body instanceof Uint8Array ? 'application/octet-stream' : 'application/json',
              }),
        },
        ...(body === undefined ? {} : { body: body instanceof Uint8Array ? body : JSON.stringify(body) }),
        signal: AbortSignal.timeout(this.timeoutMs),
      });
    } catch (err) {
      const cause = (err as { cause?: { code?: string; message?: string } }).cause;
      throw new CliError(
        `cannot reach the API at ${this.baseUrl} (${cause?.code ?? cause?.message ?? (err as Error).message}); ` +
          'is the cloud running (`./dev up`)? --api <url> points elsewhere',
        1,
        { cause: err },
      );
    }
    return res;
  }
}

async function apiErrorOf(res: Response): Promise<ApiError> {
  const text = await res.text();
  let problem: Problem = {};
  try {
    problem = JSON.parse(text) as Problem;
  } catch {
    problem = { detail: text.slice(0, 200) };
  }
  return new ApiError(res.status, problem);
}

/** `?k=v&...` of the defined values of `q`, or '' when there are none. */
function query(q: object): string {
  const params = new URLSearchParams();
  for (const [k, v] of Object.entries(q)) if (v !== undefined) params.set(k, String(v));
  const qs = params.toString();
  return qs ? `?${qs}` : '';
}
