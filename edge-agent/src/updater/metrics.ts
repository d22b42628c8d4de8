import { Counter, Gauge, type Registry } from 'prom-client';
import { UPDATE_STATES, type UpdateState } from './contract.js';

export interface UpdaterMetrics {
  refused: Counter<'reason'>;
  updates: Counter<'result'>;
  requestsInvalid: Counter;
  state: Gauge<'state'>;
  setState(state: UpdateState): void;
}

export function createUpdaterMetrics(registry: Registry): UpdaterMetrics {
  const refused = new Counter({
    name: 'vigil_updater_refused_total',
    help: 'Release bundles refused, by reason (tampered, traversal, link, oversized, digest_mismatch, ...)',
    labelNames: ['reason'],
    registers: [registry],
  });
  const updates = new Counter({
    name: 'vigil_updater_updates_total',
    help: 'Agent updates finished, by result (committed, rolled_back, failed)',
    labelNames: ['result'],
    registers: [registry],
  });
  const requestsInvalid = new Counter({
    name: 'vigil_updater_requests_invalid_total',
    help: 'request.json files that were not valid JSON or did not match the contract (ignored)',
    registers: [registry],
  });
  const state = new Gauge({
    name: 'vigil_updater_state',
    help: 'The updater state (1 for the current one)',
    labelNames: ['state'],
    registers: [registry],
  });
  return {
    refused,
    updates,
    requestsInvalid,
    state,
    setState: (s) => {
      for (const x of UPDATE_STATES) state.set({ state: x }, x === s ? 1 : 0);
    },
  };
}
