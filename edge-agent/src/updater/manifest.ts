import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { SEMVER_RE } from '@vigil/proto';
import { z } from 'zod';
import { BundleRefusedError } from './errors.js';

/** A path inside a bundle: relative, '/'-separated, no '.', '..' or empty segment, no backslash or NUL. */
export function checkEntryPath(path: string): string {
  const p = path.endsWith('/') ? path.slice(0, -1) : path;
  const bad =
    p.length === 0 ||
    p.length > 4096 ||
    p.startsWith('/') ||
    /[\\\0]/.test(p) ||
    p.split('/').some((s) => s === '' || s === '.' || s === '..');
  if (bad)
    throw new BundleRefusedError(
      'traversal',
      `bundle entry ${JSON.stringify(path)} refused: an absolute path, ".." or an empty segment could write outside the release directory`,
    );
  return p;
}

/** manifest.json of bundle format 1 (tools/release/README.md), as far as the updater relies on it. */
export const bundleManifestSchema = z.looseObject({
  format: z.literal(1),
  name: z.literal('vigil-agent'),
  version: z.string().regex(SEMVER_RE),
  minUpgradeFrom: z.string().regex(SEMVER_RE),
  platform: z.literal('linux-x64'),
  entrypoint: z.literal('bin/vigil-agent'),
  files: z
    .array(
      z.strictObject({
        path: z.string().min(1).max(4096),
        size: z.number().int().min(0),
        sha256: z.string().regex(/^[0-9a-f]{64}$/),
        mode: z.enum(['0755', '0644']),
      }),
    )
    .min(1),
});
export type BundleManifestV1 = z.infer<typeof bundleManifestSchema>;

export function parseBundleManifest(text: string, expectVersion: string | null): BundleManifestV1 {
  let data: unknown;
  try {
    data = JSON.parse(text);
  } catch (cause) {
    throw new BundleRefusedError('bad_manifest', 'manifest.json is not JSON', { cause });
  }
  const r = bundleManifestSchema.safeParse(data);
  if (!r.success)
    throw new BundleRefusedError(
      'bad_manifest',
      `manifest.json: ${r.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`).join('; ')}`,
    );
  if (expectVersion !== null && r.data.version !== expectVersion)
    throw new BundleRefusedError(
      'bad_manifest',
      `manifest.json says version ${r.data.version}, the signed release is ${expectVersion}`,
    );
  for (const f of r.data.files) {
    checkEntryPath(f.path);
    if (f.path === 'manifest.json')
      throw new BundleRefusedError('bad_manifest', 'manifest.json lists itself among its files');
  }
  return r.data;
}

/** The manifest of an installed release directory (its version is what `current` runs). */
export function readReleaseManifest(dir: string): BundleManifestV1 {
  return parseBundleManifest(readFileSync(join(dir, 'manifest.json'), 'utf8'), null);
}
