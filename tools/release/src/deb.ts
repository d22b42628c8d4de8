import type { Artifact, } from './build.js';
import type { BuildInfo } from './bundle.js';
export async function buildDeb(_r: string, _b: string, _i: BuildInfo, _o: string): Promise<Artifact> { throw new Error('todo'); }
