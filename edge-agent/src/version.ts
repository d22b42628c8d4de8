/** The agent's version, reported in heartbeats and at enrollment. Its own module so the enroll command does
 *  not load the whole agent (ONNX runtime, sharp) just to read it. */
export const AGENT_VERSION = '0.1.0';
