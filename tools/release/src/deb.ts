import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  statSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { run, sha256File, walkStaged } from './archive.js';
import type { Artifact } from './build.js';
import type { BuildInfo } from './bundle.js';
import { ReleaseError } from './errors.js';

export const DEB_PACKAGE = 'vigil-agent';
export const DEB_ARCH = 'amd64';

/** A Debian version from a release version: a pre-release sorts before its release ('-rc1' -> '~rc1'). */
export function debVersion(version: string): string {
  return version.replace('-', '~');
}

export function debFileName(version: string): string {
  return `${DEB_PACKAGE}_${debVersion(version)}_${DEB_ARCH}.deb`;
}

/** RFC 2822 date of the commit, for the changelog (not the build time: same commit, same bytes). */
function rfc2822(unixSeconds: number): string {
  const d = new Date(unixSeconds * 1000);
  const days = ['Sun', 'Mon', 'Tue', 'Wed', 'Thu', 'Fri', 'Sat'];
  const months = ['Jan', 'Feb', 'Mar', 'Apr', 'May', 'Jun', 'Jul', 'Aug', 'Sep', 'Oct', 'Nov', 'Dec'];
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${days[d.getUTCDay()]}, ${p(d.getUTCDate())} ${months[d.getUTCMonth()]} ${d.getUTCFullYear()} ${p(d.getUTCHours())}:${p(d.getUTCMinutes())}:${p(d.getUTCSeconds())} +0000`;
}

const MAINTAINER = 'Vigil release team <release@vigil.invalid>';

/** Where the package installs the release root it was built with (`--release-root`), without the leading /. */
export const PACKAGED_ROOT_PATH = `usr/share/${DEB_PACKAGE}/release-root.json`;

/** Anything that names or holds a private key: never shipped, whatever file the build was pointed at. */
const PRIVATE_RE = /"private"\s*:|PRIVATE KEY|"d"\s*:\s*"/;

/**
 * The release root a package ships (`root/1.root.json` of the release keys): read, checked to be TUF root
 * metadata with signatures, and refused if it carries anything like a private key (a keys file given by
 * mistake). Returns its bytes unchanged: the signatures cover them.
 */
export function readReleaseRoot(file: string): Buffer {
  let bytes: Buffer;
  try {
    bytes = readFileSync(file);
  } catch (cause) {
    throw new ReleaseError('RELEASE_ROOT_INVALID', `cannot read the release root ${file}`, { cause });
  }
  if (bytes.length > 1024 * 1024)
    throw new ReleaseError(
      'RELEASE_ROOT_INVALID',
      `${file} is ${bytes.length} bytes: not a root metadata file`,
    );
  const text = bytes.toString('utf8');
  if (PRIVATE_RE.test(text))
    throw new ReleaseError(
      'RELEASE_ROOT_INVALID',
      `${file} holds private key material: give the signed root (root/1.root.json of the keys directory), never a key file`,
    );
  let doc: { signed?: { _type?: unknown; keys?: unknown; roles?: unknown }; signatures?: unknown };
  try {
    doc = JSON.parse(text) as typeof doc;
  } catch (cause) {
    throw new ReleaseError('RELEASE_ROOT_INVALID', `${file} is not JSON`, { cause });
  }
  if (
    doc.signed?._type !== 'root' ||
    typeof doc.signed.keys !== 'object' ||
    typeof doc.signed.roles !== 'object' ||
    !Array.isArray(doc.signatures) ||
    doc.signatures.length === 0
  )
    throw new ReleaseError(
      'RELEASE_ROOT_INVALID',
      `${file} is not signed TUF root metadata (signed._type "root", keys, roles, signatures)`,
    );
  return bytes;
}

/** Commands of the agent bundle linked into /usr/bin (each with its man page in debian/). */
const LINKED_COMMANDS = ['vigil-agent', 'vigil-updater'] as const;

function control(info: BuildInfo, installedSizeKiB: number): string {
  return `Package: ${DEB_PACKAGE}
Version: ${debVersion(info.version)}
Architecture: ${DEB_ARCH}
Maintainer: ${MAINTAINER}
Installed-Size: ${installedSizeKiB}
Depends: adduser, ffmpeg, libc6 (>= 2.28), libgcc-s1, libstdc++6 (>= 9)
Section: video
Priority: optional
Description: Vigil edge agent for video analytics gateways
 Reads RTSP cameras or video files with ffmpeg, detects and tracks objects
 with ONNX models, keeps every event in a local SQLite outbox and sends it to
 the Vigil cloud over NATS with mutual TLS. It runs offline from its local
 configuration; the cloud adds configuration, never blocks.
 .
 The agent, its native addons and the Node.js ${process.versions.node} runtime they are built
 for live in /opt/vigil; the service runs as the vigil user, sandboxed, with
 /etc/vigil/agent.json and state in /var/lib/vigil.
`;
}

function gzipTo(text: string, out: string): Promise<void> {
  writeFileSync(out.replace(/\.gz$/, ''), text);
  return run('gzip', ['-n', '-9', '-f', out.replace(/\.gz$/, '')]);
}

/**
 * Builds `vigil-agent_<v>_amd64.deb` from the agent bundle: the bundle unpacked at /opt/vigil, the unit, the
 * conffile, the sysusers.d entry, docs, maintainer scripts; `dpkg-deb --root-owner-group` with
 * SOURCE_DATE_EPOCH = commit time, so the same bundle gives the same .deb.
 */
export async function buildDeb(
  repoRoot: string,
  bundleFile: string,
  info: BuildInfo,
  outDir: string,
  opts: { releaseRoot?: string | undefined } = {},
): Promise<Artifact> {
  // Checked before anything is built: a bad root must not make a package at all.
  const releaseRoot = opts.releaseRoot === undefined ? undefined : readReleaseRoot(opts.releaseRoot);
  const src = join(repoRoot, 'tools', 'release', 'debian');
  const root = mkdtempSync(join(tmpdir(), 'vigil-deb-'));
  try {
    const put = (from: string, to: string, mode: number): void => {
      mkdirSync(dirname(join(root, to)), { recursive: true });
      copyFileSync(join(src, from), join(root, to));
      chmodSync(join(root, to), mode);
    };
    mkdirSync(join(root, 'opt', 'vigil'), { recursive: true });
    await run('tar', [
      '-xzf',
      bundleFile,
      '-C',
      join(root, 'opt', 'vigil'),
      '--no-same-owner',
      '--no-same-permissions',
    ]);
    mkdirSync(join(root, 'usr', 'bin'), { recursive: true });
    // /usr and /opt are different top-level directories: Debian policy wants an absolute link.
    for (const command of LINKED_COMMANDS)
      symlinkSync(`/opt/vigil/bin/${command}`, join(root, 'usr', 'bin', command));
    put('agent.json', 'etc/vigil/agent.json', 0o644);
    put('updater.json', 'etc/vigil/updater.json', 0o644);
    put('vigil-agent.service', 'lib/systemd/system/vigil-agent.service', 0o644);
    put('vigil-updater.service', 'lib/systemd/system/vigil-updater.service', 0o644);
    put('50-vigil-updater.rules', 'usr/share/polkit-1/rules.d/50-vigil-updater.rules', 0o644);
    put('sysusers.conf', 'usr/lib/sysusers.d/vigil-agent.conf', 0o644);
    put('copyright', `usr/share/doc/${DEB_PACKAGE}/copyright`, 0o644);
    if (releaseRoot) {
      // Not a conffile: the package's trust anchor, replaced by each package version. An administrator's
      // /etc/vigil/release-root.json wins over it (updater.json names both; edge-agent/src/updater/sources.ts).
      mkdirSync(join(root, 'usr', 'share', DEB_PACKAGE), { recursive: true });
      writeFileSync(join(root, PACKAGED_ROOT_PATH), releaseRoot, { mode: 0o644 });
    }
    put('lintian-overrides', `usr/share/lintian/overrides/${DEB_PACKAGE}`, 0o644);
    mkdirSync(join(root, 'usr', 'share', 'man', 'man1'), { recursive: true });
    for (const command of LINKED_COMMANDS)
      await gzipTo(
        readFileSync(join(src, `${command}.1`), 'utf8'),
        join(root, `usr/share/man/man1/${command}.1.gz`),
      );
    await gzipTo(
      `${DEB_PACKAGE} (${debVersion(info.version)}) stable; urgency=medium\n\n  * Release ${info.version} from commit ${info.commit}.\n\n -- ${MAINTAINER}  ${rfc2822(info.commitTime)}\n`,
      join(root, `usr/share/doc/${DEB_PACKAGE}/changelog.gz`),
    );

    // Installed-Size and md5sums over the payload (DEBIAN/ is not part of it yet).
    const { files } = walkStaged(root, { allowLinks: true });
    let kib = 0;
    const md5: string[] = [];
    for (const f of files) {
      const st = statSync(join(root, f), { throwIfNoEntry: false });
      kib += Math.ceil((st?.size ?? 0) / 1024);
      if (!LINKED_COMMANDS.some((c) => f === `usr/bin/${c}`)) {
        md5.push(
          `${createHash('md5')
            .update(readFileSync(join(root, f)))
            .digest('hex')}  ${f}\n`,
        );
      }
    }
    mkdirSync(join(root, 'DEBIAN'));
    writeFileSync(join(root, 'DEBIAN', 'control'), control(info, kib));
    writeFileSync(join(root, 'DEBIAN', 'md5sums'), md5.join(''));
    writeFileSync(join(root, 'DEBIAN', 'conffiles'), '/etc/vigil/agent.json\n/etc/vigil/updater.json\n');
    for (const script of ['postinst', 'prerm', 'postrm']) put(script, `DEBIAN/${script}`, 0o755);
    for (const f of ['control', 'md5sums', 'conffiles']) chmodSync(join(root, 'DEBIAN', f), 0o644);
    await run('chmod', ['-R', 'u+rwX,go+rX,go-w', root]);

    mkdirSync(outDir, { recursive: true });
    const file = join(outDir, debFileName(info.version));
    await run('dpkg-deb', ['--root-owner-group', '-Zgzip', '-z6', '--build', root, file], {
      env: { ...process.env, SOURCE_DATE_EPOCH: String(info.commitTime) },
    });
    return {
      name: DEB_PACKAGE,
      file: debFileName(info.version),
      size: statSync(file).size,
      sha256: sha256File(file),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}
