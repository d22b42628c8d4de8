import { Worker } from 'node:worker_threads';
const api = import.meta.resolve('tsx/esm/api');
const target = new URL('./w.ts', import.meta.url).href;
const boot = `import(${JSON.stringify(api)}).then((m) => { m.register(); return import(${JSON.stringify(target)}); })`;
const w = new Worker(boot, { eval: true });
w.on('message', (m) => { console.log('got', m); void w.terminate(); });
w.on('error', (e) => console.log('err', e));
