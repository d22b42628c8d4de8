import { readFileSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve as resolvePath } from 'node:path';
import { connect, type NatsConnection } from '@nats-io/transport-node';
import { sql, type Kysely } from 'kysely';
import type { Tracer } from '@opentelemetry/api';
import type { SpanProcessor } from '@opentelemetry/sdk-trace-base';
import type { Logger } from 'pino';
import { applyServerTimeouts, createHttpApp } from './api/http.js';
import { createAuthorizerFromConfig } from './auth/engine.js';
import { createConsole } from './console/index.js';
import { createTokenVerifier } from './auth/jwt.js';
import { RealtimeHub } from './realtime/hub.js';
import { attachEventStream } from './realtime/server.js';
import { createApiMounts } from './api/mount.js';
import { createRateLimiter } from './api/ratelimit.js';
import { AuditLog } from './audit/audit-log.js';
import type { Authorizer } from './auth/authorize.js';
import type { CloudConfig } from './config/schema.js';
import { EnrollmentTokens } from './fleet/enrollment.js';
import { startGrpcServer } from './fleet/grpc-server.js';
import { HeartbeatConsumer } from './fleet/heartbeats.js';
import { DeviceIdentityService } from './fleet/identity-service.js';
import { connectWithAuthority, loadNatsAuthority, NatsAccountPublisher } from './fleet/nats-account.js';
import { NatsAuthCallout } from './fleet/nats-callout.js';
import { NatsSessionKicker } from './fleet/nats-sessions.js';
import { DeviceRevoker } from './fleet/revocation.js';
import { FleetRegistry } from './fleet/registry.js';
import { registerDeviceGauge } from './fleet/status.js';
import { startIngest } from './ingest/start.js';
import { combineHooks } from './alerts/outbox.js';
import { publicAlertRoutes } from './alerts/public-routes.js';
import { startAlerts } from './alerts/start.js';
import { AlertStore } from './alerts/store.js';
import { startIntegrations } from './integrations/start.js';
import { WebhookStore } from './integrations/store.js';
import type { Resolver } from './integrations/ssrf.js';
import { ConfigIssuer } from './config-ota/issuer.js';
import { ConfigStatusResponder } from './config-ota/delivery.js';
import { ModelStore } from './config-ota/models.js';
import { ConfigSigner } from './config-ota/signing.js';
import { ConfigError } from './lib/errors.js';
import { MediaRepository } from './media/repository.js';
import { edgeRetention } from './privacy/edge.js';
import { defaultsFromConfig } from './privacy/policies.js';
import { FsMediaStore, type MediaStore } from './media/store.js';
import { ErasureJob } from './privacy/erasure-job.js';
import { EdgeRetentionSync } from './privacy/edge-sync.js';
import { loadExportKey } from './privacy/evidence.js';
import { startReleases } from './releases/start.js';
import type { Releases } from './releases/routes.js';
import type { CloudRole } from './config/roles.js';
import { startScheduler, type SchedulerRole } from './scheduler/start.js';
import { createLogger, createMetricsRegistry } from './lib/observability.js';
import { createTracing } from './lib/tracing.js';
import { openDatabases } from './storage/databases.js';
import { migrateToLatest } from './storage/migrate.js';
import type { Database } from './storage/tables.js';

