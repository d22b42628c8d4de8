import { spawn, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { beforeAll, describe, expect, it } from 'vitest';
import { parseAllDocuments } from 'yaml';
import { parseCloudConfig } from '../../cloud/src/config/load.js';
import { allowed, podToPod, type Labels, type NetworkPolicy } from './netpol.js';

// infra/k8s rendered offline with `kubectl kustomize` (kubectl is in the image; no cluster needed) and checked
// object by object: what a reviewer would look for in a deployment, made a test so it stays true.

const root = fileURLToPath(new URL('../..', import.meta.url));
const k8sDir = join(root, 'infra/k8s');
const ROLES = ['api', 'ingest', 'media', 'integrations', 'realtime', 'scheduler'] as const;

const kubectlMissing =
  spawnSync('kubectl', ['version', '--client'], { encoding: 'utf8' }).error !== undefined
    ? 'kubectl is not installed (it is in the CI image; on Debian: the kubernetes apt repository)'
    : undefined;

// The parts of the rendered objects the checks read.
interface Meta {
  name: string;
  namespace?: string;
  labels?: Labels;
}
interface Probe {
  httpGet?: { path: string };
}
interface Container {
  name: string;
  image: string;
  args?: string[];
  env?: Array<{ name: string; valueFrom?: { secretKeyRef?: unknown } }>;
  ports?: Array<{ name: string; containerPort: number }>;
  resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
  securityContext?: Record<string, unknown>;
  livenessProbe?: Probe;
  readinessProbe?: Probe;
  startupProbe?: Probe;
  volumeMounts?: Array<{ mountPath: string }>;
}
interface Deployment {
  kind: 'Deployment';
  metadata: Meta;
  spec: {
    replicas?: number;
    template: {
      metadata: { labels: Labels };
      spec: {
        securityContext?: { runAsUser?: number } & Record<string, unknown>;
        automountServiceAccountToken?: boolean;
        initContainers?: Container[];
        containers: Container[];
      };
    };
  };
}
interface ConfigMap {
  kind: 'ConfigMap';
  metadata: Meta;
  data: Record<string, string>;
}
interface Service {
  kind: 'Service';
  metadata: Meta;
  spec: { selector: Labels; ports: Array<{ targetPort: string }> };
}
interface Pdb {
  kind: 'PodDisruptionBudget';
  metadata: Meta;
  spec: { selector: { matchLabels: Labels } };
}
type Obj = { kind: string; metadata: Meta } | Deployment | ConfigMap | Service | Pdb | NetworkPolicy;
interface Kinds {
  Deployment: Deployment;
  ConfigMap: ConfigMap;
  Service: Service;
  PodDisruptionBudget: Pdb;
  NetworkPolicy: NetworkPolicy;
  Secret: { kind: 'Secret'; metadata: Meta };
}

function render(overlay: string): Promise<Obj[]> {
  return new Promise((resolve, reject) => {
    const child = spawn('kubectl', ['kustomize', join(k8sDir, 'overlays', overlay)]);
    let out = '';
    let err = '';
    child.stdout.on('data', (d: Buffer) => (out += d.toString()));
    child.stderr.on('data', (d: Buffer) => (err += d.toString()));
    child.on('error', reject);
    child.on('close', (code) => {
      if (code !== 0) reject(new Error(`kubectl kustomize ${overlay} exited ${code}: ${err}`));
      else resolve(parseAllDocuments(out).map((d) => d.toJS() as Obj));
    });
  });
}

const ofKind = <K extends keyof Kinds>(objs: Obj[], kind: K): Kinds[K][] =>
  objs.filter((o) => (o as { kind: string }).kind === kind) as unknown as Kinds[K][];
const containersOf = (d: Deployment): Container[] => [
  ...(d.spec.template.spec.initContainers ?? []),
  ...d.spec.template.spec.containers,
];
const cloudDeployments = (objs: Obj[]): Deployment[] =>
  ofKind(objs, 'Deployment').filter((d) => d.metadata.name.startsWith('vigil-cloud'));
const selectsLabels = (sel: Labels | undefined, labels: Labels): boolean =>
  Object.entries(sel ?? {}).every(([k, v]) => labels[k] === v);

/** The cloud.json of the rendered ConfigMap, parsed. */
function cloudJson(objs: Obj[]): Record<string, unknown> {
  const cm = ofKind(objs, 'ConfigMap').find((c) => c.metadata.name.startsWith('vigil-cloud-config-'));
  if (!cm?.data['cloud.json']) throw new Error('no vigil-cloud-config ConfigMap with cloud.json');
  return JSON.parse(cm.data['cloud.json']) as Record<string, unknown>;
}

/** Every string value under a key ending in File or named dir: the files the cloud will open. */
function configPaths(value: unknown, key = ''): string[] {
  if (typeof value === 'string') return /(File|^dir)$/.test(key) ? [value] : [];
  if (Array.isArray(value) || !value || typeof value !== 'object') return [];
  return Object.entries(value).flatMap(([k, v]) => configPaths(v, k));
}

describe('infra/k8s: kustomize overlays', () => {
  const rendered: Record<string, Obj[]> = {};
  beforeAll(async () => {
    // Not skipped when missing: CI must render the manifests.
    if (kubectlMissing) throw new Error(kubectlMissing);
    for (const overlay of ['single-node', 'ha']) rendered[overlay] = await render(overlay);
  }, 60_000);

  for (const overlay of ['single-node', 'ha']) {
    describe(overlay, () => {
      const objs = (): Obj[] => rendered[overlay]!;

      it('every Deployment has probes, resources, a pinned image and a locked-down security context', () => {
        const deployments = ofKind(objs(), 'Deployment');
        expect(deployments.length).toBeGreaterThan(1);
        for (const d of deployments) {
          const name = d.metadata.name;
          const pod = d.spec.template.spec;
          expect(pod.securityContext, name).toMatchObject({
            runAsNonRoot: true,
            seccompProfile: { type: 'RuntimeDefault' },
          });
          expect(pod.securityContext?.runAsUser, name).toBeGreaterThan(0);
          expect(pod.automountServiceAccountToken, name).toBe(false);
          for (const c of containersOf(d)) {
            const where = `${name}/${c.name}`;
            for (const kind of ['requests', 'limits'] as const)
              for (const r of ['cpu', 'memory'])
                expect(c.resources?.[kind]?.[r], `${where} ${kind}.${r}`).toBeDefined();
            expect(c.securityContext, where).toMatchObject({
              allowPrivilegeEscalation: false,
              readOnlyRootFilesystem: true,
              capabilities: { drop: ['ALL'] },
            });
            // A tag that names a release (or a digest), never latest or none.
            expect(c.image, where).toMatch(/^[a-z0-9.\-/]+(:\d[\w.-]*|@sha256:[0-9a-f]{64})$/);
            expect(
              c.env?.some((e) => e.valueFrom?.secretKeyRef !== undefined),
              `${where}: secrets as files`,
            ).not.toBe(true);
          }
          const main = pod.containers;
          for (const c of main) {
            expect(c.livenessProbe, `${name}/${c.name} liveness`).toBeDefined();
            expect(c.readinessProbe, `${name}/${c.name} readiness`).toBeDefined();
          }
        }
        for (const d of cloudDeployments(objs())) {
          const c = d.spec.template.spec.containers[0];
          expect(c?.livenessProbe?.httpGet?.path).toBe('/healthz');
          expect(c?.readinessProbe?.httpGet?.path).toBe('/readyz');
          expect(c?.startupProbe?.httpGet?.path).toBe('/healthz');
        }
      });

      it('no ConfigMap holds a secret; the cloud config is valid and its files are mounted', () => {
        for (const cm of ofKind(objs(), 'ConfigMap')) {
          for (const [key, value] of Object.entries(cm.data)) {
            const where = `${cm.metadata.name}/${key}`;
            expect(value, where).not.toMatch(/-----BEGIN [A-Z ]*(PRIVATE KEY|CERTIFICATE)-----/);
            expect(value, `${where}: a password in a URL`).not.toMatch(/[a-z]+:\/\/[^/\s:@]+:[^/\s@]+@/i);
            expect(value, `${where}: a password field`).not.toMatch(/"?password"?\s*[:=]\s*"?[^\s",}]/i);
            expect(value, `${where}: an nkey seed`).not.toMatch(/\bS[OAU][A-Z2-7]{50,}/);
            expect(value, `${where}: a private JWK`).not.toMatch(/"d"\s*:/);
          }
        }
        expect(ofKind(objs(), 'Secret'), 'Secrets are created by the operator, never rendered').toEqual([]);

        const config = cloudJson(objs());
        expect(() => parseCloudConfig(config, `${overlay} cloud.json`)).not.toThrow();
        const paths = configPaths(config);
        expect(paths.length).toBeGreaterThan(10);
        for (const d of cloudDeployments(objs())) {
          const mounts = (d.spec.template.spec.containers[0]!.volumeMounts ?? []).map((m) => m.mountPath);
          for (const p of paths)
            expect(
              mounts.some((m) => p === m || p.startsWith(`${m}/`)),
              `${d.metadata.name}: ${p} is not on a mounted volume`,
            ).toBe(true);
        }
      });

      it('the cloud Deployments run the documented roles', () => {
        const deployments = cloudDeployments(objs());
        const args = deployments.map((d) => d.spec.template.spec.containers[0]?.args ?? []);
        if (overlay === 'single-node') {
          expect(deployments.map((d) => d.metadata.name)).toEqual(['vigil-cloud']);
          expect(args[0]).not.toContain('--role'); // all roles
          expect(ofKind(objs(), 'PodDisruptionBudget').map((p) => p.metadata.name)).toEqual([]);
        } else {
          expect(deployments.map((d) => d.metadata.name).sort()).toEqual(
            ROLES.map((r) => `vigil-cloud-${r}`).sort(),
          );
          for (const d of deployments) {
            const role = d.metadata.name.replace('vigil-cloud-', '');
            const a = d.spec.template.spec.containers[0]?.args ?? [];
            expect(a.slice(-2), d.metadata.name).toEqual(['--role', role]);
            expect(d.spec.replicas, d.metadata.name).toBeGreaterThanOrEqual(2);
          }
          expect(cloudJson(objs()).streams).toMatchObject({ replicas: 3 });
        }
      });

      it('every Deployment with more than one replica has exactly one PodDisruptionBudget (ha)', () => {
        const pdbs = ofKind(objs(), 'PodDisruptionBudget');
        const deployments = ofKind(objs(), 'Deployment');
        for (const d of deployments) {
          const labels = d.spec.template.metadata.labels;
          const covering = pdbs.filter((p) => selectsLabels(p.spec.selector.matchLabels, labels));
          expect(covering.length, d.metadata.name).toBe(overlay === 'ha' ? 1 : 0);
        }
        // A budget selects the pods of one Deployment only (else evictions of one count against another).
        for (const p of pdbs) {
          const owners = deployments.filter((d) =>
            selectsLabels(p.spec.selector.matchLabels, d.spec.template.metadata.labels),
          );
          expect(owners.length, p.metadata.name).toBe(1);
        }
      });

      it('Services select pods that expose the target port', () => {
        const deployments = ofKind(objs(), 'Deployment');
        for (const s of ofKind(objs(), 'Service')) {
          const pods = deployments.filter((d) =>
            selectsLabels(s.spec.selector, d.spec.template.metadata.labels),
          );
          expect(pods.length, s.metadata.name).toBeGreaterThan(0);
          for (const d of pods)
            for (const port of s.spec.ports)
              expect(
                (d.spec.template.spec.containers[0]!.ports ?? []).some((p) => p.name === port.targetPort),
                `${s.metadata.name} -> ${d.metadata.name}:${port.targetPort}`,
              ).toBe(true);
        }
      });

      it('NetworkPolicies: default deny, the needed flows open, the rest closed', () => {
        const policies = ofKind(objs(), 'NetworkPolicy');
        const deny = policies.find(
          (p) =>
            Object.keys(p.spec.podSelector.matchLabels ?? {}).length === 0 &&
            !p.spec.ingress &&
            !p.spec.egress,
        );
        expect(deny?.spec.policyTypes?.sort()).toEqual(['Egress', 'Ingress']);

        const ns = 'vigil';
        const nsLabels = { 'kubernetes.io/metadata.name': ns };
        const podOf = (d: Deployment) => ({
          namespace: ns,
          nsLabels,
          labels: d.spec.template.metadata.labels,
        });
        const ext = (name: string, labels: Labels = {}) => ({
          namespace: name,
          nsLabels: { 'kubernetes.io/metadata.name': name },
          labels,
        });
        const nats = { namespace: ns, nsLabels, labels: { 'app.kubernetes.io/name': 'nats' } };
        const redis = { namespace: ns, nsLabels, labels: { 'app.kubernetes.io/name': 'vigil-redis' } };
        const postgres = { namespace: ns, nsLabels, labels: { 'app.kubernetes.io/name': 'postgresql' } };
        const dns = ext('kube-system', { 'k8s-app': 'kube-dns' });
        const pgbouncer = podOf(
          ofKind(objs(), 'Deployment').find((d) => d.metadata.name === 'vigil-pgbouncer')!,
        );

        for (const d of ofKind(objs(), 'Deployment')) {
          const p = podOf(d);
          const n = d.metadata.name;
          expect(podToPod(policies, p, dns, 53, 'UDP'), `${n} -> DNS`).toBe(true);
          expect(podToPod(policies, ext('somewhere'), p, 8080), `nobody else -> ${n}`).toBe(false);
        }
        for (const d of cloudDeployments(objs())) {
          const p = podOf(d);
          const n = d.metadata.name;
          const has = (cap: string) => p.labels[`vigil.io/${cap}`] === 'true';
          expect(podToPod(policies, p, nats, 4222), `${n} -> NATS`).toBe(true);
          expect(podToPod(policies, p, pgbouncer, 6432), `${n} -> pgbouncer`).toBe(true);
          expect(podToPod(policies, p, redis, 6379), `${n} -> Redis`).toBe(true);
          expect(podToPod(policies, p, postgres, 5432), `${n} bypasses pgbouncer`).toBe(false);
          expect(podToPod(policies, ext('monitoring'), p, 8080), `Prometheus -> ${n}`).toBe(true);
          expect(podToPod(policies, ext('ingress-nginx'), p, 8080), `ingress -> ${n}`).toBe(
            has('http-api') || has('realtime'),
          );
          const device = { ip: '198.51.100.7' };
          expect(allowed(policies, 'Ingress', p, device, 'TCP', 7443), `devices -> ${n} gRPC`).toBe(
            has('grpc'),
          );
          const partner = { ip: '203.0.113.10' };
          expect(allowed(policies, 'Egress', p, partner, 'TCP', 443), `${n} -> webhook`).toBe(
            has('outbound-https'),
          );
          expect(allowed(policies, 'Egress', p, { ip: '10.1.2.3' }, 'TCP', 443), `${n} -> private`).toBe(
            false,
          );
          expect(
            allowed(policies, 'Egress', p, { ip: '169.254.169.254' }, 'TCP', 80),
            `${n} -> metadata`,
          ).toBe(false);
        }
        const serving = (cap: string) =>
          cloudDeployments(objs()).filter(
            (d) => d.spec.template.metadata.labels[`vigil.io/${cap}`] === 'true',
          );
        for (const cap of ['http-api', 'realtime', 'grpc', 'outbound-https'])
          expect(serving(cap).length, `some pod has ${cap}`).toBeGreaterThan(0);
        if (overlay === 'ha') {
          expect(serving('outbound-https').map((d) => d.metadata.name)).toEqual(['vigil-cloud-integrations']);
          expect(serving('grpc').map((d) => d.metadata.name)).toEqual(['vigil-cloud-api']);
        }
        expect(podToPod(policies, pgbouncer, postgres, 5432), 'pgbouncer -> PostgreSQL').toBe(true);
        expect(
          allowed(policies, 'Ingress', nats, { ip: '198.51.100.7' }, 'TCP', 4222),
          'devices -> NATS',
        ).toBe(true);
        expect(podToPod(policies, nats, nats, 6222), 'NATS routes').toBe(true);
        expect(podToPod(policies, nats, postgres, 5432), 'NATS -> PostgreSQL').toBe(false);
        expect(podToPod(policies, postgres, postgres, 5432), 'replication').toBe(true);
      });

      it('pgbouncer pools by transaction', () => {
        const cm = ofKind(objs(), 'ConfigMap').find((c) =>
          c.metadata.name.startsWith('vigil-pgbouncer-config-'),
        );
        expect(cm?.data['pgbouncer.ini']).toMatch(/^pool_mode = transaction$/m);
        const db = (cloudJson(objs()) as { database: { url: string } }).database;
        expect(db.url).toMatch(/^postgres:\/\/[^:@]+@vigil-pgbouncer:6432\//);
      });
    });
  }
});

