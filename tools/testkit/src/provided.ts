// What the global setup provides to every test file (vitest's inject()).
declare module 'vitest' {
  export interface ProvidedContext {
    /** A superuser URL on a PostgreSQL server; each test file creates its own database on it. */
    pgAdminUrl: string;
  }
}

export {};
