export {
  DEFAULT_UPLINK_OPTIONS,
  MAX_QUERY_IDS,
  Uplink,
  type QueryErrorReason,
  type QueryReason,
  type UplinkDeps,
  type UplinkMetricsHooks,
  type UplinkOptions,
  type UplinkStatus,
} from './uplink.js';
export { createUplinkMetrics, type UplinkMetrics } from './metrics.js';
export {
  MEDIA_PUBLISH_RESULTS,
  planMedia,
  type MediaMessage,
  type MediaPlan,
  type MediaPublishResult,
} from './media.js';
export {
  classifyPublishError,
  dueForQuery,
  inboxPrefixFor,
  nextUplinkState,
  queryBatches,
  receiptDeadline,
  PUBLISH_ERROR_REASONS,
  UPLINK_STATES,
  type FlightView,
  type PublishErrorReason,
  type UplinkEvent,
  type UplinkState,
} from './sync.js';
