import { z } from 'zod';
import { SEMVER_RE } from '@vigil/proto';
import { updateRequestSchema, type UpdateState } from './contract.js';

/*
 * The update journal (`<dataDir>/journal.json`), pure part: its shape, and what a restarted updater does with
 * the step it finds. The file is written before each step's effect is made durable elsewhere (tmp + fsync +
 * rename + directory fsync, journal-store.ts), so after a reboot or kill -9 the recorded step tells exactly
 * which effects may have happened:
 *
 *   downloading  nothing changed yet (a partial download or `.staging-<v>` may exist: deleted, then retried)
 *   staging      unpacking into `releases/.staging-<v>` (deleted, then retried)
 *   staged       `releases/<v>` is complete (renamed from staging after every file and directory was fsynced)
 *   switching    the `current` symlink is about to point at `<v>`: it points at the old or the new, both whole
 *   switched     `current` points at `<v>`; the agent restart may or may not have happened
 *   baking       the new agent runs; its /healthz is watched until the bake time ends
 *   rolling_back `current` is being pointed back at the previous release (then the agent restarts)
 *   committed | rolled_back | failed   done; `requestKey` remembers which request it was for
 *
 * `current` only ever names a complete release, so whatever step the updater dies at, the agent starts on the
 * old or the new one, never neither.
 */

export const JOURNAL_STEPS = [
  'downloading',
  'staging',
  'staged',
  'switching',
  'switched',
  'baking',
  'rolling_back',
  'committed',
  'rolled_back',
  'failed',
] as const;
export type JournalStep = (typeof JOURNAL_STEPS)[number];

const semver = z.string().regex(SEMVER_RE);
/** A name inside releases/ (`<version>`) or an absolute path (the packaged release, e.g. /opt/vigil). */
const releaseRef = z.string().min(1).max(4096);

export const journalSchema = z.strictObject({
  v: z.literal(1),
  step: z.enum(JOURNAL_STEPS),
  request: updateRequestSchema,
  requestKey: z.string().min(1),
  target: semver,
  /** What `current` points at once switched: the release directory name in releases/. */
  targetRef: releaseRef,
  previous: semver,
  /** What `current` pointed at before: where a rollback points it again. */
  previousRef: releaseRef,
  /** Times this request was started (a crash during download or unpack retries, up to a bound). */
  attempt: z.number().int().min(1),
  startedAt: z.iso.datetime(),
  stepAt: z.iso.datetime(),
  reason: z.string().nullable(),
  /** For `failed`: whether the same request may be tried again later (the repository was unreachable). */
  retryable: z.boolean(),
});
export type Journal = z.infer<typeof journalSchema>;

export const TERMINAL_STEPS: readonly JournalStep[] = ['committed', 'rolled_back', 'failed'];

/** The contract state (status.json) of a journal step. */
export function stateOfStep(step: JournalStep): UpdateState {
  switch (step) {
    case 'downloading':
      return 'downloading';
    case 'staging':
    case 'staged':
      return 'staging';
    case 'switching':
    case 'switched':
    case 'rolling_back':
      return 'switching';
    case 'baking':
      return 'baking';
    case 'committed':
      return 'committed';
    case 'rolled_back':
      return 'rolled_back';
    case 'failed':
      return 'failed';
  }
}

export type Recovery =
  /** Nothing to do: no journal, or it ended. */
  | { kind: 'idle' }
  /** Died before anything visible changed: delete staging leftovers, then try again (or give up). */
  | { kind: 'retry_from_start'; giveUp: boolean }
  /** releases/<v> is complete: point current at it, restart, bake. */
  | { kind: 'switch' }
  /** current already points at the target: restart the agent and bake again from the start. */
  | { kind: 'restart_and_bake' }
  /** Finish a rollback that was under way (idempotent). */
  | { kind: 'roll_back'; reason: string }
  /** current points at neither release of the journal (someone installed another): leave it be. */
  | { kind: 'superseded'; found: string };

/** Most times one request is started again after the updater died during its download or unpack. */
export const MAX_ATTEMPTS = 3;

/**
 * What a (re)started updater does with the journal it finds, given what `current` points at now. Pure.
 */
export function recover(journal: Journal | undefined, currentRef: string): Recovery {
  if (!journal || TERMINAL_STEPS.includes(journal.step)) return { kind: 'idle' };
  const onTarget = currentRef === journal.targetRef;
  const onPrevious = currentRef === journal.previousRef;
  if (!onTarget && !onPrevious) return { kind: 'superseded', found: currentRef };
  switch (journal.step) {
    case 'downloading':
    case 'staging':
      return { kind: 'retry_from_start', giveUp: journal.attempt >= MAX_ATTEMPTS };
    case 'staged':
      return { kind: 'switch' };
    case 'switching':
      return onTarget ? { kind: 'restart_and_bake' } : { kind: 'switch' };
    case 'switched':
    case 'baking':
      // Resume: the new release gets a full bake again (its earlier health samples died with the process).
      return onTarget ? { kind: 'restart_and_bake' } : { kind: 'switch' };
    case 'rolling_back':
      return { kind: 'roll_back', reason: journal.reason ?? 'rollback interrupted' };
    default:
      return { kind: 'idle' };
  }
}
