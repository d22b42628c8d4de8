// @ts-check
// `buf breaking` against the proto/ tree on the main branch. Skips (exit 0) while there is no baseline yet: a repo
// without commits, no `main` branch, or a main that has no proto/buf.yaml. Otherwise buf's exit code is ours.
// Usage: node scripts/breaking.mjs   (cwd does not matter)
import { execFileSync, spawnSync } from 'node:child_process';
import console from 'node:console';
import path from 'node:path';
import process from 'node:process';
import { fileURLToPath } from 'node:url';

const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bufBin = path.join(protoDir, 'node_modules', '.bin', 'buf');
const baseline = 'main';

/**
 * True when the git command succeeds (exit 0) in proto/.
 * @param {string[]} args
 */
function gitOk(args) {
  return spawnSync('git', args, { cwd: protoDir, stdio: 'ignore' }).status === 0;
}

/**
 * Trimmed stdout of a git command run in proto/.
 * @param {string[]} args
 */
function git(args) {
  return execFileSync('git', args, { cwd: protoDir, encoding: 'utf8' }).trim();
}

if (!gitOk(['rev-parse', '--verify', '--quiet', `${baseline}^{commit}`])) {
  console.log(`breaking: no baseline on ${baseline} yet, skipped`);
  process.exit(0);
}
// Where proto/ sits inside the repo ("proto/"), so the check survives the package being moved.
const subdir = git(['rev-parse', '--show-prefix']).replace(/\/$/, '');
if (!gitOk(['cat-file', '-e', `${baseline}:${subdir}/buf.yaml`])) {
  console.log(`breaking: no baseline on ${baseline} yet, skipped`);
  process.exit(0);
}
// The common git dir is the real .git directory even from a linked worktree (where .git is a file).
const gitDir = path.resolve(protoDir, git(['rev-parse', '--git-common-dir']));
const against = `${gitDir}#branch=${baseline},subdir=${subdir}`;
const result = spawnSync(bufBin, ['breaking', '--against', against], { cwd: protoDir, stdio: 'inherit' });
if (result.error) throw result.error;
process.exit(result.status ?? 1);
