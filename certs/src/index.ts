export { PkiError, type PkiErrorCode } from './errors.js';
export { deviceUri, serviceUri } from './identity.js';
export {
  CA_VALIDITY_DAYS,
  CLIENT_VALIDITY_DAYS,
  SERVER_VALIDITY_DAYS,
  createCa,
  issueClientCert,
  issueRouteCert,
  issueServerCert,
  loadCa,
  type CertKeyPem,
  type IssuedCert,
  type LoadedCa,
  type IssueOptions,
} from './pki.js';
export {
  inspectCsr,
  issueFromCsr,
  issueFromCsrAsync,
  signCsr,
  verifyCsr,
  verifyCsrOnce,
  type CsrSubject,
  type VerifiedCsr,
} from './csr.js';
export { createCsr } from './csr-create.js';
export {
  DEV_CA_COMMON_NAME,
  ensureDevPki,
  ensureDevPkiWithReport,
  type CertKeyPaths,
  type DevPkiAction,
  type DevPkiEntry,
  type DevPkiOptions,
  type DevPkiPaths,
  type DevPkiReport,
} from './dev-pki.js';
export { listCerts, type CertSummary } from './inspect.js';
export { defaultPkiDir, findRepoRoot } from './paths.js';
