export { ReleaseClient, type AvailableRelease, type ReleaseClientOptions } from './client.js';
export { UpdateRefusedError, UpdateUnavailableError, type UpdateRefusal } from './errors.js';
export { grpcReleaseSource, REPOSITORY_URL, SourceFetcher, type ReleaseFileSource } from './fetcher.js';
