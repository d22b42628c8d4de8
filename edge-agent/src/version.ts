import { RELEASE } from '@vigil/proto';

/** The agent's version, reported in heartbeats and at enrollment: the release build's stamp (tools/release),
 *  or the source version from a checkout. Its own module so the enroll command does not load the whole agent
 *  (ONNX runtime, sharp) just to read it. */
export const AGENT_VERSION = RELEASE.version;