export interface CloudApp {
  readonly db: Kysely<Database>;
  readonly nc: NatsConnection;
  readonly registry: FleetRegistry;
  readonly httpPort: number;
  /** The DeviceService port when grpc is enabled. */
  readonly grpcPort: number | undefined;
  readonly identity: DeviceIdentityService | undefined;
  readonly revoker: DeviceRevoker;
  readonly audit: AuditLog;
  /** Present in NATS JWT mode. */
  readonly accountPublisher: NatsAccountPublisher | undefined;
  /** The auth callout that admits devices (JWT mode, unless nats.auth.callout.enabled is false). */
  readonly callout: NatsAuthCallout | undefined;
  /** Desired device configs: documents, issuing (what rollouts call), reported state. */
  readonly configs: ConfigIssuer;
  readonly models: ModelStore;
  /** Uploaded media: the bytes (undefined when media.dir is unset: nothing is kept) and their index. */
  readonly media: { readonly store: MediaStore | undefined; readonly repository: MediaRepository };
  /** The agent release repository (TUF), when releases.dir is set. */
  readonly releases: Releases | undefined;
  /** The roles this process runs (config `roles`, or the --role override). */
  readonly roles: ReadonlySet<CloudRole>;
  /** The scheduler role: its leader lease and scheduled work (undefined without that role). */
  readonly scheduler: SchedulerRole | undefined;
  stop(): Promise<void>;
}

export interface CloudDeps {
  logger?: Logger;
  now?: () => Date;
  /** The API's policy decision point; default: the engine config `authz` names (Cedar), default deny. */
  authorizer?: Authorizer;
  /** Spans go here instead of the provider `tracing` config builds (tests: an in-memory exporter). */
  tracer?: Tracer;
  /** Extra span processors on the provider `tracing` config builds (tests: its real limits, in memory). */
  spanProcessors?: SpanProcessor[];
  /** DNS for the webhook SSRF guard (tests); default: the system resolver. */
  resolve?: Resolver;
}

/**
 * Composition root: builds every client once and wires together the capabilities of the roles this process runs
 * (config `roles`, config/roles.ts). Every process ensures the streams and JOBS, runs the NATS auth callout and the
 * account publisher (JWT mode), and serves /healthz, /readyz (per role) and /metrics.
 */
