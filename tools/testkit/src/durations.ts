// Recorded test-file durations and the order they give (pure: no files, no vitest). The suite runs on two
// workers that take the next file from one queue; a long file started last finishes alone while the other
// worker idles. Longest first (LPT scheduling) makes the two workers end together, within about the length
// of the shortest files.

/** Repository-relative path (forward slashes) -> seconds one run of the file took on an idle machine. */
export type Durations = Record<string, number>;

/** The committed file: what the numbers are and where they came from, then the numbers. */
export interface DurationsFile {
  about: string;
  files: Durations;
}

/** Estimate for a file with no recorded duration: before the short files, after the known long ones. */
export const UNKNOWN_SECONDS = 10;

export class DurationsError extends Error {
  constructor(
    readonly code: 'DURATIONS_INVALID',
    message: string,
  ) {
    super(message);
    this.name = 'DurationsError';
  }
}

/** Parses the durations file; unknown keys and anything but seconds >= 0 are refused, naming the file. */
export function parseDurations(text: string, file: string): DurationsFile {
  const bad = (why: string): DurationsError => new DurationsError('DURATIONS_INVALID', `${file}: ${why}`);
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    throw bad('not JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw bad('not an object');
  const extra = Object.keys(doc).filter((k) => k !== 'about' && k !== 'files');
  if (extra.length > 0) throw bad(`unknown key(s) ${extra.join(', ')}`);
  const { about, files } = doc as { about?: unknown; files?: unknown };
  if (typeof about !== 'string') throw bad('"about" must be a string');
  if (typeof files !== 'object' || files === null || Array.isArray(files))
    throw bad('"files" must be an object of path -> seconds');
  for (const [path, s] of Object.entries(files))
    if (typeof s !== 'number' || !Number.isFinite(s) || s < 0)
      throw bad(`"${path}": ${JSON.stringify(s)} is not a number of seconds >= 0`);
  return { about, files: files as Durations };
}

/** What the order needs to know of one test file. */
export interface FileToOrder {
  /** Repository-relative path. */
  path: string;
  /** Bytes: breaks ties among files without a duration (larger files tend to hold more tests). */
  size: number;
  /** Recorded seconds, if any. */
  seconds: number | undefined;
}

/**
 * Longest first: each file's recorded seconds (or `unknownSeconds`), then larger first, then by path, so the
 * order is the same on every machine given the same files.
 */
export function orderByDuration<T extends FileToOrder>(
  files: readonly T[],
  unknownSeconds = UNKNOWN_SECONDS,
): T[] {
  const est = (f: T): number => f.seconds ?? unknownSeconds;
  return [...files].sort(
    (a, b) => est(b) - est(a) || b.size - a.size || (a.path < b.path ? -1 : a.path > b.path ? 1 : 0),
  );
}

/**
 * The recorded durations after a run: `measured` replaces what was there for those files; files not run keep
 * theirs; files that no longer exist (`exists` false) are dropped. Seconds are kept to a tenth, keys sorted,
 * so that the committed file changes only where a duration did.
 */
export function mergeDurations(
  recorded: Durations,
  measured: Durations,
  exists: (path: string) => boolean,
): Durations {
  const merged: Durations = {};
  const all = { ...recorded, ...measured };
  for (const path of Object.keys(all).sort()) {
    if (!exists(path)) continue;
    merged[path] = Math.round(all[path]! * 10) / 10;
  }
  return merged;
}
