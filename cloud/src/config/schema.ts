import { z } from 'zod';
import { ALLOWED_JWT_ALGORITHMS } from '../auth/jwt.js';
import { CLOUD_ROLES } from './roles.js';

const port = z.number().int().min(0).max(65535);
const postgresUrl = z.string().regex(/^postgres(ql)?:\/\//, 'must be a postgres:// URL');
const isHttpsOrLoopback = (u: string): boolean =>
  u.startsWith('https:') || /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])($|[:/])/.test(u);
/** One GCRA limit: a sustained rate and the burst a full bucket allows at once. */
const rateLimitRule = (ratePerSecond: number, burst: number) =>
  z
    .strictObject({
      /** Sustained requests per second; fractions allowed (0.5 = one every 2 s). */
      ratePerSecond: z.number().positive().max(1_000_000).default(ratePerSecond),
      /** Requests a caller that has been quiet may send at once. */
      burst: z.number().int().min(1).max(1_000_000).default(burst),
    })
    .prefault({});

/** The cloud's whole configuration: one schema, defaults that work locally, unknown keys rejected. */
export const cloudConfigSchema = z
  .strictObject({
    /**
     * What this process runs (config/roles.ts); default all of them. `--role` / VIGIL_CLOUD_ROLES override it.
     * The per-capability `enabled` switches (api, ingest, realtime, integrations) still apply inside a role.
     */
    roles: z
      .array(z.enum(CLOUD_ROLES))
      .min(1)
      .max(CLOUD_ROLES.length)
      .refine((r) => new Set(r).size === r.length, { message: 'a role is named twice' })
      .default([...CLOUD_ROLES]),
    /** The scheduler role's leader lease (scheduler/lease.ts, table scheduler_leases). */
    scheduler: z
      .strictObject({
        /** A dead leader's work is taken over at most this long (plus one renewal interval) after it stopped. */
        leaseTtlSeconds: z.number().int().min(3).max(300).default(15),
        /** How often the leader renews and standbys try to take over; under half the ttl. */
        renewIntervalSeconds: z.number().int().min(1).max(100).default(5),
      })
      .refine((s) => s.renewIntervalSeconds * 2 < s.leaseTtlSeconds, {
        message: 'renewIntervalSeconds must be under half of leaseTtlSeconds',
        path: ['renewIntervalSeconds'],
      })
      .prefault({}),
    http: z
      .strictObject({
        host: z.string().min(1).default('127.0.0.1'),
        port: port.default(8080),
        // Server timeouts (api/http.ts applyServerTimeouts). keepAlive above the idle timeout of whatever sits in
        // front (60 s: AWS ALB, nginx upstream keepalive), so the proxy or client closes an idle connection first:
        // Node's 5 s default closed sockets that clients were about to reuse (ECONNRESET, issue 20 soak).
        keepAliveTimeoutSeconds: z.number().int().min(1).max(3600).default(65),
        /** Longest a client may take to send the request headers (slowloris guard). */
        headersTimeoutSeconds: z.number().int().min(1).max(600).default(60),
        /** Longest a client may take to send a whole request (headers and body). */
        requestTimeoutSeconds: z.number().int().min(1).max(3600).default(300),
      })
      .refine((h) => h.headersTimeoutSeconds <= h.requestTimeoutSeconds, {
        message: 'headersTimeoutSeconds must not exceed requestTimeoutSeconds',
      })
      .prefault({}),
    /**
     * PostgreSQL, directly or through pgbouncer in transaction pooling mode (the cloud keeps no session state
     * between transactions: infra/postgres/README.md). storage/databases.ts builds the pools.
     */
    database: z.strictObject({
      url: postgresUrl,
      poolMax: z.number().int().min(1).max(200).default(10),
      /**
       * The password, read from this file (a mounted secret) at each new connection, for url and replicaUrl;
       * a password in the URL wins. Rotating it needs no restart.
       */
      passwordFile: z.string().min(1).optional(),
      /** A streaming replica for read-heavy API lists (events, devices); absent: everything reads the primary. */
      replicaUrl: postgresUrl.optional(),
      replicaPoolMax: z.number().int().min(1).max(200).default(10),
      /**
       * Staleness bound of replica reads: a replica whose last replayed transaction is older than this (while
       * the primary has newer ones) is not read from until it catches up; the primary answers instead.
       */
      replicaMaxLagSeconds: z.number().min(0.1).max(3600).default(5),
      /** How often the replica's lag is measured (pg_last_xact_replay_timestamp on the replica). */
      replicaLagCheckIntervalMs: z.number().int().min(100).max(60_000).default(1000),
    }),
    nats: z.strictObject({
      servers: z.array(z.string().min(1)).min(1),
      tls: z.strictObject({
        caFile: z.string().min(1),
        certFile: z.string().min(1),
        keyFile: z.string().min(1),
      }),
      name: z.string().default('vigil-cloud'),
      /**
       * Decentralized (operator/JWT) NATS auth: the NatsAuthority JSON (fleet/nats-auth.ts, 0600) from which the
       * cloud issues device tickets at enrollment, its own service users, and pushes revocations. Without it the
       * server is trusted to authorize by TLS alone (single-tenant development only).
       * `callout`: the auth callout service (fleet/nats-callout.ts) that admits devices; every cloud process
       * runs one by default (a queue group shares the requests); `enabled: false` leaves it to other processes.
       */
      auth: z
        .strictObject({
          authorityFile: z.string().min(1),
          callout: z
            .strictObject({
              enabled: z.boolean().default(true),
              maxInFlight: z.number().int().min(1).max(1024).default(32),
              maxQueued: z.number().int().min(0).max(100_000).default(1024),
            })
            .prefault({}),
        })
        .optional(),
    }),
    /** Devices count as offline after this long without a heartbeat. */
    fleet: z
      .strictObject({ offlineAfterSeconds: z.number().int().min(5).max(86_400).default(30) })
      .prefault({}),
    /** The fleet CA that issues device certificates at enrollment and renewal (fleet/identity-service.ts). */
    identity: z
      .strictObject({
        caCertFile: z.string().min(1),
        caKeyFile: z.string().min(1),
        /** Lifetime of device certificates and NATS user JWTs; agents renew at about two thirds of it. */
        certificateTtlSeconds: z
          .number()
          .int()
          .min(60)
          .max(90 * 86_400)
          .default(7 * 86_400),
        /** A device may renew at most this often (bounds the certificate registry per device). */
        minRenewIntervalSeconds: z.number().int().min(0).max(86_400).default(60),
        /** NATS URLs handed to enrolled devices; default: nats.servers. */
        natsUrls: z.array(z.string().min(1)).min(1).optional(),
      })
      .optional(),
    /** gRPC DeviceService (Enroll over TLS, Renew over mutual TLS); needs `identity`. */
    grpc: z
      .strictObject({
        enabled: z.boolean().default(false),
        host: z.string().min(1).default('127.0.0.1'),
        port: port.default(7443),
        tls: z.strictObject({ certFile: z.string().min(1), keyFile: z.string().min(1) }).optional(),
      })
      .refine((g) => !g.enabled || g.tls !== undefined, {
        message: 'grpc.tls (certFile, keyFile) is required when grpc is enabled',
        path: ['tls'],
      })
      .prefault({}),
    /** The ingest role: EVENTS -> PostgreSQL -> commit receipts (see ingest/consumer.ts). */
    ingest: z
      .strictObject({
        enabled: z.boolean().default(true),
        // One multi-row INSERT per batch: 2000 rows x 26 columns stays under PostgreSQL's 65535 parameters.
        batchSize: z.number().int().min(1).max(2000).default(500),
        /** How long one fetch waits to fill a batch (the latency of a lone event). NATS minimum: 1000. */
        fetchExpiresMs: z.number().int().min(1000).max(30_000).default(1000),
        /** Unacked messages the consumer may hold: the back-pressure bound on the cloud side. */
        maxAckPending: z.number().int().min(1).max(100_000).default(2000),
        /**
         * Batches between fetch and ack at once: the next batch is fetched and decoded while these commit
         * (cloud/bench/ingest.bench.ts). Each committing batch holds one database connection.
         */
        commitsInFlight: z.number().int().min(1).max(8).default(2),
        /** Events older than this (by occurred_at) are dead-lettered, not stored. */
        acceptPastDays: z.number().int().min(1).max(3650).default(30),
        /** Events this far ahead of the cloud clock are dead-lettered (a device clock gone wrong). */
        acceptFutureHours: z.number().int().min(1).max(168).default(24),
        /** How often ingest looks for messages stranded below its ack floor in EVENTS (ingest/stranded.ts). */
        strandedRepairIntervalSeconds: z.number().int().min(1).max(86_400).default(300),
        /** Stranded messages one repair pass reads at most (the next pass follows a second later). */
        strandedRepairMaxPerPass: z.number().int().min(1).max(100_000).default(1000),
      })
      .refine((i) => i.batchSize <= i.maxAckPending, {
        message: 'batchSize must not exceed maxAckPending',
        path: ['batchSize'],
      })
      .prefault({}),
    /** JetStream streams that the cloud creates or updates at start (idempotent). */
    streams: z
      .strictObject({
        /** Replicas of every stream (EVENTS, MEDIA, TELEMETRY, DEAD_LETTER, JOBS): 1 on one server, 3 in a cluster. */
        replicas: z.number().int().min(1).max(5).default(1),
        /** EVENTS is bounded: when full, device publishes fail and events wait in the device outbox. */
        eventsMaxBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .default(1024 * 1024 * 1024),
        /** JetStream deduplication window on Nats-Msg-Id (= event id). */
        duplicateWindowSeconds: z.number().int().min(1).max(86_400).default(600),
        deadLetterMaxAgeDays: z.number().int().min(1).max(3650).default(30),
      })
      .prefault({}),
    /** The /v1 REST API (api/router.ts). */
    api: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** Largest page a list returns; a larger `limit` is a 400, never silently clamped. */
        maxPageSize: z.number().int().min(1).max(1000).default(500),
        /** Idempotency-Key on POST and PATCH (api/idempotency.ts). */
        idempotency: z
          .strictObject({
            /** How long a key and its stored response are kept (then the same key runs anew). */
            ttlSeconds: z
              .number()
              .int()
              .min(60)
              .max(7 * 86_400)
              .default(86_400),
            /** A claim still in progress after this long is abandoned (a crashed process) and may be retaken. */
            inProgressTimeoutSeconds: z.number().int().min(1).max(3600).default(60),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * API rate limits (api/ratelimit.ts): GCRA per tenant and per client (tenant + JWT `sub`), state shared by every API
     * process in Redis. On by default as soon as `redisUrl` is set; when Redis fails the API serves (fail-open).
     */
    rateLimit: z
      .strictObject({
        /** Default: true when redisUrl is set, else false. */
        enabled: z.boolean().optional(),
        redisUrl: z
          .string()
          .regex(/^rediss?:\/\/[^\s]+$/, 'must be a redis:// or rediss:// URL')
          .optional(),
        /** Every caller of a tenant together. */
        tenant: rateLimitRule(50, 100),
        /** One caller (JWT `sub`), whatever its tenant. */
        client: rateLimitRule(10, 20),
        /** Longest wait for Redis per request; past it the request is served unlimited. */
        commandTimeoutMs: z.number().int().min(1).max(5000).default(50),
      })
      .transform((r) => ({ ...r, enabled: r.enabled ?? r.redisUrl !== undefined }))
      .refine((r) => !r.enabled || r.redisUrl !== undefined, {
        message: 'required when rateLimit.enabled is true',
        path: ['redisUrl'],
      })
      .prefault({}),
    /** Bearer JWTs of API users (auth/jwt.ts). One of jwksFile or jwksUrl is required when the API is enabled. */
    auth: z
      .strictObject({
        issuer: z.string().min(1).default('vigil-dev'),
        audience: z.string().min(1).default('vigil-api'),
        algorithms: z.array(z.enum(ALLOWED_JWT_ALGORITHMS)).min(1).default(['ES256']),
        /** A public JWKS file, read at start (`./dev up` points it at .vigil/pki/api-jwks.json). */
        jwksFile: z.string().min(1).optional(),
        /** An identity provider's JWKS endpoint (https, or http on loopback), fetched and cached. */
        jwksUrl: z
          .url({ protocol: /^https?$/ })
          .refine(isHttpsOrLoopback, { message: 'must be https (http only on loopback)' })
          .optional(),
        clockToleranceSeconds: z.number().int().min(0).max(300).default(30),
        /** Longest token lifetime (exp - iat; iat is required); longer-lived tokens are refused (auth/jwt.ts). */
        maxTokenLifetimeSeconds: z.number().int().min(60).max(31_536_000).default(86_400),
      })
      .refine((a) => !(a.jwksFile && a.jwksUrl), { message: 'set jwksFile or jwksUrl, not both' })
      .prefault({}),
    /** The API's authorization decision point (auth/engine.ts); default deny whatever the engine. */
    authz: z
      .strictObject({
        /** `cedar`: in-process Cedar policies (policiesDir); `opa`: an Open Policy Agent server (opaUrl). */
        engine: z.enum(['cedar', 'opa']).default('cedar'),
        /** Schema and *.cedar files; default: the cloud package's policies/ (not relative to the cwd). */
        policiesDir: z.string().min(1).optional(),
        /** OPA's base URL (https, or http on loopback); required when engine is opa. */
        opaUrl: z
          .url({ protocol: /^https?$/ })
          .refine(isHttpsOrLoopback, { message: 'must be https (http only on loopback)' })
          .optional(),
        /** Longest wait for an OPA decision; past it the request is denied. */
        opaTimeoutMs: z.number().int().min(1).max(10_000).default(250),
      })
      .refine((a) => a.engine !== 'opa' || a.opaUrl !== undefined, {
        message: 'required when authz.engine is opa',
        path: ['opaUrl'],
      })
      .prefault({}),
    /**
     * Signing of device configs (config-ota): an ES256 private JWK (0600), its key id (default: the JWK's kid,
     * else its thumbprint), and optionally a JWKS of earlier public keys devices should still accept.
     */
    configSigning: z
      .strictObject({
        privateJwkFile: z.string().min(1),
        kid: z.string().min(1).max(200).optional(),
        previousPublicJwksFile: z.string().min(1).optional(),
        /** Lifetime of an issued config: not applied by then, the agent refuses it. */
        configTtlSeconds: z
          .number()
          .int()
          .min(60)
          .max(365 * 86_400)
          .default(7 * 86_400),
      })
      .optional(),
    /** The content-addressed models store (PUT /v1/models/{sha256}, gRPC FetchModel). */
    models: z
      .strictObject({
        /** Directory of `<sha256>` files; without it the store is unavailable (503). */
        dir: z.string().min(1).optional(),
        maxBytes: z
          .number()
          .int()
          .min(1)
          .default(512 * 1024 * 1024),
      })
      .prefault({}),
    /**
     * The agent release repository (TUF; releases/README.md). Without `dir` it is not served (503 to admins,
     * UNAVAILABLE to devices).
     */
    releases: z
      .strictObject({
        /** Repository root: metadata/, targets/ (bundles), incoming/ (uploads). Shared by every cloud process. */
        dir: z.string().min(1).optional(),
        /** The online key file (`vigil release root init` writes online.json): signs timestamp and snapshot only. */
        onlineKeyFile: z.string().min(1).optional(),
        /** The only tenant whose admins may publish (releases:publish is asked about this tenant). */
        publisherTenant: z
          .string()
          .regex(/^[A-Za-z0-9_-]{1,63}$/)
          .default('vigil'),
        /** Lifetime of each signed timestamp: a device refuses the repository once it is older (freeze attacks). */
        timestampExpirySeconds: z
          .number()
          .int()
          .min(300)
          .max(7 * 86_400)
          .default(86_400),
        snapshotExpirySeconds: z
          .number()
          .int()
          .min(3600)
          .max(365 * 86_400)
          .default(7 * 86_400),
        /** How often timestamp/snapshot are checked and re-signed once past half their lifetime. */
        refreshIntervalSeconds: z.number().int().min(1).max(86_400).default(300),
        /** Largest bundle accepted for upload. */
        maxBundleBytes: z
          .number()
          .int()
          .min(1024)
          .default(512 * 1024 * 1024),
      })
      .prefault({}),
    /**
     * The web console at /console (console/): server-rendered pages on the API's origin, login with OpenID Connect
     * (authorization code + PKCE). Requires the API (it asks the same authorizer).
     */
    console: z
      .strictObject({
        enabled: z.boolean().default(false),
        oidc: z
          .strictObject({
            /** The identity provider's issuer URL (discovery at <issuer>/.well-known/openid-configuration). */
            issuer: z.string().refine(isHttpsOrLoopback, 'must be an https URL (http only on loopback)'),
            clientId: z.string().min(1).max(256),
            /** File holding the client secret (first line); absent: a public client (PKCE only). */
            clientSecretFile: z.string().min(1).optional(),
            /** This console's callback, registered at the provider: https://<host>/console/auth/callback. */
            redirectUrl: z
              .string()
              .refine(isHttpsOrLoopback, 'must be an https URL (http only on loopback)')
              .refine((u) => URL.canParse(u) && new URL(u).pathname === '/console/auth/callback', {
                message: 'must end in /console/auth/callback',
              }),
            /** Scopes asked for; the ID token must carry tenant and roles (and sites for site-scoped users). */
            scopes: z
              .array(z.string().regex(/^[\x21\x23-\x5b\x5d-\x7e]{1,64}$/))
              .min(1)
              .max(20)
              .default(['openid', 'vigil']),
          })
          .optional(),
        /** How long a session lasts from login (no sliding renewal: log in again after it). */
        sessionTtlSeconds: z
          .number()
          .int()
          .min(60)
          .max(86_400)
          .default(8 * 3600),
        /**
         * Sessions of all users (in PostgreSQL, shared by every API process), and logins in flight; the oldest
         * is deleted past it.
         */
        maxSessions: z.number().int().min(1).max(1_000_000).default(10_000),
        /** Sessions of one user (a login per browser); past it that user's oldest session is deleted. */
        maxSessionsPerUser: z.number().int().min(1).max(1000).default(10),
        /** The Secure flag of the session cookie; false only for http://localhost development. */
        cookieSecure: z.boolean().default(true),
        /**
         * The development login of `./dev up` (console/dev-login.ts): pick a role of `tenant`, no identity
         * provider, no password. Refused unless the cloud listens on loopback only and the cookie is not Secure
         * (plain http on this machine): a deployed cloud cannot turn it on.
         */
        devLogin: z
          .strictObject({
            enabled: z.boolean().default(false),
            tenant: z
              .string()
              .regex(/^[A-Za-z0-9_-]{1,63}$/)
              .default('dev'),
            /** The console's origin as the browser names it (http://127.0.0.1:<port>); without oidc, required. */
            origin: z
              .string()
              .regex(
                /^http:\/\/(localhost|127\.0\.0\.1|\[::1\])(:\d{1,5})?$/,
                'must be http://localhost or loopback, no path',
              )
              .optional(),
          })
          .prefault({}),
      })
      .refine((c) => !c.enabled || c.oidc !== undefined || c.devLogin.enabled, {
        message: 'required when console.enabled',
        path: ['oidc'],
      })
      .refine((c) => !c.devLogin.enabled || c.oidc !== undefined || c.devLogin.origin !== undefined, {
        message: 'required when the development login is the only login',
        path: ['devLogin', 'origin'],
      })
      .prefault({}),
    /** The live event stream (GET /v1/stream, websocket; realtime/). Served with the API. */
    realtime: z
      .strictObject({
        enabled: z.boolean().default(true),
        /** A client whose unsent data passes this is disconnected (4008), so a slow reader never grows memory. */
        maxBufferedBytes: z
          .number()
          .int()
          .min(16 * 1024)
          .max(64 * 1024 * 1024)
          .default(1024 * 1024),
        /** Open streams per tenant and API process. */
        maxConnectionsPerTenant: z.number().int().min(1).max(100_000).default(100),
        pingIntervalSeconds: z.number().int().min(1).max(3600).default(30),
      })
      .prefault({}),
    /** Detection events in PostgreSQL (daily partitions). */
    events: z
      .strictObject({
        /**
         * Partitions whose UTC day ended this many days ago are dropped with their events (0: keep forever).
         * Must exceed ingest.acceptPastDays, or late events would land in days that retention drops.
         */
        retentionDays: z.number().int().min(0).max(36_500).default(365),
      })
      .prefault({}),
    /**
     * Media objects (snapshots) devices upload on the MEDIA stream (cloud/src/media/). Bytes go to a
     * filesystem MediaStore under `dir`; the index, tenancy and tombstones are in PostgreSQL.
     */
    media: z
      .strictObject({
        /** Root of the filesystem MediaStore. Without it, uploaded media are acknowledged and dropped (counted). */
        dir: z.string().min(1).optional(),
        /**
         * Largest object accepted: the MEDIA stream's max message size is this plus 4 KiB (the other fields).
         * nats-server's max_payload must be larger (infra/nats: 4 MB), hence the cap.
         */
        maxObjectBytes: z
          .number()
          .int()
          .min(1024)
          .max(3 * 1024 * 1024)
          .default(1024 * 1024),
        /** MEDIA stream size; when full, devices' media publishes fail and they back off (back-pressure). */
        streamMaxBytes: z
          .number()
          .int()
          .min(16 * 1024 * 1024)
          .default(512 * 1024 * 1024),
        /** Media older than this (by capture time) are deleted by the retention job; 0 keeps them forever. */
        retentionDays: z.number().int().min(0).max(3650).default(30),
        /** How often the retention job runs (one cloud process at a time). */
        retentionIntervalSeconds: z.number().int().min(10).max(86_400).default(3600),
      })
      .prefault({}),
    /** Scoped erasure requests and evidence exports (cloud/src/privacy/; README "Erasure requests", "Evidence export"). */
    privacy: z
      .strictObject({
        erasure: z
          .strictObject({
            /** Objects per batch: one transaction and one cursor step of the job. */
            batchSize: z.number().int().min(1).max(5000).default(500),
            /** Media byte deletions in flight at once. */
            storeConcurrency: z.number().int().min(1).max(128).default(16),
            /** How often the job looks for open requests (a new request starts it at once in its process). */
            pollIntervalSeconds: z.number().int().min(1).max(3600).default(5),
          })
          .prefault({}),
        /**
         * Re-issuing device configs after a retention policy change (privacy/edge-sync.ts), so that the edge media
         * limits follow the policies without a rollout.
         */
        edgeSync: z
          .strictObject({
            /** Devices per batch: one read of their configs, then one signed issue per distinct body. */
            batchSize: z.number().int().min(1).max(5000).default(200),
            /** How often the job looks for pending syncs (a policy change starts it at once in its process). */
            pollIntervalSeconds: z.number().int().min(1).max(3600).default(10),
          })
          .prefault({}),
        export: z
          .strictObject({
            /** The Ed25519 private key (PKCS#8 PEM, a mounted file) that signs manifests; without it exports are a 503. */
            signingKeyFile: z.string().min(1).optional(),
            /** Largest archive (media bytes plus JSON): a larger scope is refused before anything is sent. */
            maxBytes: z
              .number()
              .int()
              .min(1024 * 1024)
              .max(8 * 1024 * 1024 * 1024)
              .default(512 * 1024 * 1024),
            /** Most events in one export. */
            maxEvents: z.number().int().min(1).max(100_000).default(10_000),
            /** Most media objects in one export. */
            maxMedia: z.number().int().min(1).max(100_000).default(10_000),
          })
          .prefault({}),
      })
      .prefault({}),
    /**
     * Outgoing integrations (cloud/src/integrations/): signed JSON webhooks, delivered by background jobs on the
     * JOBS work-queue stream with retries, per-destination circuit breakers and a dead state.
     */
    integrations: z
      .strictObject({
        /** Dispatch and deliver webhooks in this process (the API routes exist either way). */
        enabled: z.boolean().default(true),
        /** Accept and call http:// URLs (tests, a receiver on the same host); default https only. */
        allowInsecureHttp: z.boolean().default(false),
        /** Call loopback, private, link-local, CGNAT and unique-local addresses (off: the SSRF guard refuses). */
        allowPrivateNetworks: z.boolean().default(false),
        /** Longest a delivery may take (connect, request and response together). */
        timeoutMs: z.number().int().min(100).max(60_000).default(5000),
        /** Real attempts of one delivery before it is `dead` (short-circuited jobs do not count). */
        maxAttempts: z.number().int().min(1).max(100).default(8),
        /**
         * Webhook jobs one process holds at once: requests in flight plus jobs waiting for their receiver's turn
         * (at most the JOBS consumer's max_ack_pending, 1000).
         */
        concurrency: z.number().int().min(1).max(1000).default(256),
        /** Requests in flight (and keep-alive connections) to one receiver (URL origin) from one process. */
        perEndpointConcurrency: z.number().int().min(1).max(1000).default(32),
        /** Delay before the next attempt: initialMs doubled per failed attempt, capped at maxMs, with jitter. */
        backoff: z
          .strictObject({
            initialMs: z.number().int().min(10).max(3_600_000).default(1000),
            maxMs: z.number().int().min(10).max(86_400_000).default(600_000),
          })
          .refine((b) => b.initialMs <= b.maxMs, { message: 'initialMs must not exceed maxMs' })
          .prefault({}),
        /** Per webhook: after `failures` failed attempts in a row, no calls for `openSeconds`, then one probe. */
        circuit: z
          .strictObject({
            failures: z.number().int().min(1).max(1000).default(5),
            openSeconds: z.number().int().min(1).max(86_400).default(60),
          })
          .prefault({}),
        /** Size of the JOBS stream; when full, new jobs are refused (counted) rather than old ones dropped. */
        jobsMaxBytes: z
          .number()
          .int()
          .min(1024 * 1024)
          .default(256 * 1024 * 1024),
      })
      .prefault({}),
    /**
     * Agency alerts, CAP 1.2 (cloud/src/alerts/): rules raise incidents from committed events; their Alert,
     * Update and Cancel messages go through the same outbox, JOBS, retries, backoff and circuit breakers as
     * webhooks (integrations.* applies), to HTTPS targets with mTLS or RFC 9421 signatures.
     */
    alerts: z
      .strictObject({
        /**
         * The OASIS CAP 1.2 schema (CAP-v1.2.xsd); every message is validated against it before it is sent. Absent:
         * incidents and messages are still committed, but this process delivers none (another one may).
         */
        capSchemaFile: z.string().min(1).optional(),
        /** CAP `sender` is `<tenant>@<senderDomain>`. */
        senderDomain: z
          .string()
          .regex(/^[A-Za-z0-9.-]{1,200}$/, 'must be a domain name (letters, digits, dots, hyphens)')
          .default('vigil.invalid'),
        /**
         * Public base URL of this API (e.g. https://vigil.example.com), for the signed snapshot URLs in CAP
         * `resource`; absent: messages carry no resource.
         */
        publicBaseUrl: z
          .string()
          .refine((u) => URL.canParse(u) && /^https?:$/.test(new URL(u).protocol), 'must be an http(s) URL')
          .optional(),
        /** How long a snapshot URL in a message stays valid. */
        snapshotUrlTtlSeconds: z
          .number()
          .int()
          .min(60)
          .max(30 * 86_400)
          .default(86_400),
        /**
         * File holding the HMAC key of snapshot URLs (at least 32 bytes); the same in every cloud process. Absent:
         * a random key per process (URLs stop working when it restarts; logged).
         */
        urlKeyFile: z.string().min(1).optional(),
        /** Real attempts of one message before it is a dead letter (replayable). */
        maxAttempts: z.number().int().min(1).max(1000).default(20),
        /**
         * How long after a track's END is committed its incidents are closed (the Cancel sent). Other ingest
         * processes may still commit earlier events of the track meanwhile (their Update goes first); an event
         * committed later than this after the END is too late to be news (migration 0032).
         */
        endGraceMs: z.number().int().min(0).max(600_000).default(3000),
        /** How often the end sweeper looks for incidents due to close. */
        endSweepMs: z.number().int().min(50).max(60_000).default(500),
      })
      .prefault({}),
    /** OpenTelemetry traces (lib/tracing.ts). */
    tracing: z
      .strictObject({
        /** Spans are made (so trace ids propagate and reach the logs) even when nothing exports them. */
        enabled: z.boolean().default(true),
        /** OTLP/HTTP traces endpoint, e.g. http://127.0.0.1:4318/v1/traces; absent: no export. */
        otlpUrl: z
          .string()
          .regex(/^https?:\/\/[^\s]+$/i, 'must be an http(s) URL')
          .refine((u) => URL.canParse(u), 'must be an http(s) URL')
          .optional(),
        /** Fraction of new traces kept; a span with a parent follows the parent's decision. */
        sampleRatio: z.number().min(0).max(1).default(1),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
      })
      .prefault({}),
  })
  .refine((c) => c.events.retentionDays === 0 || c.events.retentionDays > c.ingest.acceptPastDays, {
    message: 'must be 0 (keep forever) or more than ingest.acceptPastDays',
    path: ['events', 'retentionDays'],
  })
  .refine((c) => !c.console.enabled || c.api.enabled, {
    message: 'the console needs the API (api.enabled): it asks the same authorizer',
    path: ['console', 'enabled'],
  })
  .refine(
    (c) =>
      !c.console.devLogin.enabled ||
      (['127.0.0.1', 'localhost', '::1'].includes(c.http.host) && !c.console.cookieSecure),
    {
      message:
        'the development login is for ./dev up only: it needs http.host on loopback and console.cookieSecure ' +
        'false, never a deployed cloud',
      path: ['console', 'devLogin', 'enabled'],
    },
  )
  .refine((c) => !c.grpc.enabled || c.identity !== undefined, {
    message: 'identity (the fleet CA) is required when grpc is enabled',
    path: ['identity'],
  });

export type CloudConfig = z.infer<typeof cloudConfigSchema>;