const yamllintMissing =
  spawnSync('yamllint', ['--version'], { encoding: 'utf8' }).error !== undefined
    ? 'yamllint is not installed: run ./dev setup (Debian package yamllint)'
    : undefined;

interface NatsValues {
  config: {
    cluster: { enabled: boolean; replicas: number; tls: { enabled: boolean } };
    jetstream: { enabled: boolean; fileStore: { enabled: boolean }; memoryStore?: { enabled: boolean } };
    nats: { tls: { enabled: boolean; merge: { verify: boolean } } };
    resolver: { enabled: boolean };
    merge: Record<string, unknown>;
  };
}

describe('infra/k8s: NATS Helm values', () => {
  const values = join(k8sDir, 'nats-values.yaml');
  it('is valid YAML that yamllint accepts', () => {
    expect(yamllintMissing, yamllintMissing).toBeUndefined();
    const res = spawnSync(
      'yamllint',
      ['-d', '{extends: default, rules: {line-length: {max: 120}}}', values],
      {
        encoding: 'utf8',
      },
    );
    expect(res.status, res.stdout + res.stderr).toBe(0);
  });

  it('sets 3 replicas, JetStream on file storage, TLS on client and route ports, the operator resolver', () => {
    const v = parseAllDocuments(readFileSync(values, 'utf8'))[0]!.toJS() as NatsValues;
    expect(v.config.cluster).toMatchObject({ enabled: true, replicas: 3 });
    expect(v.config.cluster.tls.enabled).toBe(true);
    expect(v.config.jetstream.enabled).toBe(true);
    expect(v.config.jetstream.fileStore.enabled).toBe(true);
    expect(v.config.jetstream.memoryStore?.enabled ?? false).toBe(false);
    expect(v.config.nats.tls.enabled).toBe(true);
    expect(v.config.nats.tls.merge.verify).toBe(true);
    expect(v.config.merge['$include']).toMatch(/nats-auth.conf$/);
    expect(v.config.resolver.enabled).toBe(true);
  });
});
