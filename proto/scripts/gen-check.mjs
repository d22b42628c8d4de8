// @ts-check
// Fails when proto/src/gen is not exactly what `buf generate` makes from the current .proto files. The generated
// code is committed (so consumers need no toolchain), which means it can drift; CI and a test run this check.
// Usage: node scripts/gen-check.mjs   (cwd does not matter)
import { execFile } from 'node:child_process';
import { mkdtemp, readdir, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import console from 'node:console';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';

const run = promisify(execFile);
const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bufBin = path.join(protoDir, 'node_modules', '.bin', 'buf');
const committedDir = path.join(protoDir, 'src', 'gen');

/**
 * Relative paths of all files under dir, sorted; empty if dir does not exist.
 * @param {string} dir
 * @returns {Promise<string[]>}
 */
async function listFiles(dir) {
  try {
    const entries = await readdir(dir, { recursive: true, withFileTypes: true });
    return entries
      .filter((e) => e.isFile())
      .map((e) => path.relative(dir, path.join(e.parentPath, e.name)))
      .sort();
  } catch (err) {
    if (err instanceof Error && 'code' in err && err.code === 'ENOENT') return [];
    throw err;
  }
}

/**
 * Paths that differ between two trees: missing on either side or with different content.
 * @param {string} expectedDir freshly generated
 * @param {string} actualDir committed
 * @returns {Promise<string[]>}
 */
async function diffTrees(expectedDir, actualDir) {
  const expected = await listFiles(expectedDir);
  const actual = await listFiles(actualDir);
  const all = [...new Set([...expected, ...actual])].sort();
  /** @type {string[]} */
  const differences = [];
  for (const rel of all) {
    if (!expected.includes(rel)) differences.push(`unexpected file (no longer generated): ${rel}`);
    else if (!actual.includes(rel)) differences.push(`missing file: ${rel}`);
    else {
      const [a, b] = await Promise.all([
        readFile(path.join(expectedDir, rel)),
        readFile(path.join(actualDir, rel)),
      ]);
      if (!a.equals(b)) differences.push(`content differs: ${rel}`);
    }
  }
  return differences;
}

async function main() {
  const tmp = await mkdtemp(path.join(tmpdir(), 'vigil-proto-gen-'));
  try {
    // -o prefixes the template's `out: src/gen`, so the fresh copy lands in <tmp>/src/gen.
    await run(bufBin, ['generate', '--template', 'buf.gen.yaml', '-o', tmp], { cwd: protoDir });
    const differences = await diffTrees(path.join(tmp, 'src', 'gen'), committedDir);
    if (differences.length > 0) {
      console.error('proto/src/gen is stale: run pnpm proto:gen');
      for (const d of differences) console.error(`  ${d}`);
      return 1;
    }
    console.log('proto/src/gen is up to date');
    return 0;
  } finally {
    await rm(tmp, { recursive: true, force: true });
  }
}

process.exitCode = await main();