export async function startCloud(config: Readonly<CloudConfig>, deps: CloudDeps = {}): Promise<CloudApp> {
  const roles: ReadonlySet<CloudRole> = new Set(config.roles);
  const has = (r: CloudRole): boolean => roles.has(r);
  const log = deps.logger ?? createLogger(config.log.level, 'vigil-cloud');
  const metrics = createMetricsRegistry('vigil_cloud_');
  // The primary (directly or through pgbouncer) and, with database.replicaUrl, the replica the lists may read.
  const databases = openDatabases(config.database, { log, metrics, now: deps.now });
  const db = databases.db;
  // A batch span links each of its events: room for the largest batch (else the SDK drops links, and warns).
  const tracing = createTracing(config.tracing, {
    serviceName: 'vigil-cloud',
    maxLinksPerSpan: config.ingest.batchSize,
    ...(deps.spanProcessors ? { spanProcessors: deps.spanProcessors } : {}),
  });
  // First in, so last out: the spans of the last batches are exported after everything else stopped.
  const closers: Array<() => Promise<void>> = [() => tracing.shutdown(), () => databases.close()];
  const stop = async (): Promise<void> => {
    for (const close of closers.reverse())
      await close().catch((err: unknown) => log.error({ err }, 'shutdown step failed'));
  };
  try {
    const applied = await migrateToLatest(db as Kysely<unknown>);
    log.info({ applied }, applied.length > 0 ? 'database migrated' : 'database schema up to date');

    const natsOptions = {
      servers: [...config.nats.servers],
      name: config.nats.name,
      tls: {
        caFile: config.nats.tls.caFile,
        certFile: config.nats.tls.certFile,
        keyFile: config.nats.tls.keyFile,
      },
      maxReconnectAttempts: -1,
      // The cloud never needs its own messages back (e.g. the receipts it pushes on the rcpt subjects
      // that it also serves queries on). Request/reply to itself on this connection would not work.
      noEcho: true,
    };
    // JWT mode: the cloud is a scoped service user, and a SYSTEM user keeps revocations on the servers.
    const authority = config.nats.auth ? loadNatsAuthority(config.nats.auth.authorityFile) : undefined;
    const nc = authority
      ? await connectWithAuthority(authority, 'service', 'cloud', natsOptions)
      : await connect(natsOptions);
    closers.push(() => nc.drain());
    log.info({ server: nc.getServer(), auth: authority ? 'jwt' : 'tls' }, 'connected to NATS');
    // Device requests (config status, receipt queries) are answered on a connection of their own: in JWT mode
    // the responder user, whose only publish right is `_R_.>` (replies of requests that crossed a tenant
    // account's service import) and which has no response permission, so even a missed check could not
    // reach the JetStream API or another subject.
    const responderOptions = { ...natsOptions, name: `${config.nats.name}-responder` };
    const responderNc = authority
      ? await connectWithAuthority(authority, 'responder', 'cloud-responder', responderOptions)
      : await connect(responderOptions);
    closers.push(() => responderNc.drain());
    let accountPublisher: NatsAccountPublisher | undefined;
    let sessions: NatsSessionKicker | undefined;
    let callout: NatsAuthCallout | undefined;
    if (authority) {
      const sys = await connectWithAuthority(authority, 'system', 'cloud-account', {
        ...natsOptions,
        name: `${config.nats.name}-account`,
      });
      closers.push(() => sys.drain());
      accountPublisher = new NatsAccountPublisher(db, authority, sys, log, metrics, deps.now);
      await accountPublisher.start();
      closers.push(() => Promise.resolve(accountPublisher?.stop()));
      sessions = new NatsSessionKicker(sys);
      if (config.nats.auth?.callout.enabled) {
        const c = new NatsAuthCallout({
          authority,
          db,
          connection: natsOptions,
          log: log.child({ component: 'nats-callout' }),
          metrics,
          now: deps.now,
          deviceAccounts: accountPublisher,
          maxInFlight: config.nats.auth.callout.maxInFlight,
          maxQueued: config.nats.auth.callout.maxQueued,
        });
        await c.start();
        closers.push(() => c.stop());
        callout = c;
      }
    }
    const audit = new AuditLog(db, log, metrics, deps.now);
    const revoker = new DeviceRevoker(db, accountPublisher, audit, log, deps.now, sessions);

    // Config OTA: signed, versioned device configs; devices poll on their status subject.
    const signer = config.configSigning ? await ConfigSigner.load(config.configSigning) : undefined;
    const configs = new ConfigIssuer({
      db,
      log: log.child({ component: 'config-ota' }),
      metrics,
      signer,
      nc,
      audit,
      ttlSeconds: config.configSigning?.configTtlSeconds,
      now: deps.now,
      // Retention policies cap the edge media limits of every config issued (privacy/edge.ts).
      edgeRetention: edgeRetention(db, audit, defaultsFromConfig(config)),
    });
    const models = new ModelStore(config.models.dir, config.models.maxBytes);
    // Device config status polls are device traffic: served by the ingest role (a queue group shares them).
    if (has('ingest')) {
      const clock = deps.now;
      const configStatus = new ConfigStatusResponder(
        responderNc,
        configs,
        log.child({ component: 'config-ota' }),
        metrics,
        {
          // One connection per batch in flight: half the pool, the rest for heartbeats, ingest and the API.
          maxInFlight: Math.max(1, Math.floor(config.database.poolMax / 2)),
          now: clock && (() => clock().getTime()),
        },
      );
      configStatus.start();
      closers.push(() => configStatus.stop());
    }

    // Absolute root: FsMediaStore checks that every key resolves inside it (a relative root would fail that).
    const media = {
      store: config.media.dir !== undefined ? new FsMediaStore(resolvePath(config.media.dir)) : undefined,
      repository: new MediaRepository(db),
    };

    // The scheduler role (scheduler/): the leader lease and what must run once in the deployment (partitions,
    // media retention, rollouts; the release refresh below), each behind the lease.
    let scheduler: SchedulerRole | undefined;
    if (has('scheduler')) {
      const s = await startScheduler({
        db,
        config,
        audit,
        media,
        issuer: configs,
        log,
        metrics,
        now: deps.now,
      });
      closers.push(() => s.stop());
      scheduler = s;
    }

    // Agent releases (releases/): the TUF repository (API, gRPC), and the job that keeps its timestamp fresh
    // (scheduler role, behind the lease; no job in a process without that role).
    const releases = await startReleases(config.releases, {
      db,
      log,
      metrics,
      now: deps.now,
      refreshLeader: scheduler?.lease ?? null,
    });
    if (releases) closers.push(() => releases.stop());

    let grpcPort: number | undefined;
    let identity: DeviceIdentityService | undefined;
    if (config.identity) {
      const ca = {
        certPem: readConfigFile(config.identity.caCertFile, 'identity.caCertFile'),
        keyPem: readConfigFile(config.identity.caKeyFile, 'identity.caKeyFile'),
      };
      identity = new DeviceIdentityService(
        db,
        new EnrollmentTokens(db, log, metrics),
        {
          ca,
          authority: () => authority,
          certificateTtlSeconds: config.identity.certificateTtlSeconds,
          minRenewIntervalSeconds: config.identity.minRenewIntervalSeconds,
          natsUrls: config.identity.natsUrls ?? config.nats.servers,
          configSigningJwks: signer?.publicJwks,
        },
        log,
        metrics,
        deps.now,
        audit,
      );
      if (has('api') && config.grpc.enabled && config.grpc.tls) {
        const grpc = await startGrpcServer(
          identity,
          {
            host: config.grpc.host,
            port: config.grpc.port,
            certFile: config.grpc.tls.certFile,
            keyFile: config.grpc.tls.keyFile,
            caFile: config.identity.caCertFile,
          },
          log,
          { models, metrics, configs, releases: releases?.repo },
        );
        closers.push(() => grpc.stop());
        grpcPort = grpc.port;
      }
    }

    const registry = new FleetRegistry(db);
    if (has('ingest')) {
      const heartbeats = new HeartbeatConsumer(nc, registry, log, metrics, deps.now, config);
      heartbeats.start();
      closers.push(() => heartbeats.stop());
    }

    // The outbox relay and the delivery workers run in the integrations role only; every process writes jobs.
    const jobsConfig = {
      ...config,
      integrations: { ...config.integrations, enabled: config.integrations.enabled && has('integrations') },
    };
    // Webhooks (integrations/): ingest writes jobs into the outbox in its transactions; the relay and the worker
    // are stopped after ingest (pushed before).
    const webhookStore = new WebhookStore(db, deps.now);
    const integrations = await startIntegrations({
      nc,
      db,
      store: webhookStore,
      config: jobsConfig,
      log,
      metrics,
      now: deps.now,
      resolve: deps.resolve,
    });
    closers.push(() => integrations.stop());
    // Agency alerts (alerts/): incidents and CAP message jobs commit with the events, through the same outbox.
    const alertStore = new AlertStore(db, deps.now);
    const alerts = startAlerts({
      nc,
      store: alertStore,
      config: jobsConfig,
      audit,
      media: media.repository,
      log,
      metrics,
      now: deps.now ?? (() => new Date()),
      nudgeRelay: () => integrations.nudge(),
      resolve: deps.resolve,
      sweep: has('ingest'),
    });
    closers.push(() => alerts.stop());
    const ingest = await startIngest({
      nc,
      responderNc,
      db,
      config,
      mediaStore: media.store,
      log,
      metrics,
      tracer: deps.tracer ?? tracing.tracer,
      now: deps.now,
      audit,
      outbox: combineHooks(integrations.outbox, alerts.outbox),
      // Partition upkeep is the scheduler's (behind the lease); ingest creates a missing partition on demand.
      parts: { events: has('ingest'), media: has('media'), partitions: false },
    });
    closers.push(() => ingest.stop());

    // Scoped erasure (privacy/erasure-job.ts): the scheduler role runs the job behind its lease (one process at
    // a time works); other processes' API nudges are no-ops (the job also polls).
    const erasure = scheduler
      ? new ErasureJob({
          db,
          store: media.store,
          audit,
          log,
          metrics,
          now: deps.now,
          batchSize: config.privacy.erasure.batchSize,
          storeConcurrency: config.privacy.erasure.storeConcurrency,
          pollIntervalMs: config.privacy.erasure.pollIntervalSeconds * 1000,
          leader: scheduler.lease,
        })
      : undefined;
    if (erasure) {
      erasure.start();
      closers.push(() => erasure.stop());
    }
    // Retention policy changes re-issue the device configs whose edge limits they move (privacy/edge-sync.ts),
    // behind the scheduler's lease; nothing to issue without a config signing key.
    const edgeSync =
      scheduler && signer
        ? new EdgeRetentionSync({
            db,
            issuer: configs,
            audit,
            log,
            metrics,
            defaults: defaultsFromConfig(config),
            batchSize: config.privacy.edgeSync.batchSize,
            pollIntervalMs: config.privacy.edgeSync.pollIntervalSeconds * 1000,
            leader: scheduler.lease,
            now: deps.now,
          })
        : undefined;
    if (edgeSync) {
      edgeSync.start();
      closers.push(() => edgeSync.stop());
    }
    // Evidence export signing key: a bad file fails the start (exit 78), not the first export.
    const exportKey = config.privacy.export.signingKeyFile
      ? loadExportKeyOrFail(config.privacy.export.signingKeyFile)
      : undefined;

    registerDeviceGauge(db, metrics, config.fleet.offlineAfterSeconds, deps.now);

    // One Redis client for the API rate limits; closed after the HTTP server (closers run in reverse).
    const rateLimiter =
      has('api') && config.rateLimit.enabled ? createRateLimiter(config.rateLimit, log, metrics) : undefined;
    if (rateLimiter) closers.push(() => rateLimiter.close());

    // Built once for the REST API and the event stream (a second Cedar engine would double its metrics).
    const apiAuth =
      // The event stream is served with the API (its tokens and policies): off when api.enabled is false.
      config.api.enabled && (has('api') || (has('realtime') && config.realtime.enabled))
        ? {
            verifier: createTokenVerifier(config.auth),
            authorizer: deps.authorizer ?? createAuthorizerFromConfig(config.authz, log, metrics),
          }
        : undefined;
    const mounts = !has('api')
      ? []
      : createApiMounts(config, {
          db,
          readHeavy: databases.readHeavy,
          log,
          metrics,
          authorizer: apiAuth?.authorizer,
          verifier: apiAuth?.verifier,
          now: deps.now,
          revoker,
          audit,
          rateLimiter,
          configs,
          models,
          media,
          alerts: { store: alertStore },
          releases,
          privacy: {
            exportKey,
            exportLimits: config.privacy.export,
            nudge: () => erasure?.nudge(),
            nudgeEdgeSync: () => edgeSync?.nudge(),
          },
          webhooks: {
            store: webhookStore,
            policy: {
              allowInsecureHttp: config.integrations.allowInsecureHttp,
              allowPrivateNetworks: config.integrations.allowPrivateNetworks,
            },
          },
        });
    // The web console (console/): same origin, same authorizer and audit log as the API.
    const webConsole =
      apiAuth && has('api')
        ? createConsole(config, {
            db,
            authorizer: apiAuth.authorizer,
            log,
            metrics,
            audit,
            now: deps.now ?? (() => new Date()),
            media,
            revoker,
            alerts: { store: alertStore, senderDomain: config.alerts.senderDomain },
            webhooks: {
              store: webhookStore,
              policy: {
                allowInsecureHttp: config.integrations.allowInsecureHttp,
                allowPrivateNetworks: config.integrations.allowPrivateNetworks,
              },
            },
          })
        : undefined;
    const http = createHttpApp(
      metrics,
      [
        { name: 'postgres', check: async () => void (await sql`select 1`.execute(db)) },
        {
          name: 'nats',
          check: () => (nc.isClosed() ? Promise.reject(new Error('connection closed')) : nc.flush()),
        },
        // The scheduler is ready as leader or standby; not when it cannot reach the lease (it would never lead).
        ...(scheduler
          ? [
              {
                name: 'scheduler-lease',
                roles: ['scheduler'],
                detail: () => {
                  const st = scheduler.lease.status();
                  return { leader: st.leader, holder: st.holder, ...(st.token ? { token: st.token } : {}) };
                },
                check: () => {
                  const st = scheduler.lease.status();
                  return st.ok
                    ? Promise.resolve()
                    : Promise.reject(new Error(`lease unreachable: ${st.error ?? 'no attempt yet'}`));
                },
              },
            ]
          : []),
      ],
      {
        roles: [...roles],
        mounts: [
          ...mounts,
          ...(webConsole ? [webConsole.mount] : []),
          ...(has('api')
            ? [
                // Always: a pull-only target's Atom feed needs no public base URL (snapshot links do).
                {
                  path: '/public/alerts',
                  handler: publicAlertRoutes({
                    urls: alerts.urls,
                    alerts: alertStore,
                    media,
                    audit,
                    log,
                    now: deps.now ?? (() => new Date()),
                  }),
                },
              ]
            : []),
        ],
        log,
      },
    );
    // Listening starts only once every handler is attached (the event stream's upgrade below): a websocket that
    // arrived in between got a 404 from the REST app (seen in the issue 20 soak on a loaded machine).
    const server = createServer(http);
    applyServerTimeouts(server, config.http);
    closers.push(() => new Promise<void>((resolve) => server.close(() => resolve())));
    // The live event stream (realtime/): after the server closers, so it closes first.
    if (apiAuth && has('realtime') && config.realtime.enabled) {
      // Its own connection: the main one has noEcho, and ingest in this very process publishes the feed.
      const rtOptions = { ...natsOptions, name: `${config.nats.name}-realtime`, noEcho: false };
      const rtNc = authority
        ? await connectWithAuthority(authority, 'service', 'cloud-realtime', rtOptions)
        : await connect(rtOptions);
      closers.push(() => rtNc.drain());
      const hub = new RealtimeHub(rtNc, log.child({ component: 'realtime' }), metrics);
      hub.start();
      const stream = attachEventStream({
        server,
        hub,
        verifier: apiAuth.verifier,
        authorizer: apiAuth.authorizer,
        log,
        metrics,
        now: deps.now,
        sessionPrincipal: webConsole?.streamPrincipal,
        options: {
          maxBufferedBytes: config.realtime.maxBufferedBytes,
          maxConnectionsPerTenant: config.realtime.maxConnectionsPerTenant,
          pingIntervalMs: config.realtime.pingIntervalSeconds * 1000,
        },
      });
      closers.push(() => {
        hub.stop();
        stream.close();
        return Promise.resolve();
      });
    }
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject).listen(config.http.port, config.http.host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    const httpPort = (server.address() as AddressInfo).port;
    log.info({ url: `http://${config.http.host}:${httpPort}` }, 'cloud HTTP listening');
    return {
      db,
      nc,
      registry,
      httpPort,
      grpcPort,
      identity,
      revoker,
      audit,
      accountPublisher,
      callout,
      configs,
      models,
      media,
      releases,
      roles,
      scheduler,
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}

function readConfigFile(path: string, key: string): string {
  try {
    return readFileSync(path, 'utf8');
  } catch (cause) {
    throw new ConfigError(`${key}: ${path} cannot be read`, { cause });
  }
}

function loadExportKeyOrFail(path: string): ReturnType<typeof loadExportKey> {
  try {
    return loadExportKey(path);
  } catch (cause) {
    throw new ConfigError((cause as Error).message, { cause });
  }
}
