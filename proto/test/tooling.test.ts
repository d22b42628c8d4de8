import { execFile } from 'node:child_process';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, expect, it } from 'vitest';

// The schema checks run the real buf binary (it compiles the .proto files itself; no protoc needed).
const run = promisify(execFile);
const protoDir = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const bufBin = path.join(protoDir, 'node_modules', '.bin', 'buf');

describe('proto tooling', () => {
  it('buf lint (STANDARD) is clean', async () => {
    const { stdout, stderr } = await run(bufBin, ['lint'], { cwd: protoDir });
    expect(stdout).toBe('');
    expect(stderr).toBe('');
  });

  it('committed generated code matches the .proto files (gen:check)', async () => {
    const result = await run(process.execPath, [path.join(protoDir, 'scripts', 'gen-check.mjs')], {
      cwd: protoDir,
    }).catch((err: unknown) => err as { code?: number; stdout?: string; stderr?: string });
    // On failure, show the script's report (which files differ) rather than a bare exit code.
    expect(result.stderr ?? '').toBe('');
    expect(result.stdout).toContain('up to date');
  });
});
